"""orchestrator: the task state machine (saga). Reads ``fabric.tasks`` in order per task.

For each event: load the task's state, ``evolve`` it, gather facts with I/O when the event
needs them (ingress validation of ``task.created``), ``decide`` what follows, then stage the
new state and the emitted events: the runtime commits both with the inbox row, atomically.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fabric.events import Event
from fabric.runtime import Consumer, Context
from fabric.tasks.decide import decide
from fabric.tasks.state import TaskState, evolve, illegal
from fabric.tasks.validate import validate
from fabric.timeutil import parse

if TYPE_CHECKING:
    from fabric.app import App

log = logging.getLogger("fabric.orchestrator")

HANDLED = frozenset(
    {
        "task.created",
        "task.accepted",
        "task.rejected",
        "task.scheduled",
        "task.rescheduled",
        "task.started",
        "task.retry_scheduled",
        "task.deferred",
        "task.completed",
        "task.failed",
        "task.cancel_requested",
        "task.cancelled",
        "task.reschedule_requested",
        "task.retry_requested",
        "task.retried",
        "timer.fired",
        "publish.started",
        "publish.completed",
        "publish.failed",
        "publish.deferred",
        "interaction.posted",
        "interaction.failed",
        "voice.assembled",
        "voice.failed",
        "media.prepared",
        "media.rejected",
        "metadata.update_requested",
        "metadata.scheduled",
        "metadata.updated",
        "metadata.failed",
    }
)


def consumer(app: App) -> Consumer:
    policy = app.policy

    async def handle(event: Event, ctx: Context) -> None:
        key = f"task:{event.subject}"
        raw = await ctx.get(key)
        before = TaskState.from_dict(raw) if raw else None
        problem = illegal(before, event)
        after = evolve(before, event)
        verdict = None
        if event.type == "task.created" and problem is None:
            verdict = await validate(
                event.data,
                accounts=app.accounts,
                platforms=app.platforms.names(),
                now=parse(event.time),
                policy=policy,
            )
        if problem is not None:
            log.warning(
                "event does not apply",
                extra={
                    "task_id": event.subject,
                    "event_type": event.type,
                    "event_id": event.id,
                    "reason": problem,
                },
            )
        for emit in decide(before, after, event, policy=policy, verdict=verdict):
            ctx.emit(emit.type, emit.data)
        if after is not None and after is not before:
            ctx.put(key, after.to_dict())

    return Consumer(
        "orchestrator", ["fabric.tasks"], handle, accepts=HANDLED, precheck=False, linger_s=0.02
    )
