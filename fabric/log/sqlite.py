"""SqliteLog: the embedded, durable default log (one machine, zero set-up).

One WAL database file holds every topic. Appends go through a single writer thread and are
grouped: whatever publishes arrive while a transaction is being written go into the next
one, so throughput grows with load while each ``publish`` returns only after its records are
committed (synchronous=FULL; a record acknowledged to the producer survives kill -9).

Consumer groups work across OS processes through two tables: ``members`` (a heartbeat per
member) and ``leases`` (per group and partition: the committed offset, the owner and when its
lease ends). Each member computes the same round-robin assignment from the live members and
may only read a partition whose lease it holds; a lease is taken only when it is free or
expired, and offset commits are fenced by ownership. A member killed with SIGKILL stops
renewing: after ``session_timeout`` its partitions go to the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from functools import partial

from fabric._sqlite import GroupCommit, SqliteThread
from fabric.log import TP, Message, OnRevoke, Record, partition_for
from fabric.log._bell import ACTIVE_S, SAFETY_S, Doorbell
from fabric.log._partitioned import PartitionedSubscription
from fabric.log.assign import round_robin

__all__ = ["SqliteLog"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics(
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS heads(
    topic_id INTEGER NOT NULL, partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL, last_ts INTEGER NOT NULL,
    PRIMARY KEY(topic_id, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records(
    topic_id INTEGER NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    ts INTEGER NOT NULL, key TEXT, value BLOB NOT NULL,
    PRIMARY KEY(topic_id, partition, offset)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members(
    grp TEXT NOT NULL, member TEXT NOT NULL, heartbeat REAL NOT NULL,
    PRIMARY KEY(grp, member)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases(
    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    committed INTEGER NOT NULL DEFAULT 0, owner TEXT, expires REAL NOT NULL DEFAULT 0,
    PRIMARY KEY(grp, topic, partition)) WITHOUT ROWID;
"""


class SqliteLog:
    def __init__(
        self,
        path: str | os.PathLike[str],
        partitions: int = 8,
        *,
        session_timeout: float = 3.0,
        heartbeat: float = 0.5,
        poll_interval: float = 0.02,
        synchronous: str = "FULL",
    ) -> None:
        self.path = str(path)
        self.default_partitions = partitions
        self.session_timeout = session_timeout
        self.heartbeat = heartbeat
        self.poll_interval = poll_interval
        self._writer = SqliteThread(self.path, "log-writer", synchronous)
        self._reader = SqliteThread(self.path, "log-reader", synchronous)
        self._meta: dict[str, tuple[int, int]] = {}  # name -> (id, partitions)
        self._appends: GroupCommit[Message, tuple[int, int]] = GroupCommit(
            self._writer, self._append
        )
        # in-process wake-ups: appends per topic, and the subscriptions waiting on each topic
        self._appended: dict[str, int] = {}
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._started = False
        self._subs: set[_SqliteSubscription] = set()
        self._rr = 0
        # appends from other processes: their doorbell (see fabric.log._bell)
        self._bell: Doorbell | None = None

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return

        def schema(conn: sqlite3.Connection) -> None:
            conn.executescript(_SCHEMA)

        await self._writer.call(schema, inline=False)
        if self.path != ":memory:" and not self.path.startswith("file:"):
            self._bell = Doorbell.open(self.path + "-bell", self._heard)
        self._started = True

    async def close(self) -> None:
        for sub in list(self._subs):
            await sub.close()
        await self._appends.wait_idle()
        await self._writer.close()
        await self._reader.close()
        if self._bell is not None:
            self._bell.close()
            self._bell = None

    async def __aenter__(self) -> SqliteLog:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- topics --------------------------------------------------------------------------
    def _ensure_topic(self, conn: sqlite3.Connection, name: str, partitions: int | None) -> None:
        if name in self._meta:
            return
        row = conn.execute("SELECT id, partitions FROM topics WHERE name=?", (name,)).fetchone()
        if row is None:
            n = partitions or self.default_partitions
            cur = conn.execute("INSERT INTO topics(name, partitions) VALUES (?, ?)", (name, n))
            row = (cur.lastrowid, n)
            conn.executemany(
                "INSERT INTO heads VALUES (?, ?, 0, 0)", [(row[0], p) for p in range(n)]
            )
        self._meta[name] = (int(row[0]), int(row[1]))

    async def create_topics(self, names: Iterable[str], partitions: int | None = None) -> None:
        missing = [n for n in names if n not in self._meta]
        if missing:

            def create(conn: sqlite3.Connection) -> None:
                for name in missing:
                    self._ensure_topic(conn, name, partitions)

            await self._writer.transaction(create)

    async def topics(self) -> dict[str, int]:
        rows = await self._reader.call(
            lambda c: c.execute("SELECT name, partitions FROM topics").fetchall()
        )
        return {name: n for name, n in rows}

    async def _topic(self, name: str) -> tuple[int, int] | None:
        if name not in self._meta:
            row = await self._reader.call(
                lambda c: c.execute(
                    "SELECT id, partitions FROM topics WHERE name=?", (name,)
                ).fetchone()
            )
            if row is None:
                return None
            self._meta[name] = (int(row[0]), int(row[1]))
        return self._meta[name]

    # -- publishing ----------------------------------------------------------------------
    async def publish(
        self, topic: str, key: str | None, value: bytes, partition: int | None = None
    ) -> tuple[int, int]:
        return (await self.publish_batch([Message(topic, key, value, partition)]))[0]

    async def publish_batch(self, messages: Sequence[Message]) -> list[tuple[int, int]]:
        if not messages:
            return []
        if not self._started:
            await self.start()
        try:
            result = await self._appends.submit(list(messages))
        except Exception:
            self._meta.clear()  # a rolled-back topic creation must not stay cached
            raise
        self._notify({m.topic for m in messages})
        return result

    def _heard(self) -> None:
        for sub in self._subs:
            if sub._sleeping:
                sub._wake.set()

    def _notify(self, topics: set[str]) -> None:
        if self._bell is not None:
            self._bell.ring_soon()
        for topic in topics:
            self._appended[topic] = self._appended.get(topic, 0) + 1
            for wake in self._waiters.get(topic, ()):
                wake.set()

    def _append(self, conn: sqlite3.Connection, items: list[Message]) -> list[tuple[int, int]]:
        now = int(time.time() * 1000)
        heads: dict[tuple[int, int], list[int]] = {}
        rows = []
        out = []
        for m in items:
            self._ensure_topic(conn, m.topic, None)
            tid, n = self._meta[m.topic]
            self._rr += 1
            p = partition_for(m.key, n, m.partition, self._rr)
            head = heads.get((tid, p))
            if head is None:
                got = conn.execute(
                    "SELECT next_offset, last_ts FROM heads WHERE topic_id=? AND partition=?",
                    (tid, p),
                ).fetchone()
                head = heads[(tid, p)] = [got[0], max(got[1], now)]
            rows.append((tid, p, head[0], head[1], m.key, m.value))
            out.append((p, head[0]))
            head[0] += 1
        conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.executemany(
            "UPDATE heads SET next_offset=?, last_ts=? WHERE topic_id=? AND partition=?",
            [(h[0], h[1], tid, p) for (tid, p), h in heads.items()],
        )
        return out

    # -- reading -------------------------------------------------------------------------
    def _select(
        self, conn: sqlite3.Connection, topic: str, tid: int, p: int, offset: int, limit: int
    ) -> list[Record]:
        rows = conn.execute(
            "SELECT offset, ts, key, value FROM records"
            " WHERE topic_id=? AND partition=? AND offset>=? ORDER BY offset LIMIT ?",
            (tid, p, offset, limit),
        ).fetchall()
        return [Record(topic, p, o, k, v, ts) for o, ts, k, v in rows]

    async def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        meta = await self._topic(topic)
        if meta is None:
            return []
        return await self._reader.call(
            lambda c: self._select(c, topic, meta[0], partition, offset, limit)
        )

    async def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        meta = await self._topic(topic)
        if meta is None:
            return 0

        def search(conn: sqlite3.Connection) -> int:
            lo = 0
            hi = conn.execute(
                "SELECT next_offset FROM heads WHERE topic_id=? AND partition=?",
                (meta[0], partition),
            ).fetchone()[0]
            while lo < hi:  # timestamps never decrease within a partition
                mid = (lo + hi) // 2
                ts = conn.execute(
                    "SELECT ts FROM records WHERE topic_id=? AND partition=? AND offset=?",
                    (meta[0], partition, mid),
                ).fetchone()[0]
                lo, hi = (mid + 1, hi) if ts < timestamp_ms else (lo, mid)
            return lo

        return await self._reader.call(search)

    async def end_offsets(self, topic: str) -> dict[int, int]:
        meta = await self._topic(topic)
        if meta is None:
            return {}
        rows = await self._reader.call(
            lambda c: c.execute(
                "SELECT partition, next_offset FROM heads WHERE topic_id=?", (meta[0],)
            ).fetchall()
        )
        return dict(rows)

    async def committed(self, group: str, topic: str) -> dict[int, int]:
        rows = await self._reader.call(
            lambda c: c.execute(
                "SELECT partition, committed FROM leases WHERE grp=? AND topic=?", (group, topic)
            ).fetchall()
        )
        return dict(rows)

    # -- groups --------------------------------------------------------------------------
    def subscribe(
        self, group: str, topics: Sequence[str], on_revoke: OnRevoke | None = None
    ) -> _SqliteSubscription:
        sub = _SqliteSubscription(self, group, topics, on_revoke)
        self._subs.add(sub)
        return sub


class _SqliteSubscription(PartitionedSubscription):
    def __init__(
        self, log: SqliteLog, group: str, topics: Sequence[str], on_revoke: OnRevoke | None
    ) -> None:
        super().__init__(group, topics, on_revoke)
        self._log = log
        self.member = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # the log's reader connection, shared by every subscription of this process: reads
        # run inline on the event loop (fabric._sqlite), so separate connections bought no
        # concurrency, only a page cache each to refill after every append (3,000 tasks,
        # alternated: 128 and 127 tasks/s shared, 120 and 122 with one per subscription)
        self._reader = log._reader
        self._hb_task: asyncio.Task[None] | None = None
        self._joined: asyncio.Event = asyncio.Event()
        self._draining: dict[TP, asyncio.Task[None]] = {}
        self._data_version = -1
        # wake-ups: appends in this process set _wake at once; other processes' appends are
        # seen by looking (a query per partition), every poll interval, or with the doorbell
        # only after it rang (at most once per poll interval, and at least every SAFETY_S)
        self._wake = asyncio.Event()
        self._seen_appends = -1
        self._seen_rings = -1
        self._last_look = 0.0
        self._sleeping = False  # in a long wait that only a ring or an append here ends
        for topic in self.topics:
            log._waiters.setdefault(topic, set()).add(self._wake)

    def _dirty(self) -> None:
        self._data_version = -1
        self._wake.set()  # a sleeping wait (see _wait) must look now, not at the next ring

    async def _ensure_started(self) -> None:
        if self._hb_task is None:
            await self._log.start()
            await self._log.create_topics(self.topics)
            await self._beat()
            self._joined.set()
            self._hb_task = asyncio.create_task(self._heartbeat_loop(), name=f"hb-{self.group}")

    async def getmany(self, max_records: int = 500, timeout: float = 0.5) -> list[Record]:
        await self._ensure_started()
        return await super().getmany(max_records, timeout)

    async def _heartbeat_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._log.heartbeat)
            if not self._closed:
                await self._beat()

    async def _beat(self) -> None:
        """Renew membership and leases; take partitions due to us, hand over the others."""
        log = self._log
        pairs = [(t, p) for t in self.topics for p in range(log._meta[t][1])]
        owned = set(self._owned) | set(self._draining)

        def work(conn: sqlite3.Connection) -> tuple[dict[TP, int], set[TP], set[TP]]:
            now = time.time()
            conn.execute(
                "INSERT INTO members VALUES (?, ?, ?) ON CONFLICT(grp, member)"
                " DO UPDATE SET heartbeat=excluded.heartbeat",
                (self.group, self.member, now),
            )
            conn.execute(
                "DELETE FROM members WHERE grp=? AND heartbeat<?",
                (self.group, now - log.session_timeout),
            )
            members = [
                m for (m,) in conn.execute("SELECT member FROM members WHERE grp=?", (self.group,))
            ]
            conn.executemany(
                "INSERT OR IGNORE INTO leases(grp, topic, partition) VALUES (?, ?, ?)",
                [(self.group, t, p) for t, p in pairs],
            )
            target = set(round_robin(pairs, members)[self.member])
            acquired: dict[TP, int] = {}
            lost: set[TP] = set()
            expires = now + log.session_timeout
            for tp in sorted(target | owned):
                cur = conn.execute(
                    "UPDATE leases SET owner=?, expires=? WHERE grp=? AND topic=? AND partition=?"
                    " AND (owner IS NULL OR owner=? OR expires<?) RETURNING committed",
                    (self.member, expires, self.group, tp[0], tp[1], self.member, now),
                )
                got = cur.fetchall()  # run the statement to its end before the COMMIT
                row = got[0] if got else None
                if row is None:
                    if tp in owned:
                        lost.add(tp)
                elif tp not in owned:
                    acquired[tp] = row[0]
            return acquired, lost, target

        acquired, lost, target = await log._writer.transaction(work)
        for tp in lost:  # somebody else holds it now: stop at once, commits would be fenced
            if tp in self._owned and tp not in self._draining:
                task = asyncio.create_task(self._revoke(tp_set := {tp}))
                self._draining[tp] = task
                task.add_done_callback(partial(self._forget_done, tp_set))
        for tp, committed in acquired.items():
            self._assign(tp, committed)
        for tp in set(self._owned) - target - set(self._draining):
            task = asyncio.create_task(self._hand_over(tp))
            self._draining[tp] = task

    def _forget_done(self, tps: set[TP], _task: asyncio.Task[None]) -> None:
        self._forget(tps)

    def _forget(self, tps: set[TP]) -> None:
        for tp in tps:
            self._draining.pop(tp, None)

    async def _hand_over(self, tp: TP) -> None:
        try:
            await self._revoke({tp})
            await self._release({tp})
        finally:
            self._draining.pop(tp, None)

    async def _release(self, tps: set[TP]) -> None:
        rows = [(self.group, t, p, self.member) for t, p in tps]

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE leases SET owner=NULL, expires=0"
                " WHERE grp=? AND topic=? AND partition=? AND owner=?",
                rows,
            )

        await self._log._writer.transaction(work)

    def _bell(self) -> Doorbell | None:
        bell = self._log._bell
        return bell if bell is not None and bell.usable() else None

    def _should_look(self, changed: bool, now: float) -> bool:
        """Whether ``_fetch`` queries: at once after an append here or a reset; otherwise
        not sooner than a poll interval after the last look, and with a working doorbell
        only if it rang since (or SAFETY_S passed)."""
        if changed or self._data_version == -1:
            return True
        if now - self._last_look < self._log.poll_interval:
            return False
        bell = self._bell()
        if bell is None or now - self._last_look >= SAFETY_S:
            return True
        return bell.rings != self._seen_rings

    async def _fetch(self, wanted: list[tuple[TP, int]], max_records: int) -> list[Record]:
        log = self._log
        appends = sum(log._appended.get(t, 0) for t in self.topics)
        changed = appends != self._seen_appends
        now = time.monotonic()
        if not self._should_look(changed, now):
            if self._bell() is not None:
                self._wake.clear()  # set by a ring, which is counted: the next poll looks
            return []  # another process's appends can wait a poll
        self._wake.clear()  # appends from now on wake the next wait
        self._seen_appends = appends
        self._seen_rings = log._bell.rings if log._bell is not None else -1
        self._last_look = now
        metas = {tp[0]: log._meta[tp[0]][0] for tp, _ in wanted}

        def fetch(conn: sqlite3.Connection) -> list[Record]:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if version == self._data_version and not changed:
                return []  # nothing committed by any other connection since the last look
            self._data_version = version
            out: list[Record] = []
            per = max(1, max_records // len(wanted))
            for (topic, p), pos in wanted:
                rows = log._select(conn, topic, metas[topic], p, pos, per)
                if len(rows) == per:  # more may be waiting: look again next time regardless
                    self._data_version = -1
                out.extend(rows)
            return out

        return await self._reader.call(fetch)

    async def _store(self, offsets: dict[TP, int]) -> None:
        rows = [(off, self.group, t, p, self.member, off) for (t, p), off in offsets.items()]

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE leases SET committed=? WHERE grp=? AND topic=? AND partition=?"
                " AND owner=? AND committed<?",
                rows,
            )

        await self._log._writer.transaction(work)

    async def _wait(self, timeout: float) -> None:
        """Until an append here, a poll interval, or (with the doorbell, when it has not
        rung for ACTIVE_S) the next ring or SAFETY_S after the last look."""
        bell = self._bell()
        now = time.monotonic()
        self._sleeping = bell is not None and now - bell.heard_at >= ACTIVE_S
        if self._sleeping:
            timeout = min(timeout, max(0.0, self._last_look + SAFETY_S - now))
        else:
            timeout = min(timeout, self._log.poll_interval)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            self._sleeping = False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._hb_task is not None:
            self._hb_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._hb_task
        for task in list(self._draining.values()):
            with contextlib.suppress(Exception):
                await task
        mine = set(self._owned)
        if self._hb_task is not None:
            await self._revoke(mine)
            await self._release(mine)

            def leave(conn: sqlite3.Connection) -> None:
                conn.execute(
                    "DELETE FROM members WHERE grp=? AND member=?", (self.group, self.member)
                )

            await self._log._writer.transaction(leave)
        for topic in self.topics:
            self._log._waiters.get(topic, set()).discard(self._wake)
        self._log._subs.discard(self)
