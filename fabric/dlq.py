"""Dead letters: records a consumer could not decode, validate or handle.

A dead letter is itself an event (``dead_letter``, see its schema) on ``fabric.dlq``: the
consumer, a machine-readable reason code, the message, the source coordinates and the
original bytes (base64), so nothing is ever dropped silently. ``redrive`` puts the original
(or a corrected replacement) back on its source topic with its key, and records a
``dead_letter.redriven`` event so the entry leaves the open list.
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

from fabric.bus import DLQ_TOPIC, Bus
from fabric.events import Event, loads, new_event
from fabric.log import Log, Record

__all__ = ["DeadLetter", "dead_letter", "list_dead_letters", "redrive"]

_NS = uuid.UUID("6f1c7d7e-5b0e-4a53-9a8e-3d6c2f0b1a90")


def dead_letter(
    record: Record,
    *,
    consumer: str,
    code: str,
    reason: str,
    attempts: int,
    exception: str | None = None,
    event: Mapping[str, Any] | None = None,
) -> Event:
    """The dead letter for ``record`` as seen by ``consumer``.

    Its id is derived from the consumer and the record's coordinates, so the same failure
    redelivered after a crash yields the same entry instead of a second one.
    """
    data: dict[str, Any] = {
        "consumer": consumer,
        "code": code,
        "reason": reason[:4000],
        "attempts": attempts,
        "source": {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key,
        },
        "original_b64": base64.b64encode(record.value).decode(),
    }
    if exception:
        data["exception"] = exception[:4000]
    if event is not None:
        data["event_id"] = str(event.get("id"))
        data["event_type"] = str(event.get("type"))
    ev = new_event("dead_letter", data, subject=data.get("event_id"), source=consumer)
    ident = str(uuid.uuid5(_NS, f"{consumer}|{record.topic}|{record.partition}|{record.offset}"))
    return dataclasses.replace(ev, id=ident, correlation_id=ident)


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    time: str
    data: Mapping[str, Any]
    redriven: bool

    @property
    def original(self) -> bytes:
        return base64.b64decode(self.data["original_b64"])


async def _scan(log: Log, topic: str) -> list[Event]:
    events = []
    for partition in (await log.end_offsets(topic)).keys():
        offset = 0
        while batch := await log.read(topic, partition, offset, 1000):
            for rec in batch:
                obj = loads(rec.value)
                events.append(Event(**obj))
            offset = batch[-1].offset + 1
    return sorted(events, key=lambda e: e.time)


async def list_dead_letters(bus: Bus, *, include_redriven: bool = False) -> list[DeadLetter]:
    events = await _scan(bus.log, bus.topic(DLQ_TOPIC))
    redriven = {e.data["dead_letter_id"] for e in events if e.type == "dead_letter.redriven"}
    seen: dict[str, DeadLetter] = {}
    for e in events:
        if e.type == "dead_letter" and e.id not in seen:
            seen[e.id] = DeadLetter(e.id, e.time, e.data, e.id in redriven)
    return [d for d in seen.values() if include_redriven or not d.redriven]


async def redrive(bus: Bus, entry: DeadLetter, replacement: bytes | None = None) -> Record:
    """Publish the original (or ``replacement``) to the source topic; mark the entry."""
    src = entry.data["source"]
    value = entry.original if replacement is None else replacement
    partition, offset = await bus.log.publish(src["topic"], src["key"], value, src["partition"])
    marker = new_event(
        "dead_letter.redriven",
        {
            "dead_letter_id": entry.id,
            "topic": src["topic"],
            "partition": partition,
            "offset": offset,
            "replaced": replacement is not None,
        },
        subject=entry.data.get("event_id"),
        source="fabric.dlq",
    )
    await bus.publish(marker)
    return Record(src["topic"], partition, offset, src["key"], value, 0)
