"""The event contract: every event type the code uses has a schema, and every schema is a
valid 2020-12 schema whose examples validate (with fastjsonschema and with jsonschema)."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import orjson
import pytest

from fabric.events import decode, encode, new_event
from fabric.schemas import Registry, SchemaError, registry

ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ["fabric", "consumers", "producers"]
# emit("type", ...), new_event("type", ...), Event(type="..."), caused("type", ...)
USE = re.compile(
    r"""(?:emit|emit_now|new_event|caused|_event|Emit|Event)\(\s*["']([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+|[a-z_]+)["']"""
)


def used_event_types() -> set[str]:
    found: set[str] = set()
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            found.update(USE.findall(path.read_text()))
    return found


def test_every_event_type_used_in_the_code_has_a_schema() -> None:
    used = used_event_types()
    assert {"task.created", "timer.fired", "dead_letter"} <= used  # the scan finds real uses
    missing = used - set(registry().types)
    assert not missing, f"event types without a schema in schemas/: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(registry().types))
def test_schema_is_valid_2020_12_with_examples_that_validate(name: str) -> None:
    etype = registry().get(name)
    schema = dict(etype.schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema.get("examples"), f"{name} has no example"
    reference = jsonschema.Draft202012Validator(schema)
    for example in schema["examples"]:
        reference.validate(example)
        event = new_event(name, example, subject="example")
        assert registry().check(event) is etype  # the compiled, whole-event validator agrees
        assert decode(encode(event)) == event
    assert schema.get("additionalProperties") is False, f"{name}: close the data object"
    assert schema["x-topic"].startswith("fabric.")


def test_envelope_schema_is_valid() -> None:
    envelope = orjson.loads((ROOT / "schemas" / "envelope.json").read_bytes())
    jsonschema.Draft202012Validator.check_schema(envelope)


def test_validators_agree_on_broken_events() -> None:
    """fastjsonschema (hot path) and jsonschema (reference) reject the same broken data."""
    reg = registry()
    for name, etype in reg.types.items():
        reference = jsonschema.Draft202012Validator(dict(etype.schema))
        for broken in ({}, {"unexpected": 1}, [], "text"):
            ref_ok = reference.is_valid(broken)
            try:
                reg.check_dict(new_event(name, {}, subject="x").as_dict() | {"data": broken})
                fast_ok = True
            except SchemaError:
                fast_ok = False
            assert ref_ok == fast_ok, (name, broken)


def test_errors_have_codes() -> None:
    reg = registry()
    ev = new_event("probe.ping", {"seq": 1}, subject="s").as_dict()
    cases = {
        "schema_violation": ev | {"data": {"seq": "one"}},
        "unknown_type": ev | {"type": "nope.nope"},
        "newer_schema_version": ev | {"schema_version": 7},
        "bad_envelope": ev | {"time": "yesterday"},
    }
    for code, obj in cases.items():
        with pytest.raises(SchemaError) as info:
            reg.check_dict(obj)
        assert info.value.code == code, (code, str(info.value))


def test_schema_title_must_match_file_name(tmp_path: Path) -> None:
    (tmp_path / "envelope.json").write_bytes((ROOT / "schemas" / "envelope.json").read_bytes())
    (tmp_path / "a.b.json").write_text('{"title": "c.d", "x-topic": "fabric.x"}')
    with pytest.raises(ValueError, match="title"):
        Registry(tmp_path)


def test_parse_record_validates_bytes_it_has_not_seen_and_remembers_what_passed() -> None:
    reg = Registry(ROOT / "schemas")
    good = encode(new_event("probe.ping", {"seq": 1}, source="test"))
    bad_obj = orjson.loads(good)
    bad_obj["data"] = {"seq": -1}
    bad = orjson.dumps(bad_obj)
    calls = []
    check = reg.check_dict
    reg.check_dict = lambda obj: calls.append(obj) or check(obj)  # type: ignore[method-assign]
    with pytest.raises(SchemaError):
        reg.parse_record(bad, orjson.loads(bad))
    with pytest.raises(SchemaError):  # a failure is not remembered: validated again
        reg.parse_record(bad, orjson.loads(bad))
    assert len(calls) == 2
    first = reg.parse_record(good, orjson.loads(good))
    again = reg.parse_record(bytes(bytearray(good)), orjson.loads(good))  # equal bytes, new object
    assert len(calls) == 3 and first == again == decode(good)


def test_verdicts_stay_bounded_and_keep_the_recent_generation() -> None:
    from fabric.schemas import Verdicts

    verdicts = Verdicts(size=3)
    values = [f"event {i}".encode() for i in range(8)]
    for v in values:
        verdicts.add(v)
    assert [v in verdicts for v in values] == [False] * 3 + [True] * 5
    assert len(verdicts._new) + len(verdicts._old) <= 6


def test_a_published_event_is_not_validated_again_when_consumed() -> None:
    """``Bus.message`` remembers the bytes it encoded after validating them."""
    from fabric.bus import Bus
    from fabric.log.memory import MemoryLog

    reg = Registry(ROOT / "schemas")
    msg = Bus(MemoryLog(), reg).message(new_event("probe.ping", {"seq": 2}, source="t"))
    assert msg.value in reg.verdicts
