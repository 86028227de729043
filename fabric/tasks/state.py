"""A task's state, and ``evolve``: the fold of its events, in log order (decider pattern).

``evolve`` is pure and total: every event on ``fabric.tasks`` about a task moves its state,
or leaves it unchanged when the event does not apply (an illegal transition is refused and
reported by ``illegal``, never applied). The orchestrator keeps the result per task; replaying
the log from offset 0 through ``evolve`` rebuilds exactly the same states.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from fabric.events import Event

__all__ = [
    "TERMINAL",
    "TargetState",
    "TaskState",
    "can_retry",
    "evolve",
    "illegal",
    "interaction_id",
    "interaction_kinds",
    "target_key",
]

TERMINAL = frozenset({"completed", "failed", "cancelled", "rejected"})

# target statuses: pending -> preparing (voice, media) -> requested -> published | failed,
# with retry_scheduled / deferred between attempts
TARGET_DONE = frozenset({"published", "failed"})


def target_key(target: Mapping[str, Any]) -> str:
    return f"{target['platform']}:{target['account']}"


def interaction_kinds(spec: Mapping[str, Any]) -> list[str]:
    """What the task asks for after publishing: a comment (when it has text) and a like."""
    kinds = []
    if spec.get("comment"):
        kinds.append("comment")
    if spec.get("like"):
        kinds.append("like")
    return kinds


def interaction_id(task_id: str, target: str, kind: str) -> str:
    """Deterministic: the same interaction of the same upload always has the same id."""
    return f"{task_id}:{target}:{kind}"


@dataclasses.dataclass(frozen=True)
class TargetState:
    platform: str
    account: str
    status: str = "pending"
    attempts: int = 0
    video_id: str | None = None
    url: str | None = None
    error: Mapping[str, Any] | None = None
    interactions: Mapping[str, str] = dataclasses.field(default_factory=dict)  # id -> status
    video: Mapping[str, Any] | None = None  # this platform's prepared file (media.prepared)
    thumbnail: str | None = None  # this platform's prepared thumbnail, if any
    short: bool = False  # YouTube: vertical/square and short enough to be a Short

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.account}"

    @property
    def target(self) -> dict[str, str]:
        return {"platform": self.platform, "account": self.account}

    @property
    def done(self) -> bool:
        """Published with every interaction resolved, or failed for good."""
        if self.status == "failed":
            return True
        return self.status == "published" and all(
            s != "requested" for s in self.interactions.values()
        )


@dataclasses.dataclass(frozen=True)
class TaskState:
    task_id: str
    status: str  # pending scheduled processing publishing retry_scheduled deferred + TERMINAL
    spec: Mapping[str, Any]
    video: Mapping[str, Any] | None = None  # the source, or the voice-processed video
    processed: bool = False  # the voice step is done (or not asked for)
    due_at: str | None = None
    max_retries: int = 3
    retry_count: int = 0
    retry_base: int = 0  # retry_count when the last manual retry started (budget restarts)
    timers: tuple[str, ...] = ()
    targets: Mapping[str, TargetState] = dataclasses.field(default_factory=dict)
    error: Mapping[str, Any] | None = None
    created_at: str | None = None
    updated_at: str | None = None
    version: int = 0
    # scheduled metadata changes of published videos: update_id -> {targets, changes, ...}
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        """Shallow and field by field: ``dataclasses.asdict`` deep-copies every nested value
        and was the orchestrator's largest cost per event."""
        out = {f.name: getattr(self, f.name) for f in _TASK_FIELDS}
        out["timers"] = list(self.timers)
        out["targets"] = {
            k: {f.name: getattr(t, f.name) for f in _TARGET_FIELDS} for k, t in self.targets.items()
        }
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TaskState:
        data = dict(raw)
        data["timers"] = tuple(data.get("timers", ()))
        data["targets"] = {k: TargetState(**v) for k, v in data.get("targets", {}).items()}
        return cls(**data)


def can_retry(state: TaskState) -> bool:
    """Automatic retries left (a manual retry restarts the budget)."""
    return state.retry_count - state.retry_base < state.max_retries


_TASK_FIELDS = dataclasses.fields(TaskState)
_TARGET_FIELDS = dataclasses.fields(TargetState)


def _phase(targets: Mapping[str, TargetState]) -> str:
    """A running task's status from its targets' statuses."""
    statuses = {t.status for t in targets.values() if not t.done}
    if statuses & {"requested", "published"}:
        return "publishing"
    if statuses & {"pending", "preparing"}:
        return "processing"
    if "retry_scheduled" in statuses:
        return "retry_scheduled"
    if "deferred" in statuses:
        return "deferred"
    return "publishing"


def _targets_to(state: TaskState, keys: set[str], **changes: Any) -> TaskState:
    targets = {
        k: dataclasses.replace(t, **changes) if k in keys else t for k, t in state.targets.items()
    }
    status = state.status if state.terminal else _phase(targets)
    return dataclasses.replace(state, targets=targets, status=status)


def _target(state: TaskState, data: Mapping[str, Any]) -> TargetState | None:
    return state.targets.get(target_key(data["target"]))


def _with_target(state: TaskState, target: TargetState, **changes: Any) -> TaskState:
    targets = dict(state.targets)
    targets[target.key] = dataclasses.replace(target, **changes)
    status = state.status if state.terminal else _phase(targets)
    return dataclasses.replace(state, targets=targets, status=status)


def illegal(state: TaskState | None, event: Event) -> str | None:
    """Why ``event`` cannot apply to ``state`` (None when it can)."""
    kind = event.type
    if kind == "task.created":
        return None if state is None else "task exists"
    if state is None:
        return f"{kind} for a task never created"
    if state.terminal and kind not in AFTER_THE_END:
        return f"task is {state.status}"
    return None


# what may still happen to a task that ended: a retry of what failed, late interaction
# results, and changes to what was published (scheduled metadata updates)
AFTER_THE_END = frozenset(
    {
        "task.retry_requested",
        "task.retried",
        "interaction.posted",
        "interaction.failed",
        "metadata.update_requested",
        "metadata.scheduled",
        "metadata.updated",
        "metadata.failed",
        "timer.fired",
    }
)


def evolve(state: TaskState | None, event: Event) -> TaskState | None:
    """The state after ``event``. Events that do not apply leave the state unchanged."""
    if illegal(state, event) is not None:
        if event.type == "task.rejected" and state is None:  # a producer rejected it at once
            return TaskState(
                task_id=event.subject or "",
                status="rejected",
                spec={},
                error=dict(event.data),
                created_at=event.time,
                updated_at=event.time,
            )
        return state
    data = event.data
    if event.type == "task.created":
        targets = {target_key(t): TargetState(t["platform"], t["account"]) for t in data["targets"]}
        return TaskState(
            task_id=data["task_id"],
            status="pending",
            spec=dict(data),
            targets=targets,
            created_at=event.time,
            updated_at=event.time,
            version=1,
        )
    assert state is not None
    unchanged = state
    state = dataclasses.replace(state, updated_at=event.time, version=state.version + 1)
    kind = event.type
    if kind == "task.accepted":
        return dataclasses.replace(
            state, video=dict(data["video"]), due_at=data["due_at"], max_retries=data["max_retries"]
        )
    if kind == "task.rejected":
        return dataclasses.replace(state, status="rejected", error=dict(data))
    if kind in ("task.scheduled", "task.rescheduled"):
        timers = tuple(t for t in state.timers if ":due:" not in t)
        if "timer_id" in data:  # absent when the task was due at once (no timer)
            timers = (*timers, data["timer_id"])
        return dataclasses.replace(state, status="scheduled", due_at=data["due_at"], timers=timers)
    if kind == "timer.fired":
        return dataclasses.replace(
            state, timers=tuple(t for t in state.timers if t != data["timer_id"])
        )
    if kind == "task.started":
        keys = {target_key(t) for t in data.get("targets", [])} or set(state.targets)
        if data["stage"] == "publishing":
            targets = {
                k: dataclasses.replace(t, status="requested", attempts=t.attempts + 1)
                if k in keys
                else t
                for k, t in state.targets.items()
            }
            return dataclasses.replace(state, status=_phase(targets), targets=targets)
        return _targets_to(state, keys, status="preparing")
    if kind == "voice.assembled":
        return dataclasses.replace(state, video=dict(data["video"]), processed=True)
    if kind == "voice.failed":
        keys = {k for k, t in state.targets.items() if t.status in ("pending", "preparing")}
        error = {"class": "permanent", "code": data["code"], "message": data["message"]}
        return _targets_to(state, keys, status="failed", error=error)
    if kind == "media.prepared":
        target = _target(state, data)
        if target is None:
            return state
        thumb = data.get("thumbnail") or {}
        return _with_target(
            state,
            target,
            video=dict(data["video"]),
            short=data["short"],
            thumbnail=thumb.get("path") if thumb.get("upload", True) else None,
        )
    if kind == "media.rejected":
        target = _target(state, data)
        if target is None:
            return state
        return _with_target(state, target, status="failed", error=dict(data["error"]))
    if kind == "task.retry_scheduled":
        target = _target(state, data)
        if target is None:
            return state
        state = dataclasses.replace(
            state, retry_count=data["retry_count"], timers=(*state.timers, data["timer_id"])
        )
        return _with_target(state, target, status="retry_scheduled", error=dict(data["error"]))
    if kind == "task.deferred":
        target = _target(state, data)
        if target is None:
            return state
        state = dataclasses.replace(state, timers=(*state.timers, data["timer_id"]))
        return _with_target(state, target, status="deferred", error=dict(data["error"]))
    if kind == "publish.started":
        target = _target(state, data)
        # a notice that arrives after its upload's outcome (it is published outside the
        # publisher's transaction, so a crash or a sweep can reorder them) changes nothing
        if target is None or target.status in ("published", "failed"):
            return state
        return _with_target(
            state, target, status="requested", attempts=max(target.attempts, data["attempt"])
        )
    if kind == "publish.completed":
        target = _target(state, data)
        if target is None:
            return state
        wanted = {
            interaction_id(state.task_id, target.key, k): "requested"
            for k in interaction_kinds(state.spec)
        }
        return _with_target(
            state,
            target,
            status="published",
            video_id=data["video_id"],
            url=data["url"],
            error=None,
            interactions=wanted,
            attempts=max(target.attempts, data["attempt"]),
        )
    if kind == "publish.failed":
        target = _target(state, data)
        if target is None or target.status == "published":
            return state
        # retryable with budget left: a retry gets scheduled next; otherwise this target is over
        status = "requested" if data["retryable"] and can_retry(state) else "failed"
        return _with_target(
            state,
            target,
            status=status,
            error=dict(data["error"]),
            attempts=max(target.attempts, data["attempt"]),
        )
    if kind == "publish.deferred":
        target = _target(state, data)
        return state if target is None else _with_target(state, target, error=dict(data["error"]))
    if kind in ("interaction.posted", "interaction.failed"):
        target = _target(state, data)
        if target is None:
            return state
        interactions = dict(target.interactions)
        interactions[data["interaction_id"]] = (
            "posted" if kind == "interaction.posted" else "failed"
        )
        targets = dict(state.targets)
        targets[target.key] = dataclasses.replace(target, interactions=interactions)
        return dataclasses.replace(state, targets=targets)
    if kind == "task.completed":
        return dataclasses.replace(state, status="completed", timers=())
    if kind == "task.failed":
        return dataclasses.replace(
            state,
            status="failed",
            timers=(),
            error={"code": data["code"], "message": data["message"]},
        )
    if kind == "task.cancelled":
        return dataclasses.replace(state, status="cancelled", timers=())
    if kind == "task.retried":
        # failed targets start over from processing: their work files went with the failure
        keys = {target_key(t) for t in data["targets"]}
        targets = {
            k: dataclasses.replace(t, status="pending", error=None, video=None) if k in keys else t
            for k, t in state.targets.items()
        }
        return dataclasses.replace(
            state,
            status="processing",
            targets=targets,
            error=None,
            processed=False,
            retry_count=state.retry_count + 1,
            retry_base=state.retry_count + 1,
        )
    if kind == "metadata.scheduled":
        updates = dict(state.metadata)
        updates[data["update_id"]] = {
            "targets": data["targets"],
            "changes": data["changes"],
            "status": "scheduled",
        }
        timers = (*state.timers, data["timer_id"]) if data.get("timer_id") else state.timers
        return dataclasses.replace(state, metadata=updates, timers=timers)
    if kind in ("metadata.updated", "metadata.failed"):
        update = state.metadata.get(data["update_id"])
        if update is None:
            return unchanged
        done = dict(update.get("done", {}))
        final = kind == "metadata.updated" or not data.get("retryable")
        done[target_key(data["target"])] = (
            "updated" if kind == "metadata.updated" else ("failed" if final else "retrying")
        )
        updates = dict(state.metadata)
        updates[data["update_id"]] = {**update, "done": done}
        return dataclasses.replace(state, metadata=updates)
    return unchanged  # commands and informational events do not change the state
