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
    """``namespace`` prefixes every topic (and, in the runtime, every group): several
    independent deployments or test runs can share one Kafka cluster."""

    def __init__(self, log: Log, reg: Registry | None = None, namespace: str = "") -> None:
        self.log = log
        self.registry = reg or registry()
        self.namespace = namespace

    def topic(self, name: str) -> str:
        return f"{self.namespace}{name}"

    def message(self, event: Event) -> Message:
        """Validate (raises SchemaError) and route one event."""
        obj = event.as_dict()
        etype = self.registry.check_dict(obj)
        value = orjson.dumps(obj)
        return Message(self.topic(etype.topic), etype.key_of(event), value,
                       etype.partition_of(event))

    async def publish(self, *events: Event) -> list[tuple[int, int]]:
        return await self.log.publish_batch([self.message(e) for e in events])

    async def ensure_topics(self, extra: Iterable[str] = ()) -> None:
        names = self.registry.topics() | {DLQ_TOPIC}
        await self.log.create_topics(sorted({self.topic(n) for n in names} | set(extra)))
