"""MemoryLog: the whole Log contract inside one process, for fast unit tests.

Nothing survives the process. Group members are subscriptions of the same MemoryLog object;
assignment is recomputed whenever one joins or leaves, with the same round-robin rule as
SqliteLog, and the losing member drains its in-flight work before the new one starts.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import Iterable, Sequence

from fabric.log import TP, Message, OnRevoke, Record, partition_for
from fabric.log._partitioned import PartitionedSubscription
from fabric.log.assign import round_robin

__all__ = ["MemoryLog"]


class MemoryLog:
    def __init__(self, partitions: int = 8) -> None:
        self.default_partitions = partitions
        self._parts: dict[str, list[list[Record]]] = {}
        self._committed: dict[str, dict[TP, int]] = {}
        self._members: dict[str, list[_MemorySubscription]] = {}
        self._rr = itertools.count()
        self._changed = asyncio.Event()
        self._rebalance_lock = asyncio.Lock()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for members in list(self._members.values()):
            for sub in list(members):
                await sub.close()

    async def create_topics(self, names: Iterable[str], partitions: int | None = None) -> None:
        for name in names:
            if name not in self._parts:
                self._parts[name] = [[] for _ in range(partitions or self.default_partitions)]

    async def publish(
        self, topic: str, key: str | None, value: bytes, partition: int | None = None
    ) -> tuple[int, int]:
        return (await self.publish_batch([Message(topic, key, value, partition)]))[0]

    async def publish_batch(self, messages: Sequence[Message]) -> list[tuple[int, int]]:
        out = []
        now = int(time.time() * 1000)
        for m in messages:
            await self.create_topics([m.topic])
            parts = self._parts[m.topic]
            p = partition_for(m.key, len(parts), m.partition, next(self._rr))
            log = parts[p]
            ts = max(now, log[-1].timestamp_ms) if log else now
            log.append(Record(m.topic, p, len(log), m.key, m.value, ts))
            out.append((p, len(log) - 1))
        self._changed.set()
        self._changed = asyncio.Event()
        return out

    def subscribe(
        self, group: str, topics: Sequence[str], on_revoke: OnRevoke | None = None
    ) -> _MemorySubscription:
        sub = _MemorySubscription(self, group, topics, on_revoke)
        self._members.setdefault(group, []).append(sub)
        sub._pending = asyncio.ensure_future(self._rebalance(group, topics))
        return sub

    async def _rebalance(self, group: str, topics: Sequence[str]) -> None:
        async with self._rebalance_lock:
            await self.create_topics(topics)
            members = self._members.get(group, [])
            pairs = sorted((t, p) for t in topics for p in range(len(self._parts[t])))
            target = round_robin(pairs, [str(i) for i in range(len(members))])
            for i, sub in enumerate(members):
                mine = set(target.get(str(i), []))
                await sub._revoke(sub.assignment() - mine)
            committed = self._committed.setdefault(group, {})
            for i, sub in enumerate(members):
                for tp in sorted(set(target.get(str(i), [])) - sub.assignment()):
                    sub._assign(tp, committed.get(tp, 0))

    async def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        return self._parts.get(topic, [[]] * (partition + 1))[partition][offset : offset + limit]

    async def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        log = self._parts[topic][partition]
        return bisect.bisect_left([r.timestamp_ms for r in log], timestamp_ms)

    async def topics(self) -> dict[str, int]:
        return {t: len(p) for t, p in self._parts.items()}

    async def end_offsets(self, topic: str) -> dict[int, int]:
        return {i: len(p) for i, p in enumerate(self._parts.get(topic, []))}

    async def committed(self, group: str, topic: str) -> dict[int, int]:
        got = self._committed.get(group, {})
        return {p: off for (t, p), off in got.items() if t == topic}


class _MemorySubscription(PartitionedSubscription):
    _pending: asyncio.Future[None] | None = None

    def __init__(
        self, log: MemoryLog, group: str, topics: Sequence[str], on_revoke: OnRevoke | None
    ) -> None:
        super().__init__(group, topics, on_revoke)
        self._log = log

    async def getmany(self, max_records: int = 500, timeout: float = 0.5) -> list[Record]:
        if self._pending is not None:
            await self._pending
            self._pending = None
        return await super().getmany(max_records, timeout)

    async def _fetch(self, wanted: list[tuple[TP, int]], max_records: int) -> list[Record]:
        out: list[Record] = []
        for (topic, p), pos in wanted:
            out.extend(self._log._parts[topic][p][pos : pos + max_records - len(out)])
            if len(out) >= max_records:
                break
        return out

    async def _store(self, offsets: dict[TP, int]) -> None:
        committed = self._log._committed.setdefault(self.group, {})
        for tp, off in offsets.items():
            committed[tp] = max(committed.get(tp, 0), off)

    async def _wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._log._changed.wait(), timeout)
        except TimeoutError:
            pass

    async def close(self) -> None:
        if self._closed:
            return
        if self._pending is not None:
            await self._pending
        await self.commit()
        self._closed = True
        members = self._log._members.get(self.group, [])
        if self in members:
            members.remove(self)
            self._owned.clear()
            await self._log._rebalance(self.group, self.topics)
