"""The consumer runtime: what every consumer (orchestrator, projector, voice worker, ...) runs on.

A consumer is a name (its group), the topics it reads, and ``async handler(event, ctx)``.
The runtime gives every handler the same guarantees:

* validation: a record that cannot be decoded or breaks the schema goes to the DLQ with the
  reason and its bytes; the consumer goes on (bytes this process has already validated, on
  publish or for another consumer, are not validated again: ``schemas.Verdicts``);
* idempotency: what a handler changes (SQL statements, kv state) and what it emits are
  written in one transaction together with its inbox row, so a redelivered event is a no-op
  (the *inbox*); emitted events are published from that committed *outbox*, so a crash
  between commit and publish loses nothing (leftovers at least ``outbox_grace_s`` old are
  published on start and by a periodic sweep);
* retries with exponential backoff and jitter (tenacity), then the DLQ with the exception
  and the attempt count; ``Permanent`` errors skip the retries;
* order: records of one partition are handled in order, in batches that share one
  transaction (throughput), unless the consumer is ``ordered=False`` (voice chunks), where
  up to ``concurrency`` records run at once and offsets still advance only contiguously;
* graceful shutdown: stop fetching, finish or release in-flight records, commit, leave;
* counters: handled, failed, retried, dlq, duplicates, and lag on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from fabric.bus import Bus
from fabric.dlq import dead_letter
from fabric.events import DecodeError, Event, encode, loads
from fabric.log import TP, Log, Message, Record, Subscription
from fabric.schemas import Registry, SchemaError, registry
from fabric.store.db import Database, OutboxRow, Unit, upsert

__all__ = ["Consumer", "Context", "Permanent", "Runtime"]

log = logging.getLogger("fabric.runtime")

OUTBOX_SWEEP_S = 10.0
# The sweep takes only outbox rows committed at least this long ago. A live member publishes
# its rows right after the commit; a sweep that took one still in flight (another process of
# the group, or this one between commit and publish) would append it a second time and, worse,
# ahead of what its member appends first (``emit_now`` notices): a publisher's
# publish.completed before its publish.started left tasks in ``publishing`` for good.
OUTBOX_GRACE_S = 5.0

Handler = Callable[[Event, "Context"], Awaitable[None]]


def _bad_data(exc: BaseException) -> bool:
    """Errors caused by what is written (constraints, SQL), not by the database being down."""
    import sqlite3

    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.DataError):
        return True
    try:
        import pymysql.err as mysql
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, mysql.IntegrityError | mysql.ProgrammingError | mysql.DataError)


class _Adapter(logging.LoggerAdapter[logging.Logger]):
    """Merges the call's ``extra`` with the event's (Python 3.11's adapter replaces it)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


class _Exhausted(Exception):
    def __init__(self, error: Exception, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


class Permanent(Exception):
    """A failure that retrying cannot fix: the event goes to the DLQ at once."""

    code = "permanent"


@dataclasses.dataclass(frozen=True)
class Consumer:
    name: str
    topics: Sequence[str]
    handler: Handler
    accepts: frozenset[str] | None = None  # event types handled; others are passed over
    ordered: bool = True
    concurrency: int = 1  # records in flight at once when ordered=False
    max_attempts: int = 5
    backoff_initial: float = 0.05
    backoff_max: float = 5.0
    batch_max: int = 500
    # Look the batch's event ids up in the inbox before running handlers. Worth it where a
    # handler has outside side effects or is slow; handlers that only stage state changes
    # skip it (the inbox row written with their changes still drops duplicates).
    precheck: bool = True
    # Wait this long for more records before handling a small batch: fewer, larger
    # transactions when events trickle in from many tasks at once (throughput), at the
    # price of that much latency per hop.
    linger_s: float = 0.0
    # ordered=False: which waiting record starts next, smallest first. Default: the one
    # appended first, ties (one batch shares a timestamp) to the lower partition.
    start_order: Callable[[Record], Any] | None = None
    on_start: Callable[[Runtime], Awaitable[None]] | None = None
    on_stop: Callable[[Runtime], Awaitable[None]] | None = None


@dataclasses.dataclass
class Stats:
    handled: int = 0
    failed: int = 0
    retried: int = 0
    dlq: int = 0
    duplicates: int = 0
    skipped: int = 0


class _Overlay:
    """What one batch's handlers leave before its commit: kv writes, visible to the next
    events of the batch, and ``emit_now`` appends still in flight, awaited before the
    commit. Per batch, not per worker: a worker runs batches of several partitions (and an
    unordered one several records) at once, and one batch must not await, or miss, the
    notices of another (a batch that found the list emptied by its neighbour committed and
    published publish.completed ahead of its own publish.started)."""

    __slots__ = ("notices", "values")

    def __init__(self) -> None:
        self.values: dict[str, bytes | None] = {}
        self.notices: list[asyncio.Future[Any]] = []


class Context:
    """What a handler may do: read state, stage state changes, emit events."""

    __slots__ = ("_overlay", "_w", "attempt", "emitted", "event", "ops", "record", "writes")

    def __init__(
        self, worker: _Worker, record: Record, event: Event, overlay: _Overlay, attempt: int
    ) -> None:
        self._w = worker
        self.record = record
        self.event = event
        self.attempt = attempt
        self._overlay = overlay
        self.ops: list[tuple[str, Sequence[Any]]] = []
        self.writes: dict[str, bytes | None] = {}
        self.emitted: list[tuple[Event, Message]] = []

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry the task id, event id and type."""
        ev = self.event
        return _Adapter(
            logging.getLogger(f"fabric.{self._w.spec.name}"),
            {"event_id": ev.id, "task_id": ev.subject, "event_type": ev.type},
        )

    @property
    def runtime(self) -> Runtime:
        return self._w.rt

    @property
    def consumer(self) -> str:
        return self._w.spec.name

    @property
    def db(self) -> Database:
        return self._w.rt.db

    def emit(self, type: str, data: dict[str, Any], *, subject: str | None = None) -> Event:
        """Stage an event caused by the current one; published after the commit."""
        ev = self.event.caused(type, data, source=self._w.spec.name, subject=subject)
        self.emitted.append((ev, self._w.rt.bus.message(ev)))
        return ev

    async def emit_now(
        self, type: str, data: dict[str, Any], *, subject: str | None = None
    ) -> Event:
        """Publish now, outside the transaction: for progress and "started" notices, which
        are informational, may repeat after a crash, and project idempotently. The append
        is queued, not awaited here: the runtime awaits it before the handler's outbox is
        published, so these events still land first."""
        ev = self.event.caused(type, data, source=self._w.spec.name, subject=subject)
        self._overlay.notices.append(asyncio.ensure_future(self._w.rt.bus.publish(ev)))
        return ev

    def sql(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Stage a statement for the consumer's transaction (``?`` placeholders)."""
        self.ops.append((sql, params))

    async def get(self, key: str) -> Any:
        if key in self.writes:
            raw = self.writes[key]
        elif key in self._overlay.values:
            raw = self._overlay.values[key]
        elif key in self._w.kv_cache:
            raw = self._w.kv_cache[key]
        else:
            rows = await self.db.fetchall(
                "SELECT v FROM kv WHERE consumer=? AND k=?", (self._w.spec.name, key)
            )
            raw = rows[0][0] if rows else None
            self._w.cache(key, raw)
        return None if raw is None else orjson.loads(raw)

    def put(self, key: str, value: Any) -> None:
        self.writes[key] = orjson.dumps(value)

    def delete(self, key: str) -> None:
        self.writes[key] = None

    def unit(self) -> Unit:
        name = self._w.spec.name
        if not self.writes and not self.emitted:
            return Unit(name, self.event.id, self.ops, [])
        dialect = self.db.dialect
        ops = self.ops
        for k, v in self.writes.items():
            if v is None:
                ops.append(("DELETE FROM kv WHERE consumer=? AND k=?", (name, k)))
            else:
                ops.append(
                    upsert(dialect, "kv", ("consumer", "k"), {"consumer": name, "k": k, "v": v})
                )
        outbox = [OutboxRow(e.id, m.topic, m.key, m.partition, m.value) for e, m in self.emitted]
        return Unit(name, self.event.id, ops, outbox)


class Runtime:
    """Runs consumers against one log and one state database."""

    def __init__(
        self, log: Log, db: Database, *, reg: Registry | None = None, namespace: str = ""
    ) -> None:
        self.log = log
        self.db = db
        self.bus = Bus(log, reg or registry(), namespace)
        self.registry = self.bus.registry
        self.workers: dict[str, _Worker] = {}
        self.revoke_grace = 30.0
        self.shutdown_grace = 30.0
        self.outbox_sweep_s = OUTBOX_SWEEP_S
        self.outbox_grace_s = OUTBOX_GRACE_S
        self.services: dict[str, Any] = {}  # shared objects consumers look up (platforms, ...)

    async def run(self, consumers: Sequence[Consumer], stop: asyncio.Event) -> None:
        # The SQLite threads release the GIL around every statement and must win it back
        # from the event loop thread; with the default 5 ms switch interval each hand-back can
        # wait that long (a convoy). 0.5 ms keeps the database threads flowing.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        await self.bus.ensure_topics(self.bus.topic(t) for c in consumers for t in c.topics)
        workers = [self.workers.setdefault(c.name, _Worker(self, c)) for c in consumers]
        tasks = [asyncio.create_task(w.run(stop), name=f"consumer-{w.spec.name}") for w in workers]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def outbox_row(self, event: Event) -> OutboxRow:
        """Validate and route an event for a Unit's outbox."""
        msg = self.bus.message(event)
        return OutboxRow(event.id, msg.topic, msg.key, msg.partition, msg.value)

    async def transact(self, units: Sequence[Unit]) -> list[bool]:
        """Commit units (state changes + outbox) outside any handler, then publish what
        was new: the way background loops (the scheduler's timers) emit events safely."""
        applied = await self.db.apply(units)
        rows = [r for u, ok in zip(units, applied, strict=True) if ok for r in u.outbox]
        if rows:
            await self.publish_outbox(rows)
        return applied

    async def publish_outbox(self, rows: Sequence[OutboxRow]) -> None:
        await self.log.publish_batch([Message(r.topic, r.key, r.value, r.partition) for r in rows])
        await self.db.outbox_done([r.event_id for r in rows])

    def stats(self) -> dict[str, dict[str, int]]:
        return {name: dataclasses.asdict(w.stats) for name, w in self.workers.items()}

    async def lag(self, consumer: Consumer) -> int:
        total = 0
        for logical in consumer.topics:
            topic = self.bus.topic(logical)
            ends = await self.log.end_offsets(topic)
            done = await self.log.committed(self.bus.topic(consumer.name), topic)
            total += sum(max(0, end - done.get(p, 0)) for p, end in ends.items())
        return total


def _appended(rec: Record) -> tuple[int, int]:
    return rec.timestamp_ms, rec.partition


class _Worker:
    def __init__(self, rt: Runtime, spec: Consumer) -> None:
        self.rt = rt
        self.spec = spec
        self.stats = Stats()
        self._queues: dict[TP, deque[Record]] = {}
        self._workers: dict[TP, asyncio.Task[None]] = {}
        self._inflight: dict[TP, set[asyncio.Task[None]]] = {}
        self._slots = asyncio.Semaphore(max(1, spec.concurrency))
        self._sub: Subscription | None = None
        self._paused: set[TP] = set()
        # Committed kv values this member has read or written. Keys belong to one partition
        # (a task's state lives with its events), and a partition to one member at a time:
        # while it is assigned nobody else writes them. Cleared on every revocation.
        self.kv_cache: dict[str, bytes | None] = {}
        self._retrying = AsyncRetrying(
            stop=stop_after_attempt(spec.max_attempts),
            wait=wait_exponential_jitter(
                multiplier=spec.backoff_initial, max=spec.backoff_max, jitter=spec.backoff_initial
            ),
            retry=retry_if_not_exception_type((Permanent, SchemaError)),
            reraise=True,
            before_sleep=self._count_retry,
        )

    def _count_retry(self, state: RetryCallState) -> None:
        self.stats.retried += 1
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "retrying",
            extra={"consumer": self.spec.name, "attempt": state.attempt_number, "error": repr(exc)},
        )

    # -- main loop -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        spec = self.spec
        if spec.on_start is not None:
            await spec.on_start(self.rt)
        await self._drain_outbox()
        bus = self.rt.bus
        sub = self._sub = self.rt.log.subscribe(
            bus.topic(spec.name), [bus.topic(t) for t in spec.topics], on_revoke=self._on_revoke
        )
        high = spec.batch_max * 2
        drained = time.monotonic()
        try:
            while not stop.is_set():
                if time.monotonic() - drained > self.rt.outbox_sweep_s:
                    drained = time.monotonic()
                    await self._drain_outbox()
                records = await sub.getmany(spec.batch_max * 4, 0.2)
                for rec in records:
                    tp = rec.tp
                    q = self._queues.get(tp)
                    if q is None:
                        q = self._queues[tp] = deque()
                    q.append(rec)
                    if len(q) >= high and tp not in self._paused:
                        sub.pause(tp)  # back-pressure: keep polling, stop fetching this one
                        self._paused.add(tp)
                    if tp not in self._workers:
                        self._workers[tp] = asyncio.create_task(self._partition(tp))
        finally:
            await self._shutdown(sub)
            if spec.on_stop is not None:
                await spec.on_stop(self.rt)

    async def _shutdown(self, sub: Subscription) -> None:
        for q in self._queues.values():
            q.clear()  # not started: the next owner gets them again (never acked)
        pending = list(self._workers.values()) + [t for s in self._inflight.values() for t in s]
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.rt.shutdown_grace)
            for t in late:
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await sub.close()

    def cache(self, key: str, raw: bytes | None) -> None:
        if len(self.kv_cache) >= 100_000:
            self.kv_cache.clear()
        self.kv_cache[key] = raw

    async def _on_revoke(self, tps: set[TP]) -> None:
        self.kv_cache.clear()
        pending: list[asyncio.Task[None]] = []
        for tp in tps:
            self._paused.discard(tp)
            if (q := self._queues.get(tp)) is not None:
                q.clear()
            if (t := self._workers.get(tp)) is not None:
                pending.append(t)
            pending.extend(self._inflight.get(tp, ()))
        if pending:
            # A handler still running after the grace period is left to finish on its own:
            # its record is not committed, so the next owner handles it again, and the inbox
            # (plus the handler's persisted intents) turn that second run into a no-op.
            await asyncio.wait(pending, timeout=self.rt.revoke_grace)

    async def _partition(self, tp: TP) -> None:
        q = self._queues[tp]
        sub = self._sub
        assert sub is not None
        try:
            while q:
                if self.spec.ordered:
                    if self.spec.linger_s and len(q) < self.spec.batch_max:
                        await asyncio.sleep(self.spec.linger_s)
                    batch = [q.popleft() for _ in range(min(len(q), self.spec.batch_max))]
                    await self._process_retrying(batch)
                    self._maybe_resume(tp, q, sub)
                else:
                    await self._slots.acquire()
                    rec = self._oldest()
                    if rec is None:
                        self._slots.release()
                        break
                    task = asyncio.create_task(self._one(rec))
                    self._inflight.setdefault(rec.tp, set()).add(task)
                    task.add_done_callback(self._inflight[rec.tp].discard)
                    self._maybe_resume(rec.tp, self._queues[rec.tp], sub)
        finally:
            self._workers.pop(tp, None)

    def _maybe_resume(self, tp: TP, q: deque[Record], sub: Subscription) -> None:
        if tp in self._paused and len(q) < self.spec.batch_max:
            self._paused.discard(tp)
            sub.resume(tp)

    def _oldest(self) -> Record | None:
        """Take the waiting record that should start next, from whichever partition holds it.

        Unordered consumers start records in the order they were appended (``start_order``
        refines ties), not in the order their partitions happen to win a free slot, which
        follows lease hand-overs. A voice task's chunks are appended together and converted
        in index order, so the aggregator, which encodes the joined audio in order as chunks
        arrive, is left with only the last chunks to encode when the workers finish.
        """
        order = self.spec.start_order or _appended
        heads = [q for q in self._queues.values() if q]
        return min(heads, key=lambda q: order(q[0])).popleft() if heads else None

    async def _one(self, rec: Record) -> None:
        try:
            await self._process_retrying([rec])
        finally:
            self._slots.release()

    async def _process_retrying(self, batch: list[Record]) -> None:
        """Process a batch; on infrastructure failure (state DB, log) back off and redo it."""
        attempt = 0
        while True:
            try:
                await self._process(batch)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                attempt += 1
                delay = min(self.spec.backoff_max, self.spec.backoff_initial * 2**attempt)
                log.exception(
                    "batch failed, will retry",
                    extra={"consumer": self.spec.name, "attempt": attempt, "delay_s": delay},
                )
                await asyncio.sleep(delay)

    # -- one batch -----------------------------------------------------------------------
    async def _process(self, batch: list[Record]) -> None:
        spec = self.spec
        stats = self.stats
        reg = self.rt.registry
        known = reg.types
        accepts = spec.accepts
        units: list[Unit] = []
        origin: list[Record] = []
        good: list[tuple[Record, Event]] = []
        for rec in batch:
            obj: dict[str, Any] | None = None
            try:
                obj = loads(rec.value)
                kind = obj.get("type")
                if accepts is not None and kind in known and kind not in accepts:
                    stats.skipped += 1  # a known type for other consumers: they validate it
                    continue
                ev = reg.parse_record(rec.value, obj)
            except (DecodeError, SchemaError) as exc:
                units.append(self._dead(rec, exc.code, str(exc), 0, None, obj))
                origin.append(rec)
                continue
            good.append((rec, ev))
        seen = await self._seen([ev.id for _, ev in good]) if good and spec.precheck else set()
        overlay = _Overlay()
        handler = spec.handler
        handled = 0
        for rec, ev in good:
            if ev.id in seen:
                stats.duplicates += 1
                continue
            seen.add(ev.id)  # a copy later in this same batch is a duplicate too
            ctx = Context(self, rec, ev, overlay, 1)
            try:
                await handler(ev, ctx)  # the fast path: no retry machinery per event
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as first:
                units.append(await self._handle_failure(rec, ev, overlay, first))
            else:
                handled += 1
                if ctx.writes:
                    overlay.values.update(ctx.writes)
                units.append(ctx.unit())
            origin.append(rec)
        stats.handled += handled
        if overlay.notices:
            await asyncio.gather(*overlay.notices)
        if units:
            applied = await self._apply(units, origin)
            for key, value in overlay.values.items():
                if all(applied):
                    self.cache(key, value)
                else:  # a rival's duplicate won somewhere: read these keys afresh
                    self.kv_cache.pop(key, None)
            rows = [r for u, ok in zip(units, applied, strict=True) if ok for r in u.outbox]
            stats.duplicates += applied.count(False)
            if rows:
                await self._publish(rows)
        ack = self._sub.ack  # type: ignore[union-attr]
        for rec in batch:
            ack(rec)

    async def _handle_failure(
        self, rec: Record, ev: Event, overlay: _Overlay, first: Exception
    ) -> Unit:
        try:
            ctx = await self._retry(rec, ev, overlay, first)
        except _Exhausted as gave_up:
            exc, attempts = gave_up.error, gave_up.attempts
            self.stats.failed += 1
            code = getattr(exc, "code", None) or type(exc).__name__
            log.error(
                "handler failed, dead-lettered",
                extra={
                    "consumer": self.spec.name,
                    "event_id": ev.id,
                    "task_id": ev.subject,
                    "attempts": attempts,
                    "error": repr(exc),
                },
            )
            return self._dead(
                rec, str(code), str(exc) or type(exc).__name__, attempts, repr(exc), ev.as_dict()
            )
        self.stats.handled += 1
        overlay.values.update(ctx.writes)
        return ctx.unit()

    async def _retry(self, rec: Record, ev: Event, overlay: _Overlay, first: Exception) -> Context:
        """Attempts 2..N with tenacity's backoff; attempt 1 already failed with ``first``."""
        pending: Exception | None = first
        ctx: Context | None = None
        number = 1
        try:
            async for attempt in self._retrying.copy():
                with attempt:
                    number = attempt.retry_state.attempt_number
                    if pending is not None:
                        exc, pending = pending, None
                        raise exc
                    ctx = Context(self, rec, ev, overlay, number)
                    await self.spec.handler(ev, ctx)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise _Exhausted(exc, number) from exc
        assert ctx is not None
        return ctx

    def _dead(
        self,
        rec: Record,
        code: str,
        reason: str,
        attempts: int,
        exc: str | None,
        obj: dict[str, Any] | None,
    ) -> Unit:
        self.stats.dlq += 1
        ev = dead_letter(
            rec,
            consumer=self.spec.name,
            code=code,
            reason=reason,
            attempts=attempts,
            exception=exc,
            event=obj,
        )
        msg = self.rt.bus.message(ev)
        row = OutboxRow(ev.id, msg.topic, msg.key, msg.partition, encode(ev))
        return Unit(self.spec.name, None, [], [row])

    async def _seen(self, ids: list[str]) -> set[str]:
        out: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self.rt.db.fetchall(
                f"SELECT event_id FROM inbox WHERE consumer=? AND event_id IN ({marks})",
                (self.spec.name, *chunk),
            )
            out.update(r[0] for r in rows)
        return out

    async def _apply(self, units: list[Unit], origin: list[Record]) -> list[bool]:
        """Commit the batch; a unit the database refuses (a constraint, bad SQL: the
        event's own fault) is dead-lettered, so it cannot block its partition forever.
        When the database itself fails (locked, gone, disk), raise: the batch is retried."""
        db = self.rt.db
        try:
            return await db.apply(units)
        except Exception as exc:
            if len(units) == 1 and not _bad_data(exc):
                raise
        results: list[bool] = []
        broken = 0
        for unit, rec in zip(units, origin, strict=True):
            try:
                results.extend(await db.apply([unit]))
            except Exception as exc:
                if not _bad_data(exc):
                    raise
                broken += 1
                log.error(
                    "state write refused, dead-lettered",
                    extra={"consumer": self.spec.name, "error": repr(exc)},
                )
                dead = self._dead(rec, "state_write_failed", str(exc), 1, repr(exc), None)
                results.extend(await db.apply([dead]))
                unit.outbox[:] = dead.outbox
        return results

    async def _publish(self, rows: list[OutboxRow]) -> None:
        await self.rt.log.publish_batch(
            [Message(r.topic, r.key, r.value, r.partition) for r in rows]
        )
        await self.rt.db.outbox_done([r.event_id for r in rows])

    async def _drain_outbox(self) -> None:
        """Publish what was committed but not published, once it is ``outbox_grace_s`` old:
        at start (a previous run of this member died in between) and every ``outbox_sweep_s``
        (another member of the group died in between; its redelivered causes are duplicates
        here, so only this sweep publishes their effects; or this run's own row, left after
        a failed publish). A row published twice keeps its event id: consumers drop the
        copy."""
        before = int((time.time() - self.rt.outbox_grace_s) * 1000)
        rows = await self.rt.db.fetchall(
            "SELECT event_id, topic, msg_key, part, value FROM outbox"
            " WHERE consumer=? AND created_ms <= ?",
            (self.spec.name, before),
        )
        done = self.rt.db.published_pending() if hasattr(self.rt.db, "published_pending") else ()
        rows = [r for r in rows if r[0] not in done]
        if rows:
            log.info("draining outbox", extra={"consumer": self.spec.name, "events": len(rows)})
            await self._publish([OutboxRow(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows])


@contextlib.asynccontextmanager
async def running(rt: Runtime, consumers: Sequence[Consumer]) -> Any:
    """Run consumers in the background for the duration of a ``with`` block (tests, demo)."""
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(consumers, stop))
    try:
        yield task
    finally:
        stop.set()
        await task
