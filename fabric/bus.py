"""Events onto the log: validate against the contract, route by type, encode, publish."""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from fabric.events import Event
from fabric.log import Log, Message
from fabric.schemas import Registry, registry

__all__ = ["DLQ_TOPIC", "Bus"]

DLQ_TOPIC = "fabric.dlq"

# Topics keyed by something with many values whose consumers work one record at a time:
# uploads are ordered per account, so accounts hashed onto one partition wait for each
# other; more partitions, fewer collisions. (Partition counts are fixed at topic creation.)
PARTITIONS = {"fabric.publish": 32, "fabric.chunks": 16}


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
        self.registry.verdicts.add(value)
        return Message(
            self.topic(etype.topic), etype.key_of(event), value, etype.partition_of(event)
        )

    async def publish(self, *events: Event) -> list[tuple[int, int]]:
        return await self.log.publish_batch([self.message(e) for e in events])

    async def ensure_topics(self, extra: Iterable[str] = ()) -> None:
        """Create missing topics: the default partition count, except where a topic's
        key needs more parallelism (see PARTITIONS)."""
        names = {self.topic(n) for n in self.registry.topics() | {DLQ_TOPIC}} | set(extra)
        wider = {self.topic(t): n for t, n in PARTITIONS.items()}
        await self.log.create_topics(sorted(n for n in names if n not in wider))
        for name in sorted(names & set(wider)):
            await self.log.create_topics([name], max(wider[name], self.log.default_partitions))
