"""The event envelope: one frozen value type, serialized with orjson.

The envelope follows ARCHITECTURE.md section 2 (CloudEvents-like). Payloads stay small:
audio and video travel as paths plus sha256 and size, never as bytes, and no secret ever
enters ``data`` (events name the account, the account store holds the tokens).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import orjson
import uuid_utils

__all__ = ["DecodeError", "Event", "decode", "encode", "new_event", "new_id", "utcnow"]

ENVELOPE_KEYS = (
    "id",
    "type",
    "source",
    "time",
    "subject",
    "correlation_id",
    "causation_id",
    "schema_version",
    "data",
)


class DecodeError(ValueError):
    """Bytes on a topic that are not an event envelope (garbage, truncated JSON, wrong shape)."""

    code = "decode_error"


def new_id() -> str:
    """A time-ordered id (UUIDv7): inbox and outbox keys stay append-only in their B-trees."""
    return str(uuid_utils.uuid7())


_second: list[Any] = [-1, ""]


def utcnow() -> str:
    """RFC 3339 UTC time with millisecond precision, the format every event carries.

    Formatting a datetime costs more than validating the whole event, so the part up to the
    second is cached and only the milliseconds are formatted per call.
    """
    now = time.time()
    sec = int(now)
    if sec != _second[0]:
        _second[0] = sec
        _second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{_second[1]}.{int((now - sec) * 1000):03d}Z"


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One fact that happened. ``subject`` is the task (or account) the event is about."""

    type: str
    data: Mapping[str, Any]
    subject: str | None = None
    source: str = "fabric"
    id: str = dataclasses.field(default_factory=new_id)
    time: str = dataclasses.field(default_factory=utcnow)
    correlation_id: str | None = None
    causation_id: str | None = None
    schema_version: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "time": self.time,
            "subject": self.subject,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "schema_version": self.schema_version,
            "data": self.data,
        }

    def caused(
        self, type: str, data: Mapping[str, Any], *, source: str, subject: str | None = None
    ) -> Event:
        """A new event caused by this one: it inherits the correlation id and the subject."""
        return Event(
            type,
            data,
            self.subject if subject is None else subject,
            source,
            new_id(),
            utcnow(),
            self.correlation_id or self.id,
            self.id,
        )


def new_event(
    type: str, data: Mapping[str, Any], *, subject: str | None = None, source: str = "fabric"
) -> Event:
    """A root event (one that starts a correlation chain, e.g. ``task.created`` from a producer)."""
    ident = new_id()
    return Event(type, data, subject, source, ident, utcnow(), ident, None)


def encode(event: Event) -> bytes:
    return orjson.dumps(event.as_dict())


def loads(raw: bytes) -> dict[str, Any]:
    """Parse bytes into an envelope dict without validating its fields (validation is schemas')."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise DecodeError(f"envelope must be a JSON object, got {type(obj).__name__}")
    return obj


def from_dict(obj: Mapping[str, Any]) -> Event:
    """Build an Event from an already validated envelope dict."""
    get = obj.get
    try:
        return Event(
            obj["type"],
            obj["data"],
            get("subject"),
            obj["source"],
            obj["id"],
            obj["time"],
            get("correlation_id"),
            get("causation_id"),
            obj["schema_version"],
        )
    except KeyError as exc:  # pragma: no cover - the envelope schema catches this first
        raise DecodeError(f"bad envelope: missing {exc}") from None


def decode(raw: bytes) -> Event:
    return from_dict(loads(raw))
