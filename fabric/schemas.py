"""The event contract: one JSON Schema (2020-12) per event type in ``schemas/``.

Each ``schemas/<type>.json`` describes the event's ``data`` object and carries routing
metadata beside it (``x-topic``, ``x-key``, ``x-schema-version``) so that the contract and
the wiring cannot drift apart. ``schemas/envelope.json`` describes the envelope.

Validators are compiled once with fastjsonschema (a few microseconds per event; the pure
Python ``jsonschema`` costs ~20x more and would cap the whole bus). The schemas use only
keywords that mean the same in draft 2020-12 and in the draft fastjsonschema compiles; a test
checks every schema against the 2020-12 metaschema with ``jsonschema`` and that both
validators agree on the examples.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from fabric.events import Event, from_dict

__all__ = ["Registry", "SchemaError", "Verdicts", "registry", "schema_dir"]


class SchemaError(ValueError):
    """An event that breaks the contract. ``code`` is machine-readable, str(self) is for humans."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def schema_dir() -> Path:
    override = os.environ.get("FABRIC_SCHEMAS")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "schemas"


@dataclasses.dataclass(frozen=True, slots=True)
class EventType:
    name: str
    topic: str
    key: str  # "subject" or a dotted path into the envelope, e.g. "data.account"
    partition: str | None  # optional dotted path to an int that picks the partition directly
    version: int
    schema: Mapping[str, Any]
    validate: Callable[[Any], Any]  # the whole event: envelope with this type's data schema

    def key_of(self, event: Event) -> str | None:
        value = _lookup(event, self.key)
        return None if value is None else str(value)

    def partition_of(self, event: Event) -> int | None:
        if self.partition is None:
            return None
        value = _lookup(event, self.partition)
        return None if value is None else int(value)


def _lookup(event: Event, path: str) -> Any:
    head, _, rest = path.partition(".")
    value: Any = getattr(event, head)
    for part in rest.split(".") if rest else ():
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


class Verdicts:
    """Encoded events this process has validated: a record's bytes read back from the log
    need not go through the validator again (the verdict on the same bytes is the same).

    Each event is validated when it is published and, on the log, consumed by several groups
    (the orchestrator, the projector, the notifier...): 36.5 validations per task in the
    lifecycle benchmark, at ~12 us each. Remembering the bytes of what passed (those this
    process encoded on publish, and each record the first time a consumer validates it)
    leaves 12. Kept as 128-bit BLAKE2b digests (a collision with an invalid record is out of
    reach, whatever ``PYTHONHASHSEED`` says), in two generations of ``size`` entries each,
    so memory stays bounded (~100 bytes an entry) and recent events stay known.
    """

    def __init__(self, size: int = 65_536) -> None:
        self.size = size
        self._new: set[bytes] = set()
        self._old: set[bytes] = set()

    @staticmethod
    def digest(value: bytes) -> bytes:
        return hashlib.blake2b(value, digest_size=16).digest()

    def add(self, value: bytes, digest: bytes | None = None) -> None:
        if len(self._new) >= self.size:
            self._old, self._new = self._new, set()
        self._new.add(digest or self.digest(value))

    def known(self, digest: bytes) -> bool:
        return digest in self._new or digest in self._old

    def __contains__(self, value: bytes) -> bool:
        return self.known(self.digest(value))


class Registry:
    """All known event types, loaded from a schema directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.verdicts = Verdicts()
        envelope = _read(directory / "envelope.json")
        self._envelope = fastjsonschema.compile(envelope)
        self.envelope = envelope
        self.types: dict[str, EventType] = {}
        for path in sorted(directory.glob("*.json")):
            if path.name == "envelope.json":
                continue
            schema = _read(path)
            name = path.name.removesuffix(".json")
            if schema.get("title") != name:
                raise ValueError(f"{path}: title must be the event type {name!r}")
            self.types[name] = EventType(
                name=name,
                topic=schema["x-topic"],
                key=schema.get("x-key", "subject"),
                partition=schema.get("x-partition"),
                version=int(schema.get("x-schema-version", 1)),
                schema=schema,
                validate=fastjsonschema.compile(_whole_event(envelope, name, schema)),
            )

    def __contains__(self, name: str) -> bool:
        return name in self.types

    def get(self, name: str) -> EventType:
        try:
            return self.types[name]
        except KeyError:
            raise SchemaError("unknown_type", f"unknown event type {name!r}") from None

    def topics(self) -> set[str]:
        return {t.topic for t in self.types.values()}

    def check_dict(self, obj: Mapping[str, Any]) -> EventType:
        """Validate an envelope dict; return its type. Raises SchemaError with a reason."""
        etype = self.types.get(obj.get("type")) if isinstance(obj, dict) else None  # type: ignore[arg-type]
        if etype is None:
            self._explain_envelope(obj)
        else:
            try:
                etype.validate(obj)  # one compiled function checks envelope and data together
                return etype
            except fastjsonschema.JsonSchemaValueException as exc:
                version = obj.get("schema_version")
                if isinstance(version, int) and version > etype.version:
                    raise SchemaError(
                        "newer_schema_version",
                        f"{etype.name} schema_version {version} is newer than the "
                        f"{etype.version} this consumer knows",
                    ) from None
                if not exc.message.startswith("data.data"):
                    raise SchemaError("bad_envelope", f"envelope: {exc.message}") from None
                msg = exc.message.replace("data.data", "data", 1)
                raise SchemaError("schema_violation", f"{etype.name}: {msg}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _explain_envelope(self, obj: Any) -> None:
        try:
            self._envelope(obj)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise SchemaError("bad_envelope", f"envelope: {exc.message}") from None
        raise SchemaError("unknown_type", f"unknown event type {obj['type']!r}")

    def check(self, event: Event) -> EventType:
        return self.check_dict(event.as_dict())

    def parse(self, obj: Mapping[str, Any]) -> Event:
        self.check_dict(obj)
        return from_dict(obj)

    def parse_record(self, value: bytes, obj: Mapping[str, Any]) -> Event:
        """``parse`` for ``obj`` decoded from a record's ``value``, validated unless these
        very bytes passed before in this process (``Verdicts``)."""
        digest = self.verdicts.digest(value)
        if not self.verdicts.known(digest):
            self.check_dict(obj)
            self.verdicts.add(value, digest)
        return from_dict(obj)


def _whole_event(
    envelope: Mapping[str, Any], name: str, schema: Mapping[str, Any]
) -> dict[str, Any]:
    """The envelope schema with ``type`` fixed to ``name`` and ``data`` set to the type's schema."""
    data = {
        k: v
        for k, v in schema.items()
        if not k.startswith(("$", "x-")) and k not in ("title", "description", "examples")
    }
    whole = dict(envelope)
    whole["$id"] = f"urn:fabric:event:{name}"
    if "$defs" in schema:  # '#/$defs/...' references resolve against the document root
        whole["$defs"] = schema["$defs"]
    version = {"type": "integer", "minimum": 1, "maximum": schema.get("x-schema-version", 1)}
    whole["properties"] = dict(
        envelope["properties"], type={"const": name}, schema_version=version, data=data
    )
    return whole


def _read(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(path.read_bytes())
    return result


@functools.cache
def registry() -> Registry:
    """The process-wide registry of the project's schema directory."""
    return Registry(schema_dir())
