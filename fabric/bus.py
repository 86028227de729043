"""Events onto the log: validate against the contract, route by type, encode, publish."""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from fabric.events import Event
from fabric.log import Log, Message
from fabric.schemas import Registry, registry

__all__ = ["DLQ_TOPIC", "Bus"]

DLQ_TOPIC = "fabric.dlq"


class Bus:
    def __init__(self, log: Log, reg: Registry | None = None) -> None:
        self.log = log
        self.registry = reg or registry()

    def message(self, event: Event) -> Message:
        """Validate (raises SchemaError) and route one event."""
        obj = event.as_dict()
        etype = self.registry.check_dict(obj)
        value = orjson.dumps(obj)
        return Message(etype.topic, etype.key_of(event), value, etype.partition_of(event))

    async def publish(self, *events: Event) -> list[tuple[int, int]]:
        return await self.log.publish_batch([self.message(e) for e in events])

    async def ensure_topics(self, extra: Iterable[str] = ()) -> None:
        await self.log.create_topics(sorted(self.registry.topics() | {DLQ_TOPIC} | set(extra)))
