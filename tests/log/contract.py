"""The Log contract: one set of test cases, run against every backend.

A backend's test module subclasses ``ProcessContract`` (or, for a backend that lives inside
one process like MemoryLog, ``LogContract``) and gives it ``url(tmp_path)``; the cases use
only the ``Log`` Protocol and the runtime on top of it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sqlite3
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from fabric.dlq import list_dead_letters
from fabric.events import Event, encode, new_event
from fabric.log import Log, Message, Record, Subscription, open_log
from fabric.runtime import Consumer, Context, Runtime
from fabric.store.db import SqliteDatabase
from tests.conftest import eventually, python, unique

HERE = Path(__file__).resolve().parent


def ping(seq: int, key: str = "k") -> Event:
    return new_event("probe.ping", {"seq": seq, "note": "x" * 200}, subject=key)


async def drain(sub: Subscription, want: int, timeout: float = 30.0) -> list[Record]:
    """Read (and ack) until ``want`` records arrived."""
    got: list[Record] = []

    async def more() -> bool:
        for rec in await sub.getmany(500, 0.2):
            got.append(rec)
            sub.ack(rec)
        return len(got) >= want

    await eventually(more, timeout, f"{want} records (have {len(got)})")
    return got


class LogContract:
    def url(self, tmp_path: Path) -> str:
        raise NotImplementedError

    @pytest.fixture
    async def log(self, tmp_path: Path) -> AsyncIterator[Log]:
        log = open_log(self.url(tmp_path))
        await log.start()
        yield log
        await log.close()

    @pytest.fixture
    def topic(self) -> str:
        return unique("t")

    # -- publishing and reading ----------------------------------------------------------
    async def test_publish_returns_positions_and_read_returns_records(
        self, log: Log, topic: str
    ) -> None:
        await log.create_topics([topic], 4)
        positions = await log.publish_batch(
            [Message(topic, "a", f"v{i}".encode()) for i in range(5)]
        )
        assert len({p for p, _ in positions}) == 1  # one key, one partition
        partition = positions[0][0]
        assert [o for _, o in positions] == list(range(positions[0][1], positions[0][1] + 5))
        records = await log.read(topic, partition, positions[0][1], 100)
        assert [r.value for r in records] == [f"v{i}".encode() for i in range(5)]
        assert all(r.key == "a" for r in records)
        assert (await log.end_offsets(topic))[partition] == positions[-1][1] + 1
        assert (await log.topics())[topic] == 4

    async def test_explicit_partition_overrides_the_key(self, log: Log, topic: str) -> None:
        await log.create_topics([topic], 4)
        positions = await log.publish_batch(
            [Message(topic, "same-key", b"x", partition=i) for i in range(8)]
        )
        assert [p for p, _ in positions] == [0, 1, 2, 3, 0, 1, 2, 3]

    async def test_order_is_kept_per_key(self, log: Log, topic: str) -> None:
        await log.create_topics([topic], 4)
        keys = [f"task-{i}" for i in range(6)]
        for start in range(0, 300, 50):  # interleaved batches
            await log.publish_batch(
                [Message(topic, keys[i % 6], str(i).encode()) for i in range(start, start + 50)]
            )
        sub = log.subscribe(unique("g"), [topic])
        records = await drain(sub, 300)
        await sub.close()
        per_key: dict[str, list[int]] = defaultdict(list)
        for rec in records:
            per_key[rec.key or ""].append(int(rec.value))
        assert sorted(per_key) == keys
        for values in per_key.values():
            assert values == sorted(values) and len(values) == 50

    async def test_large_batch(self, log: Log, topic: str) -> None:
        await log.create_topics([topic], 8)
        n = 20_000
        positions = await log.publish_batch(
            [Message(topic, f"k{i % 97}", b"y" * 300) for i in range(n)]
        )
        assert len(positions) == n
        per_partition = Counter(p for p, _ in positions)
        ends = await log.end_offsets(topic)
        assert {p: ends[p] for p in per_partition} == dict(per_partition)
        sub = log.subscribe(unique("g"), [topic])
        assert len(await drain(sub, n, 60)) == n
        await sub.close()

    # -- groups and offsets --------------------------------------------------------------
    async def test_commit_and_resume(self, log: Log, topic: str) -> None:
        await log.create_topics([topic], 1)
        await log.publish_batch([Message(topic, "k", str(i).encode()) for i in range(100)])
        group = unique("g")
        sub = log.subscribe(group, [topic])
        first = []
        while len(first) < 40:
            for rec in await sub.getmany(40 - len(first), 1.0):
                first.append(rec)
                sub.ack(rec)
        await sub.close()
        assert (await log.committed(group, topic))[0] == 40
        sub = log.subscribe(group, [topic])
        rest = await drain(sub, 60)
        await sub.close()
        assert [int(r.value) for r in first + rest] == list(range(100))

    async def test_only_contiguous_acks_are_committed(self, log: Log, topic: str) -> None:
        await log.create_topics([topic], 1)
        await log.publish_batch([Message(topic, "k", str(i).encode()) for i in range(10)])
        group = unique("g")
        sub = log.subscribe(group, [topic])
        got: list[Record] = []
        while len(got) < 10:
            got += await sub.getmany(10 - len(got), 1.0)
        for rec in got:
            if rec.offset not in (3, 4):  # 3 and 4 are still "running"
                sub.ack(rec)
        await sub.commit()
        await sub.close()
        assert (await log.committed(group, topic))[0] == 3
        sub = log.subscribe(group, [topic])
        again = await drain(sub, 7)
        await sub.close()
        assert [r.offset for r in again] == list(range(3, 10))

    async def test_replay_seek_and_time_lookup(self, log: Log, topic: str) -> None:
        await log.create_topics([topic], 1)
        await log.publish_batch([Message(topic, "k", str(i).encode()) for i in range(50)])
        await log.publish_batch([Message(topic, "k", str(i).encode()) for i in range(50, 100)])
        everything = await log.read(topic, 0, 0, 1000)
        assert [int(r.value) for r in everything] == list(range(100))
        stamps = [r.timestamp_ms for r in everything]
        assert stamps == sorted(stamps)
        cut = stamps[50]
        at = await log.offset_for_time(topic, 0, cut)
        assert all(s < cut for s in stamps[:at]) and all(s >= cut for s in stamps[at:])
        assert await log.offset_for_time(topic, 0, stamps[-1] + 10_000) == 100
        sub = log.subscribe(unique("g"), [topic])
        await drain(sub, 100)
        await sub.seek((topic, 0), 90)
        again = await drain(sub, 10)
        await sub.close()
        assert [int(r.value) for r in again] == list(range(90, 100))

    async def test_two_members_share_the_partitions(self, log: Log, topic: str) -> None:
        await log.create_topics([topic], 4)
        n = 2000
        await log.publish_batch([Message(topic, f"k{i}", str(i).encode()) for i in range(n)])
        group = unique("g")
        subs = [log.subscribe(group, [topic]), log.subscribe(group, [topic])]
        seen: list[Counter[int]] = [Counter(), Counter()]

        async def member(i: int) -> bool:
            for rec in await subs[i].getmany(20, 0.1):
                seen[i][int(rec.value)] += 1
                subs[i].ack(rec)
                await asyncio.sleep(0)  # let the other member join while work remains
            return sum(len(s) for s in seen) >= n and all(seen)

        async def both() -> bool:
            a, b = await asyncio.gather(member(0), member(1))
            return a and b

        await eventually(both, 60, "both members to take part")
        for sub in subs:
            await sub.close()
        assert set(seen[0]) | set(seen[1]) == set(range(n))
        assert seen[0] and seen[1]

    # -- the runtime on this backend (each test on its own topic and group) -----------------
    async def _runtime(self, log: Log, tmp_path: Path) -> tuple[Runtime, SqliteDatabase]:
        db = SqliteDatabase(str(tmp_path / "state.db"))
        await db.start()
        rt = Runtime(log, db)
        await rt.bus.ensure_topics()
        return rt, db

    async def _put(self, log: Log, topic: str, *events: Event) -> None:
        await log.publish_batch([Message(topic, e.subject, encode(e)) for e in events])

    async def test_bad_records_go_to_the_dlq_and_the_consumer_goes_on(
        self, log: Log, tmp_path: Path, topic: str
    ) -> None:
        rt, db = await self._runtime(log, tmp_path)
        await log.create_topics([topic], 1)
        key = "one-key"
        bad = [
            ("decode_error", os.urandom(64).replace(b"{", b"x")),
            ("decode_error", b'{"id": "truncated'),
            ("schema_violation", encode(ping(-5, key))),
            ("unknown_type", orjson.dumps(dict(ping(1, key).as_dict(), type="no.such.type"))),
            ("newer_schema_version", orjson.dumps(dict(ping(9, key).as_dict(), schema_version=99))),
            ("bad_envelope", orjson.dumps({"hello": "world"})),
        ]
        await self._put(log, topic, ping(0, key))
        for _, raw in bad:
            await log.publish(topic, key, raw)
        await self._put(log, topic, ping(1, key), ping(2, key))
        handled: list[int] = []

        async def handle(event: Event, ctx: Context) -> None:
            handled.append(event.data["seq"])

        group = unique("dlq-test")
        stop = asyncio.Event()
        task = asyncio.create_task(rt.run([Consumer(group, [topic], handle)], stop))
        await eventually(lambda: len(handled) == 3, 30, "the valid events")
        letters = []

        async def dead() -> bool:
            letters[:] = [d for d in await list_dead_letters(rt.bus) if d.data["consumer"] == group]
            return len(letters) == len(bad)

        await eventually(dead, 30, "the dead letters")
        stop.set()
        await task
        await db.close()
        assert handled == [0, 1, 2]  # in order, the garbage between them skipped
        assert sorted(d.data["code"] for d in letters) == sorted(code for code, _ in bad)
        assert {d.original for d in letters} == {raw for _, raw in bad}
        for d in letters:
            assert (d.data["source"]["topic"], d.data["source"]["key"]) == (topic, key)
            assert base64.b64decode(d.data["original_b64"]) == d.original
        assert rt.stats()[group]["dlq"] == len(bad)

    async def test_handler_failures_are_retried_then_dead_lettered(
        self, log: Log, tmp_path: Path, topic: str
    ) -> None:
        rt, db = await self._runtime(log, tmp_path)
        calls: Counter[int] = Counter()

        async def handle(event: Event, ctx: Context) -> None:
            seq = event.data["seq"]
            calls[seq] += 1
            if seq == 1 and calls[seq] < 3:
                raise ConnectionError("flaky")  # succeeds on the third attempt
            if seq == 2:
                raise ValueError("always broken")
            ctx.sql("INSERT INTO kv (consumer, k, v) VALUES ('t', ?, 'x')", (f"seq-{seq}",))

        await log.create_topics([topic], 1)
        await self._put(log, topic, ping(1), ping(2), ping(3))
        group = unique("retry-test")
        spec = Consumer(
            group, [topic], handle, max_attempts=4, backoff_initial=0.01, backoff_max=0.02
        )
        stop = asyncio.Event()
        task = asyncio.create_task(rt.run([spec], stop))
        await eventually(lambda: calls[3] == 1, 30, "the event after the broken one")
        stop.set()
        await task
        rows = await db.fetchall("SELECT k FROM kv WHERE consumer='t' ORDER BY k")
        await db.close()
        assert calls == {1: 3, 2: 4, 3: 1}
        assert [r[0] for r in rows] == ["seq-1", "seq-3"]
        stats = rt.stats()[group]
        assert (stats["retried"], stats["dlq"], stats["handled"]) == (2 + 3, 1, 2)
        letters = [d for d in await list_dead_letters(rt.bus) if d.data["consumer"] == group]
        assert len(letters) == 1
        assert letters[0].data["attempts"] == 4 and letters[0].data["code"] == "ValueError"
        assert "always broken" in letters[0].data["reason"]

    async def test_redelivered_events_change_state_once(
        self, log: Log, tmp_path: Path, topic: str
    ) -> None:
        """The same events again (a producer retry, a re-drive): the handler never sees them."""
        rt, db = await self._runtime(log, tmp_path)
        await log.create_topics([topic], 4)
        events = [ping(i, f"k{i % 3}") for i in range(20)]
        await self._put(log, topic, *events, *events[:5])
        seen: list[int] = []

        async def handle(event: Event, ctx: Context) -> None:
            seen.append(event.data["seq"])
            # state is per key: one key's events are on one partition, handled in order
            total = await ctx.get(f"total:{event.subject}") or 0
            ctx.put(f"total:{event.subject}", total + event.data["seq"])

        group = unique("idem")
        stop = asyncio.Event()
        task = asyncio.create_task(rt.run([Consumer(group, [topic], handle)], stop))
        await eventually(
            lambda: len(seen) == 20 and rt.stats()[group]["duplicates"] == 5,
            30,
            "20 events and 5 duplicates",
        )
        await self._put(log, topic, *events)  # all of them once more
        await eventually(lambda: rt.stats()[group]["duplicates"] == 25, 30, "25 duplicates")
        stop.set()
        await task
        rows = await db.fetchall("SELECT k, v FROM kv WHERE consumer=? ORDER BY k", (group,))
        await db.close()
        assert sorted(seen) == list(range(20))
        assert [(k, int(v)) for k, v in rows] == [
            (f"total:k{r}", sum(range(r, 20, 3))) for r in range(3)
        ]


class ProcessContract(LogContract):
    """The cases with a second OS process: group members in other processes, SIGKILL."""

    def _state(self, tmp_path: Path) -> str:
        path = tmp_path / "members.db"
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE IF NOT EXISTS handled (seq INTEGER, member TEXT)")
        conn.commit()
        conn.close()
        return str(path)

    def _handled(self, path: str) -> list[tuple[int, str]]:
        conn = sqlite3.connect(path, timeout=30)
        try:
            return conn.execute("SELECT seq, member FROM handled").fetchall()
        finally:
            conn.close()

    def _member(self, tmp_path: Path, topic: str, group: str, name: str, *extra: str):  # type: ignore[no-untyped-def]
        state = self._state(tmp_path)
        return python(
            str(HERE / "member.py"),
            "--log",
            self.url(tmp_path),
            "--db",
            f"sqlite:///{state}",
            "--topic",
            topic,
            "--group",
            group,
            "--out",
            str(tmp_path / "calls.txt"),
            "--name",
            name,
            *extra,
        )

    async def _warm_up(self, log: Log, topic: str, state: str, start: int) -> int:
        """Pings ``start``, ``start + 1``, ... one per partition a round, until members a
        and b both handled some (then both hold partitions). Returns the next free seq."""
        seq = start

        async def both_hold_partitions() -> bool:
            nonlocal seq
            members = Counter(m for _, m in self._handled(state))
            if members["a"] and members["b"]:
                return True
            await self._publish_pings(log, topic, 4, start=seq)
            seq += 4
            return False

        await eventually(both_hold_partitions, 90, "both members")
        return seq

    async def _publish_pings(self, log: Log, topic: str, n: int, start: int = 0) -> None:
        await log.create_topics([topic], 4)
        await log.publish_batch(
            [
                Message(topic, f"k{i % 16}", encode(ping(i, f"k{i % 16}")), partition=i % 4)
                for i in range(start, start + n)
            ]
        )

    async def test_two_processes_share_a_group(self, log: Log, tmp_path: Path, topic: str) -> None:
        n = 400
        group = unique("g")
        state = self._state(tmp_path)
        await log.create_topics([topic], 4)
        procs = [self._member(tmp_path, topic, group, name, "--delay-ms", "5") for name in "ab"]
        try:
            # load published before they start would all go to whichever started first
            warm = await self._warm_up(log, topic, state, start=n)
            await self._publish_pings(log, topic, n)
            await eventually(lambda: len(self._handled(state)) >= warm, 90, f"{warm} handled")
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(30)
        rows = self._handled(state)
        assert sorted(seq for seq, _ in rows) == list(range(warm))  # each exactly once
        by_member = Counter(m for seq, m in rows if seq < n)  # the load, after the warm-up
        assert by_member["a"] > 0 and by_member["b"] > 0, by_member

    async def test_sigkilled_member_is_taken_over(
        self, log: Log, tmp_path: Path, topic: str
    ) -> None:
        n = 600
        group = unique("g")
        state = self._state(tmp_path)
        await log.create_topics([topic], 4)
        a = self._member(tmp_path, topic, group, "a", "--delay-ms", "10")
        b = self._member(tmp_path, topic, group, "b", "--delay-ms", "10")
        try:
            members = lambda: Counter(m for _, m in self._handled(state))  # noqa: E731
            warm = await self._warm_up(log, topic, state, start=n)
            await self._publish_pings(log, topic, n)
            await eventually(
                lambda: members()["a"] >= 8 and members()["b"] >= 8,
                90,
                "both members handling the load",
            )
            a.send_signal(signal.SIGKILL)
            a.wait(10)
            await eventually(
                lambda: len(self._handled(state)) >= warm, 90, "b to finish a's partitions"
            )
        finally:
            for p in (a, b):
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    p.wait(30)
        rows = self._handled(state)
        assert sorted(seq for seq, _ in rows) == list(range(warm))  # none lost, none twice
        calls = (tmp_path / "calls.txt").read_text().split()
        by = Counter(m for m in calls[::2])
        a_parts = {int(s) % 4 for m, s in zip(calls[::2], calls[1::2], strict=True) if m == "a"}
        b_late = {
            int(s) % 4
            for m, s in zip(calls[::2], calls[1::2], strict=True)
            if m == "b" and int(s) < n
        }
        assert a_parts <= b_late, (a_parts, b_late)  # b handled a's partitions after the kill
        assert by["b"] > by["a"], by

    async def test_crash_mid_handler_redelivers_at_least_once(
        self, log: Log, tmp_path: Path, topic: str
    ) -> None:
        n = 200
        crash_at = 123
        await self._publish_pings(log, topic, n)
        group = unique("g")
        state = self._state(tmp_path)
        first = self._member(tmp_path, topic, group, "first", "--crash-at", str(crash_at))
        assert first.wait(90) == -signal.SIGKILL
        second = self._member(tmp_path, topic, group, "second", "--crash-at", str(crash_at))
        try:
            await eventually(lambda: len(self._handled(state)) >= n, 90, f"{n} handled")
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
        rows = self._handled(state)
        assert sorted(seq for seq, _ in rows) == list(range(n))  # state: exactly once
        calls = (tmp_path / "calls.txt").read_text().split()
        invocations = Counter(int(s) for s in calls[1::2])
        assert invocations[crash_at] >= 2  # the crashed event was delivered again
        assert set(invocations) == set(range(n))
        assert dict(Counter(m for _, m in rows))["second"] > 0
