"""``decide``: what the orchestrator does about one event, as a pure function.

Inputs are the state before and after ``evolve`` of the event, the event, and facts the
handler gathered with I/O beforehand (the ingress ``Verdict``); the output is a list of
events to emit. No clock, no randomness: backoff jitter is derived from the task id, and
times from event times, so the same inputs always give the same decisions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

from fabric.events import Event
from fabric.tasks.state import (
    TargetState,
    TaskState,
    can_retry,
    illegal,
    interaction_id,
    interaction_kinds,
    target_key,
)
from fabric.timeutil import parse, wire

__all__ = ["COMMANDS", "Emit", "Policy", "Verdict", "backoff", "can_retry", "decide"]

COMMANDS = frozenset(
    {
        "task.cancel_requested",
        "task.reschedule_requested",
        "task.retry_requested",
        "metadata.update_requested",
    }
)
CANCELLABLE = frozenset({"pending", "scheduled", "processing", "retry_scheduled", "deferred"})


@dataclasses.dataclass(frozen=True)
class Emit:
    type: str
    data: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Policy:
    max_retries: int = 3
    retry_base_s: float = 30.0
    retry_max_s: float = 3600.0
    past_grace_s: float = 600.0


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The outcome of ingress validation (files, accounts, limits), gathered with I/O."""

    ok: bool
    code: str | None = None
    message: str | None = None
    field: str | None = None
    video: Mapping[str, Any] | None = None
    due_at: str | None = None


def backoff(task_id: str, n: int, policy: Policy) -> float:
    """Exponential backoff with jitter in [50 %, 100 %], deterministic per task and retry."""
    digest = hashlib.blake2b(f"{task_id}:{n}".encode(), digest_size=8).digest()
    jitter = 0.5 + 0.5 * int.from_bytes(digest, "big") / 2**64
    delay: float = min(policy.retry_max_s, policy.retry_base_s * 2.0 ** (n - 1)) * jitter
    return delay


def _at(time: str, seconds: float) -> str:
    return wire(parse(time) + dt.timedelta(seconds=seconds))


def publish_request(state: TaskState, target: TargetState, attempt: int) -> Emit:
    spec = state.spec
    video = target.video or state.video
    assert video is not None
    return Emit(
        "publish.requested",
        {
            "target": target.target,
            "account_key": target.key,
            "attempt": attempt,
            "video": dict(video),
            "title": spec.get("title", ""),
            "description": spec.get("description", ""),
            "tags": list(spec.get("tags", [])),
            "privacy": spec.get("privacy", "private"),
            "thumbnail": target.thumbnail or spec.get("thumbnail"),
            "playlist_id": spec.get("playlist_id"),
            "options": {**spec.get("options", {}), **({"short": True} if target.short else {})},
        },
    )


def _start(state: TaskState, targets: list[TargetState]) -> list[Emit]:
    """Request uploads (the targets' videos are prepared)."""
    return [
        Emit("task.started", {"stage": "publishing", "targets": [t.target for t in targets]}),
        *(publish_request(state, t, t.attempts + 1) for t in targets),
    ]


def _process(state: TaskState, targets: list[TargetState]) -> list[Emit]:
    """Before uploading: the voice step (once per task, when asked), then per-platform media
    preparation (profiles, checks, loudness, thumbnails)."""
    assert state.video is not None
    wanted = [t.target for t in targets]
    if state.spec.get("voice") and not state.processed:
        started = {"stage": "processing", "step": "voice", "targets": wanted}
        voice = {"video": dict(state.video), "voice": dict(state.spec["voice"])}
        return [Emit("task.started", started), Emit("voice.requested", voice)]
    started = {"stage": "processing", "step": "media", "targets": wanted}
    media = {
        "video": dict(state.video),
        "targets": wanted,
        "thumbnail": state.spec.get("thumbnail"),
    }
    return [Emit("task.started", started), Emit("media.requested", media)]


def _finish(state: TaskState) -> list[Emit]:
    """task.completed / task.failed once every target is done."""
    if state.terminal or not state.targets or not all(t.done for t in state.targets.values()):
        return []
    targets = sorted(state.targets.values(), key=lambda t: t.key)
    if all(t.status == "published" for t in targets):
        return [
            Emit(
                "task.completed",
                {
                    "uploads": [
                        {
                            "platform": t.platform,
                            "account": t.account,
                            "video_id": t.video_id or "",
                            "url": t.url or "",
                        }
                        for t in targets
                    ]
                },
            )
        ]
    failed = [t for t in targets if t.status == "failed"]
    first = failed[0].error or {}
    return [
        Emit(
            "task.failed",
            {
                "code": str(first.get("code", "failed")),
                "message": "; ".join(
                    f"{t.key}: {(t.error or {}).get('message', 'failed')}" for t in failed
                ),
                "targets": [
                    {
                        "platform": t.platform,
                        "account": t.account,
                        "status": t.status,
                        "video_id": t.video_id,
                        "url": t.url,
                        "error": dict(t.error) if t.error and t.status == "failed" else None,
                    }
                    for t in targets
                ],
            },
        )
    ]


def _metadata_updates(state: TaskState, update_id: str, attempt: int) -> list[Emit]:
    """One ``metadata.update`` per target of a scheduled change (to the publisher)."""
    update = state.metadata.get(update_id)
    if update is None:
        return []
    out = []
    for target in update["targets"]:
        current = state.targets.get(target_key(target))
        if current is None or not current.video_id:
            continue
        if update.get("done", {}).get(current.key) == "updated":
            continue
        out.append(
            Emit(
                "metadata.update",
                {
                    "update_id": update_id,
                    "target": current.target,
                    "account_key": current.key,
                    "video_id": current.video_id,
                    "changes": dict(update["changes"]),
                    "attempt": attempt,
                },
            )
        )
    return out


def _rejected(command: str, code: str, message: str) -> list[Emit]:
    return [Emit("task.command_rejected", {"command": command, "code": code, "message": message})]


def decide(
    before: TaskState | None,
    after: TaskState | None,
    event: Event,
    *,
    policy: Policy,
    verdict: Verdict | None = None,
) -> list[Emit]:
    kind = event.type
    data = event.data
    problem = illegal(before, event)
    if problem is not None:
        return _rejected(kind, "illegal_transition", problem) if kind in COMMANDS else []
    assert after is not None
    if kind == "task.created":
        assert verdict is not None, "task.created needs the ingress verdict"
        if not verdict.ok:
            return [
                Emit(
                    "task.rejected",
                    {
                        "code": verdict.code or "invalid",
                        "message": verdict.message or "invalid task",
                        "field": verdict.field,
                    },
                )
            ]
        assert verdict.due_at is not None and verdict.video is not None
        retries = int(after.spec.get("max_retries", policy.max_retries))
        accepted = Emit(
            "task.accepted",
            {"video": dict(verdict.video), "due_at": verdict.due_at, "max_retries": retries},
        )
        if parse(verdict.due_at) <= parse(event.time):
            # due already (no time given, or one within the grace window): no timer to wait
            # for, so processing starts in the same step, not a scheduler round trip later
            ready = dataclasses.replace(after, video=dict(verdict.video))
            return [
                accepted,
                Emit("task.scheduled", {"due_at": verdict.due_at}),
                *_process(ready, list(after.targets.values())),
            ]
        timer = f"{after.task_id}:due:1"
        return [
            accepted,
            Emit(
                "timer.set",
                {"timer_id": timer, "due_at": verdict.due_at, "purpose": "due", "target": None},
            ),
            Emit("task.scheduled", {"due_at": verdict.due_at, "timer_id": timer}),
        ]
    if kind == "timer.fired":
        assert before is not None
        if data["timer_id"] not in before.timers:
            return []  # cancelled or superseded
        if data["purpose"] == "due":
            if before.status != "scheduled":
                return []
            return _process(after, list(after.targets.values()))
        if data["purpose"] == "metadata":
            return _metadata_updates(after, data["payload"]["update_id"], attempt=1)
        target = after.targets.get(target_key(data["target"])) if data.get("target") else None
        if target is None or target.status not in ("retry_scheduled", "deferred"):
            return []
        return _start(after, [target])
    if kind == "publish.failed":
        target = after.targets.get(target_key(data["target"]))
        if target is None or target.status != "requested" or not data["retryable"]:
            return _finish(after)
        n = after.retry_count + 1
        timer = f"{after.task_id}:retry:{n}"
        due = _at(
            event.time,
            max(backoff(after.task_id, n, policy), float(data["error"].get("retry_after_s", 0))),
        )
        return [
            Emit(
                "task.retry_scheduled",
                {
                    "target": target.target,
                    "retry_count": n,
                    "due_at": due,
                    "timer_id": timer,
                    "error": dict(data["error"]),
                },
            ),
            Emit(
                "timer.set",
                {"timer_id": timer, "due_at": due, "purpose": "retry", "target": target.target},
            ),
        ]
    if kind == "publish.deferred":
        target = after.targets.get(target_key(data["target"]))
        if target is None or target.done:
            return []
        timer = f"{after.task_id}:deferred:{data['attempt']}:{target.key}"
        return [
            Emit(
                "task.deferred",
                {
                    "target": target.target,
                    "until": data["until"],
                    "timer_id": timer,
                    "error": dict(data["error"]),
                },
            ),
            Emit(
                "timer.set",
                {
                    "timer_id": timer,
                    "due_at": data["until"],
                    "purpose": "deferred",
                    "target": target.target,
                },
            ),
        ]
    if kind == "publish.completed":
        target = after.targets[target_key(data["target"])]
        requests = [
            Emit(
                "interaction.requested",
                {
                    "target": target.target,
                    "account_key": target.key,
                    "interaction_id": interaction_id(after.task_id, target.key, k),
                    "kind": k,
                    "video_id": data["video_id"],
                    "content": str(after.spec.get("comment") or "") if k == "comment" else "",
                },
            )
            for k in interaction_kinds(after.spec)
        ]
        return requests + _finish(after)
    if kind in ("interaction.posted", "interaction.failed", "media.rejected", "voice.failed"):
        return _finish(after)
    if kind == "voice.assembled":
        waiting = [t for t in after.targets.values() if t.status in ("pending", "preparing")]
        return _process(after, waiting) if waiting else []
    if kind == "media.prepared":
        target = after.targets.get(target_key(data["target"]))
        if target is None or target.status != "preparing":
            return []
        return _start(after, [target])
    if kind == "task.retried":
        return _process(after, [t for t in after.targets.values() if t.status == "pending"])
    if kind == "metadata.scheduled":
        return [] if data.get("timer_id") else _metadata_updates(after, data["update_id"], 1)
    if kind == "metadata.failed":
        error = data["error"]
        update = after.metadata.get(data["update_id"])
        if update is None or error.get("class") != "quota" or not error.get("reset_at"):
            return []  # transient errors were retried by the publisher already; the rest is final
        timer = f"{data['update_id']}:quota:{data['attempt']}"
        return [
            Emit(
                "metadata.scheduled",
                {
                    "update_id": data["update_id"],
                    "targets": [data["target"]],
                    "changes": dict(update["changes"]),
                    "due_at": error["reset_at"],
                    "timer_id": timer,
                },
            ),
            Emit(
                "timer.set",
                {
                    "timer_id": timer,
                    "due_at": error["reset_at"],
                    "purpose": "metadata",
                    "payload": {"update_id": data["update_id"]},
                    "target": None,
                },
            ),
        ]
    assert before is not None
    if kind == "task.cancel_requested":
        busy = [t.key for t in before.targets.values() if t.status in ("requested", "published")]
        if before.status not in CANCELLABLE or busy:
            why = (
                f"publishing has started ({', '.join(busy)})"
                if busy
                else f"task is {before.status}"
            )
            return _rejected(kind, "illegal_transition", why)
        return [
            Emit("task.cancelled", {"reason": str(data.get("reason", ""))}),
            *(Emit("timer.cancelled", {"timer_id": t}) for t in before.timers),
        ]
    if kind == "task.reschedule_requested":
        if before.status != "scheduled":
            return _rejected(kind, "illegal_transition", f"task is {before.status}, not scheduled")
        try:
            when = parse(data["scheduled_at"])
        except ValueError as exc:
            return _rejected(kind, "bad_scheduled_time", str(exc))
        if when < parse(event.time) - dt.timedelta(seconds=policy.past_grace_s):
            return _rejected(kind, "scheduled_in_past", f"{data['scheduled_at']} is in the past")
        old = [t for t in before.timers if ":due:" in t]
        n = max([int(t.rsplit(":", 1)[1]) for t in old] + [1]) + 1
        timer = f"{after.task_id}:due:{n}"
        due = wire(when)
        return [
            *(Emit("timer.cancelled", {"timer_id": t}) for t in old),
            Emit("timer.set", {"timer_id": timer, "due_at": due, "purpose": "due", "target": None}),
            Emit(
                "task.rescheduled",
                {
                    "due_at": due,
                    "timer_id": timer,
                    **({"previous_due_at": before.due_at} if before.due_at else {}),
                },
            ),
        ]
    if kind == "metadata.update_requested":
        published = [t for t in before.targets.values() if t.status == "published" and t.video_id]
        wanted = {target_key(t) for t in data.get("targets", [])}
        chosen = [t for t in published if not wanted or t.key in wanted]
        if not chosen:
            return _rejected(
                kind, "nothing_published", "no published video to update for this task"
            )
        update_id = f"{before.task_id}:meta:{len(before.metadata) + 1}"
        scheduled: dict[str, Any] = {
            "update_id": update_id,
            "targets": [t.target for t in chosen],
            "changes": dict(data["changes"]),
        }
        if data.get("at"):
            try:
                due = wire(parse(data["at"]))
            except ValueError as exc:
                return _rejected(kind, "bad_scheduled_time", str(exc))
            if parse(due) > parse(event.time):
                timer = f"{before.task_id}:metadata:{len(before.metadata) + 1}"
                return [
                    Emit("metadata.scheduled", {**scheduled, "due_at": due, "timer_id": timer}),
                    Emit(
                        "timer.set",
                        {
                            "timer_id": timer,
                            "due_at": due,
                            "purpose": "metadata",
                            "payload": {"update_id": update_id},
                            "target": None,
                        },
                    ),
                ]
        return [Emit("metadata.scheduled", {**scheduled, "due_at": event.time})]
    if kind == "task.retry_requested":
        failed = [t for t in before.targets.values() if t.status == "failed"]
        if before.status != "failed" or not failed:
            return _rejected(kind, "illegal_transition", f"task is {before.status}, not failed")
        return [Emit("task.retried", {"targets": [t.target for t in failed]})]
    return []
