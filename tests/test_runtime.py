"""Runtime behaviours beyond the log contract."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path

import orjson

from fabric.dlq import list_dead_letters
from fabric.events import Event, encode, new_event
from fabric.log import Message
from fabric.log.memory import MemoryLog
from fabric.runtime import Consumer, Context, Runtime
from fabric.store.db import SqliteDatabase
from tests.conftest import eventually


async def test_a_state_write_the_database_refuses_is_dead_lettered_not_retried_forever(
    tmp_path: Path,
) -> None:
    log = MemoryLog(partitions=1)
    db = SqliteDatabase(str(tmp_path / "state.db"))
    await db.start()
    rt = Runtime(log, db)
    await rt.bus.ensure_topics()
    handled: list[int] = []

    async def handle(event: Event, ctx: Context) -> None:
        seq = event.data["seq"]
        if seq == 1:  # its change breaks a constraint: kv.v is NOT NULL
            ctx.sql("INSERT INTO kv (consumer, k, v) VALUES ('x', 'y', NULL)")
        handled.append(seq)

    for seq in range(3):
        ev = new_event("probe.ping", {"seq": seq}, subject="s")
        await log.publish_batch([Message("t", "s", encode(ev))])
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run([Consumer("c", ["t"], handle, batch_max=1)], stop))
    await eventually(
        lambda: rt.workers.get("c") is not None and rt.stats()["c"]["dlq"] == 1 and 2 in handled,
        10,
        "the refused write dead-lettered, then the next event",
    )
    stop.set()
    await task
    letters = await list_dead_letters(rt.bus)
    assert [d.data["code"] for d in letters] == ["state_write_failed"]
    assert "NOT NULL" in letters[0].data["reason"]
    rows = await db.fetchall("SELECT COUNT(*) FROM inbox WHERE consumer='c'")
    assert rows[0][0] == 2  # events 0 and 2; the refused one left no inbox row
    await db.close()


async def test_committed_but_unpublished_events_are_swept_out(tmp_path: Path) -> None:
    """Another member committed a handler's effects and died before publishing them: the
    live member's periodic outbox sweep publishes them (once: same event id)."""
    log = MemoryLog(partitions=1)
    db = SqliteDatabase(str(tmp_path / "state.db"))
    await db.start()
    rt = Runtime(log, db)
    rt.outbox_sweep_s = 0.1
    await rt.bus.ensure_topics()

    async def handle(event: Event, ctx: Context) -> None:
        return None

    stop = asyncio.Event()
    task = asyncio.create_task(rt.run([Consumer("c", ["t"], handle)], stop))
    await eventually(lambda: "c" in rt.workers, 10, "the worker")
    orphan = new_event("probe.ping", {"seq": 42}, subject="s")  # the dead member's effect
    row = rt.outbox_row(orphan)
    await db.execute(
        "INSERT INTO outbox (event_id, consumer, topic, msg_key, part, value)"
        " VALUES (?, 'c', ?, ?, ?, ?)",
        (row.event_id, row.topic, row.key, row.partition, row.value),
    )

    async def published() -> bool:
        ends = await log.end_offsets("fabric.probe")
        return sum(ends.values()) == 1

    await eventually(published, 10, "the orphaned event on its topic")
    stop.set()
    await task
    records = [
        r
        for p in (await log.end_offsets("fabric.probe"))
        for r in await log.read("fabric.probe", p, 0, 10)
    ]
    assert [r.value for r in records] == [row.value]
    await db.close()


async def test_the_sweep_leaves_rows_younger_than_the_grace_to_their_live_member(
    tmp_path: Path,
) -> None:
    """A row committed just now belongs to a member that is about to publish it (after its
    ``emit_now`` notices): a sweep that took it would append it twice and out of order. The
    sweep takes it only once it is ``outbox_grace_s`` old."""
    import time

    from fabric.runtime import _Worker

    log = MemoryLog(partitions=1)
    db = SqliteDatabase(str(tmp_path / "state.db"))
    await db.start()
    rt = Runtime(log, db)
    await rt.bus.ensure_topics()
    worker = _Worker(rt, Consumer("c", ["t"], lambda e, c: asyncio.sleep(0)))
    now = time.time()
    rows = {}
    for seq, age in ((1, 0.0), (2, rt.outbox_grace_s + 1)):  # in flight, orphaned
        row = rows[seq] = rt.outbox_row(new_event("probe.ping", {"seq": seq}, subject="s"))
        await db.execute(
            "INSERT INTO outbox (event_id, consumer, topic, msg_key, part, value, created_ms)"
            " VALUES (?, 'c', ?, ?, ?, ?, ?)",
            (row.event_id, row.topic, row.key, row.partition, row.value, int((now - age) * 1000)),
        )
    await worker._drain_outbox()
    await worker._drain_outbox()  # the orphan's deletion waits for the next transaction
    records = await log.read("fabric.probe", 0, 0, 10)
    assert [r.value for r in records] == [rows[2].value]
    await db.close()


async def test_a_batch_commits_only_after_its_own_notices_are_appended(tmp_path: Path) -> None:
    """``emit_now`` notices belong to their batch. Two partitions' batches run at once; the
    first's notice is slow to append. Its outbox event must still land after the notice,
    and the second batch, which has no notice, must not wait for it."""
    from collections.abc import Sequence

    gate = asyncio.Event()

    class SlowNotices(MemoryLog):
        async def publish_batch(self, messages: Sequence[Message]) -> list[tuple[int, int]]:
            if any(b'"seq":100' in m.value for m in messages):
                await gate.wait()
            return await super().publish_batch(messages)

    log = SlowNotices(partitions=2)
    db = SqliteDatabase(str(tmp_path / "state.db"))
    await db.start()
    rt = Runtime(log, db)
    await rt.bus.ensure_topics()
    second_handled = asyncio.Event()

    async def handle(event: Event, ctx: Context) -> None:
        if event.data["seq"] == 0:
            await ctx.emit_now("probe.ping", {"seq": 100}, subject="s")  # the notice
            ctx.emit("probe.ping", {"seq": 101}, subject="s")  # the outcome, after it
            await second_handled.wait()  # the other batch reaches its commit meanwhile
        else:
            ctx.emit("probe.ping", {"seq": 201}, subject="other")
            second_handled.set()

    for seq in (0, 1):
        ev = new_event("probe.ping", {"seq": seq}, subject=f"in{seq}")
        await log.publish_batch([Message("t", f"in{seq}", encode(ev), seq)])

    async def published() -> list[int]:
        out = []
        for p in await log.end_offsets("fabric.probe"):
            for r in await log.read("fabric.probe", p, 0, 10):
                out.append(orjson.loads(r.value)["data"]["seq"])
        return out

    stop = asyncio.Event()
    task = asyncio.create_task(rt.run([Consumer("c", ["t"], handle, precheck=False)], stop))
    await eventually(lambda: _any_of(published(), {101, 201}), 10, "an outcome appended")
    gate.set()
    await eventually(lambda: _all_of(published(), {100, 101, 201}), 10, "every event appended")
    stop.set()
    await task
    seqs = await published()
    assert seqs.index(100) < seqs.index(101)  # same subject, same partition: log order
    await db.close()


async def _any_of(seqs: Awaitable[list[int]], wanted: set[int]) -> bool:
    return bool(wanted & set(await seqs))


async def _all_of(seqs: Awaitable[list[int]], wanted: set[int]) -> bool:
    return wanted <= set(await seqs)


async def test_an_unordered_consumer_starts_the_record_appended_first(tmp_path: Path) -> None:
    """Whatever order partitions come in (it follows lease hand-overs), the next record to
    start is the one appended first, ties going to the lower partition: a voice task's
    chunks (chunk i on partition i, appended together) are converted in index order."""
    from collections import deque

    from fabric.log import Record
    from fabric.runtime import _Worker

    db = SqliteDatabase(str(tmp_path / "state.db"))
    rt = Runtime(MemoryLog(partitions=8), db)
    spec = Consumer("c", ["t"], lambda e, c: asyncio.sleep(0), ordered=False, concurrency=2)
    worker = _Worker(rt, spec)

    def rec(partition: int, offset: int, ts: int) -> Record:
        return Record("t", partition, offset, None, b"", ts)

    # partitions as a member might hold them after a rebalance: not sorted
    for p in (6, 2, 4, 0):
        worker._queues[("t", p)] = deque([rec(p, 0, 1000)])
    worker._queues[("t", 2)].append(rec(2, 1, 1005))  # a later chunk on partition 2
    worker._queues[("t", 7)] = deque([rec(7, 0, 999)])  # appended before all of them
    order = []
    while (r := worker._oldest()) is not None:
        order.append((r.partition, r.offset))
    assert order == [(7, 0), (0, 0), (2, 0), (4, 0), (6, 0), (2, 1)]


def test_voice_chunks_past_the_partition_count_still_start_in_index_order() -> None:
    """Chunks 0..17 of one task appended together: 16 and 17 share partitions 0 and 1 with
    chunks 0 and 1, and the same timestamp, yet start after chunk 15."""
    from consumers.voice_worker import _chunk_order
    from fabric.log import Record
    from fabric.runtime import _appended

    records = [
        Record("chunks", i % 16, i // 16, "t", encode(new_event("probe.ping", {"index": i})), 7)
        for i in range(18)
    ]
    assert sorted(range(18), key=lambda i: _chunk_order(records[i])) == list(range(18))
    by_partition = sorted(range(18), key=lambda i: _appended(records[i]))  # the default
    assert by_partition[:3] == [0, 16, 1]
    assert _chunk_order(Record("chunks", 0, 0, None, b"garbage", 7)) == (7, 0)
