"""scheduler: durable timers. ``timer.set`` is stored; at its due time ``timer.fired`` is
emitted exactly once, even across restarts and with several scheduler processes.

Firing is a unit of work guarded by an inbox key per timer (``fire:<timer_id>``): marking
the timer fired and the ``timer.fired`` event are committed together, so a crash either
fires nothing (the timer is still pending and fires after the restart) or fires it once.
A timer already due when it is set fires in the same transaction that stores it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from fabric.events import Event, new_id, utcnow
from fabric.runtime import Consumer, Context, Runtime
from fabric.store.db import Unit, insert_ignore
from fabric.timeutil import parse, wire

if TYPE_CHECKING:
    from fabric.app import App

__all__ = ["Scheduler", "consumer"]

log = logging.getLogger("fabric.scheduler")

BATCH = 1000


def _ms(when: str) -> int:
    return int(parse(when).timestamp() * 1000)


def wire_ms(ms: int) -> str:
    return wire(dt.datetime.fromtimestamp(ms / 1000, dt.UTC))


class Scheduler:
    def __init__(self, idle_s: float = 1.0) -> None:
        self.idle_s = idle_s
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.fired = 0

    # -- events ----------------------------------------------------------------------------
    async def handle(self, event: Event, ctx: Context) -> None:
        data = event.data
        if event.type == "timer.cancelled":
            ctx.sql(
                "UPDATE timers SET status='cancelled' WHERE timer_id=? AND status='pending'",
                (data["timer_id"],),
            )
            return
        due = _ms(data["due_at"])
        now = int(time.time() * 1000)
        status = "fired" if due <= now else "pending"
        row = {
            "timer_id": data["timer_id"],
            "task_id": event.subject,
            "due_ms": due,
            "purpose": data["purpose"],
            "target": orjson.dumps(data.get("target")).decode(),
            "payload": orjson.dumps(data.get("payload") or {}).decode(),
            "status": status,
            "set_event_id": event.id,
            "correlation_id": event.correlation_id or event.id,
            "fired_ms": now if status == "fired" else None,
        }
        ctx.sql(*insert_ignore(ctx.db.dialect, "timers", row))
        if status == "fired":  # already due: fire in the same transaction that stores it
            ctx.emit(
                "timer.fired",
                self._fired_data(
                    data["timer_id"],
                    data["purpose"],
                    due,
                    now,
                    data.get("target"),
                    data.get("payload"),
                ),
            )
        else:
            self.wake.set()

    @staticmethod
    def _fired_data(
        timer_id: str, purpose: str, due_ms: int, fired_ms: int, target: Any, payload: Any
    ) -> dict[str, Any]:
        out = {
            "timer_id": timer_id,
            "purpose": purpose,
            "due_at": wire_ms(due_ms),
            "fired_at": wire_ms(fired_ms),
            "target": target,
        }
        if payload:
            out["payload"] = payload
        return out

    # -- the clock -------------------------------------------------------------------------
    async def start(self, rt: Runtime) -> None:
        self._task = asyncio.create_task(self._loop(rt), name="scheduler-clock")

    async def stop(self, rt: Runtime) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self, rt: Runtime) -> None:
        while True:
            try:
                fired = await self.fire_due(rt)
            except Exception:
                log.exception("firing timers failed; retrying")
                fired = 0
                await asyncio.sleep(1)
            if fired >= BATCH:
                continue
            rows = await rt.db.fetchall("SELECT MIN(due_ms) FROM timers WHERE status='pending'")
            next_due = rows[0][0]
            wait = self.idle_s if next_due is None else (next_due - time.time() * 1000) / 1000
            self.wake.clear()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), min(wait, self.idle_s))

    async def fire_due(self, rt: Runtime) -> int:
        now = int(time.time() * 1000)
        rows = await rt.db.fetchall(
            "SELECT timer_id, task_id, due_ms, purpose, target, payload, set_event_id,"
            f" correlation_id FROM timers WHERE status='pending' AND due_ms<=? ORDER BY due_ms"
            f" LIMIT {BATCH}",
            (now,),
        )
        units = []
        for timer_id, task_id, due_ms, purpose, target, payload, cause, corr in rows:
            data = self._fired_data(
                timer_id,
                purpose,
                due_ms,
                now,
                orjson.loads(target or "null"),
                orjson.loads(payload or "{}"),
            )
            event = Event(
                "timer.fired",
                data,
                subject=task_id,
                source="scheduler",
                id=new_id(),
                time=utcnow(),
                correlation_id=corr,
                causation_id=cause,
            )
            units.append(
                Unit(
                    "scheduler",
                    f"fire:{timer_id}",
                    [
                        (
                            "UPDATE timers SET status='fired', fired_ms=? WHERE timer_id=?",
                            (now, timer_id),
                        )
                    ],
                    [rt.outbox_row(event)],
                )
            )
        if units:
            applied = await rt.transact(units)
            self.fired += sum(applied)
        return len(units)


def consumer(app: App) -> Consumer:
    scheduler = Scheduler()
    app.runtime.services["scheduler"] = scheduler
    return Consumer(
        "scheduler",
        ["fabric.timers"],
        scheduler.handle,
        accepts=frozenset({"timer.set", "timer.cancelled"}),
        precheck=False,
        on_start=scheduler.start,
        on_stop=scheduler.stop,
    )
