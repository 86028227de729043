"""The part of a group subscription that does not depend on where records live.

``SqliteLog`` and ``MemoryLog`` implement group membership themselves (Kafka does it in the
broker); this base keeps, per owned partition, the fetch position, the offset tracker and the
last committed offset, and runs the hand-over protocol: before a partition leaves this member
the runtime's ``on_revoke`` drains its in-flight records, then the done ones are committed.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Sequence

from fabric.log import TP, OnRevoke, Record
from fabric.log._offsets import OffsetTracker

__all__ = ["Owned", "PartitionedSubscription"]


class Owned:
    """One owned partition. A new object per ownership, so stale fetches are recognisable."""

    __slots__ = ("committed", "paused", "position", "tracker")

    def __init__(self, committed: int) -> None:
        self.position = committed
        self.committed = committed
        self.tracker = OffsetTracker(committed)
        self.paused = False


class PartitionedSubscription(abc.ABC):
    commit_interval = 0.2

    def __init__(self, group: str, topics: Sequence[str], on_revoke: OnRevoke | None) -> None:
        self.group = group
        self.topics = list(topics)
        self._on_revoke = on_revoke
        self._owned: dict[TP, Owned] = {}
        self._last_commit = time.monotonic()
        self._closed = False
        self._membership = asyncio.Lock()

    # -- backend hooks -------------------------------------------------------------------
    @abc.abstractmethod
    async def _fetch(self, wanted: list[tuple[TP, int]], max_records: int) -> list[Record]:
        """Records at or after each position, at most max_records in all."""

    @abc.abstractmethod
    async def _store(self, offsets: dict[TP, int]) -> None:
        """Persist committed offsets (fenced: only partitions this member still owns)."""

    @abc.abstractmethod
    async def _wait(self, timeout: float) -> None:
        """Sleep until new records may exist, or timeout."""

    # -- Subscription --------------------------------------------------------------------
    def assignment(self) -> set[TP]:
        return set(self._owned)

    def pause(self, tp: TP) -> None:
        if (owned := self._owned.get(tp)) is not None:
            owned.paused = True

    def resume(self, tp: TP) -> None:
        if (owned := self._owned.get(tp)) is not None:
            owned.paused = False
            self._dirty()

    def _dirty(self) -> None:
        """Positions changed outside a fetch: backends that skip idle fetches must look again."""

    async def seek(self, tp: TP, offset: int) -> None:
        owned = self._owned.get(tp)
        if owned is None:
            raise KeyError(f"{tp} is not assigned to this member")
        owned.position = offset
        owned.tracker.reset(offset)
        self._dirty()

    def ack(self, record: Record) -> None:
        owned = self._owned.get(record.tp)
        if owned is not None:  # else: revoked meanwhile; the next owner sees it again
            owned.tracker.done(record.offset)

    async def getmany(self, max_records: int = 500, timeout: float = 0.5) -> list[Record]:
        deadline = time.monotonic() + timeout
        while not self._closed:
            if time.monotonic() - self._last_commit >= self.commit_interval:
                await self.commit()
            snapshot = {tp: o for tp, o in self._owned.items() if not o.paused}
            records = (
                await self._fetch([(tp, o.position) for tp, o in snapshot.items()], max_records)
                if snapshot
                else []
            )
            out = []
            for rec in records:
                owned = snapshot[rec.tp]
                # dropped if the partition was revoked or sought while the fetch ran
                if self._owned.get(rec.tp) is owned and rec.offset >= owned.position:
                    owned.position = rec.offset + 1
                    owned.tracker.delivered(rec.offset)
                    out.append(rec)
            if out:
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            await self._wait(left)
        return []

    async def commit(self) -> None:
        self._last_commit = time.monotonic()
        offsets = {
            tp: o.tracker.committable
            for tp, o in self._owned.items()
            if o.tracker.committable > o.committed
        }
        if offsets:
            await self._store(offsets)
            for tp, off in offsets.items():
                if (owned := self._owned.get(tp)) is not None:
                    owned.committed = max(owned.committed, off)

    # -- hand-over -----------------------------------------------------------------------
    def _assign(self, tp: TP, committed: int) -> None:
        self._owned[tp] = Owned(committed)
        self._dirty()

    async def _revoke(self, tps: set[TP]) -> None:
        """Let the runtime drain in-flight work, commit what finished, then forget the tps."""
        tps = tps & set(self._owned)
        if not tps:
            return
        for tp in tps:
            self._owned[tp].paused = True
        if self._on_revoke is not None:
            await self._on_revoke(tps)
        offsets = {
            tp: self._owned[tp].tracker.committable
            for tp in tps
            if self._owned[tp].tracker.committable > self._owned[tp].committed
        }
        if offsets:
            await self._store(offsets)
        for tp in tps:
            del self._owned[tp]
