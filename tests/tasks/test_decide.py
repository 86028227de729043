"""The task state machine as pure functions: tables of events in, decisions out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from fabric.events import Event
from fabric.schemas import registry
from fabric.tasks.decide import Emit, Policy, Verdict, backoff, decide
from fabric.tasks.state import TaskState, evolve
from fabric.timeutil import parse

POLICY = Policy(max_retries=2, retry_base_s=10, retry_max_s=100, past_grace_s=600)
TID = "task-1"
YT = {"platform": "youtube", "account": "main"}
IG = {"platform": "instagram", "account": "brand"}
VIDEO = {"path": "/v.mp4", "sha256": "a" * 64, "size": 10}
T0 = "2026-11-29T10:00:00.000Z"
LATER = "2026-11-29T11:00:00.000Z"  # a due time an hour after the events' time
ERR = {"class": "transient", "code": "backendError", "message": "Backend Error"}


def ev(kind: str, data: dict[str, Any] | None = None, time: str = T0) -> Event:
    return Event(kind, data or {}, subject=TID, time=time)


def created(**spec: Any) -> Event:
    return ev(
        "task.created",
        {"task_id": TID, "targets": [YT], "video": {"path": "/v.mp4"}, "title": "t", **spec},
    )


class Machine:
    """Feeds events through evolve + decide like the orchestrator, and records decisions."""

    def __init__(self) -> None:
        self.state: TaskState | None = None
        self.out: list[Emit] = []

    def feed(self, event: Event, verdict: Verdict | None = None) -> list[Emit]:
        before = self.state
        self.state = evolve(before, event)
        self.out = decide(before, self.state, event, policy=POLICY, verdict=verdict)
        return self.out

    def feed_all(self, events: Iterable[Event]) -> None:
        for e in events:
            self.feed(e)

    def apply_own(self) -> None:
        """Feed back what was decided onto fabric.tasks (as the log would)."""
        mine = [e for e in self.out if registry().get(e.type).topic == "fabric.tasks"]
        for emit in mine:
            self.feed(ev(emit.type, emit.data))


OK = Verdict(ok=True, video=VIDEO, due_at=LATER)
DUE_NOW = Verdict(ok=True, video=VIDEO, due_at=T0)


def scheduled(m: Machine, **spec: Any) -> None:
    m.feed(created(**spec), OK)
    m.apply_own()


def types(emits: list[Emit]) -> list[str]:
    return [e.type for e in emits]


def test_created_and_valid_is_accepted_and_scheduled() -> None:
    m = Machine()
    out = m.feed(created(), OK)
    assert types(out) == ["task.accepted", "timer.set", "task.scheduled"]
    assert out[1].data == {
        "timer_id": f"{TID}:due:1",
        "due_at": LATER,
        "purpose": "due",
        "target": None,
    }
    assert out[0].data["max_retries"] == POLICY.max_retries


@pytest.mark.parametrize("due", [T0, "2026-11-29T09:55:00.000Z"])  # now, or just past
def test_created_and_already_due_starts_at_once_without_a_timer(due: str) -> None:
    m = Machine()
    out = m.feed(created(targets=[YT, IG]), Verdict(ok=True, video=VIDEO, due_at=due))
    assert types(out) == ["task.accepted", "task.scheduled", "task.started", "media.requested"]
    assert out[1].data == {"due_at": due}
    assert out[2].data == {"stage": "processing", "step": "media", "targets": [YT, IG]}
    assert out[3].data["video"] == VIDEO and out[3].data["targets"] == [YT, IG]
    m.apply_own()
    assert m.state is not None
    assert (m.state.status, m.state.timers, m.state.due_at) == ("processing", (), due)
    assert {t.status for t in m.state.targets.values()} == {"preparing"}
    assert types(m.feed(prepared(YT))) == ["task.started", "publish.requested"]


def test_created_and_already_due_with_a_voice_step_requests_the_voice_first() -> None:
    m = Machine()
    out = m.feed(created(voice={"engine": "world", "pitch": 3}), DUE_NOW)
    assert types(out) == ["task.accepted", "task.scheduled", "task.started", "voice.requested"]
    assert out[3].data == {"video": VIDEO, "voice": {"engine": "world", "pitch": 3}}


def test_created_but_invalid_is_rejected_with_the_reason() -> None:
    m = Machine()
    out = m.feed(
        created(),
        Verdict(ok=False, code="unknown_account", message="no such", field="targets[0].account"),
    )
    assert out == [
        Emit(
            "task.rejected",
            {"code": "unknown_account", "message": "no such", "field": "targets[0].account"},
        )
    ]


def test_a_second_create_of_the_same_task_changes_nothing() -> None:
    m = Machine()
    scheduled(m)
    state = m.state
    assert m.feed(created(title="other"), OK) == []
    assert m.state == state


def prepared(target: dict[str, str]) -> Event:
    video = {**VIDEO, "path": f"/work/{target['platform']}.mp4"}
    return ev("media.prepared", {"target": target, "video": video, "decision": {}, "short": False})


def start(m: Machine, targets: list[dict[str, str]] | None = None, **spec: Any) -> None:
    """Created, due, prepared for every target: the uploads are requested (m.out)."""
    targets = targets or [YT]
    m.feed(created(targets=targets, **spec), OK)
    m.apply_own()
    m.feed(
        ev(
            "timer.fired",
            {"timer_id": f"{TID}:due:1", "purpose": "due", "due_at": T0, "fired_at": T0},
        )
    )
    m.apply_own()
    out: list[Emit] = []
    for target in targets:
        out += m.feed(prepared(target))
    m.out = out


def test_due_timer_prepares_media_then_requests_a_publish_per_target() -> None:
    m = Machine()
    m.feed(created(targets=[YT, IG]), OK)
    m.apply_own()
    out = m.feed(
        ev(
            "timer.fired",
            {"timer_id": f"{TID}:due:1", "purpose": "due", "due_at": T0, "fired_at": T0},
        )
    )
    assert types(out) == ["task.started", "media.requested"]
    assert out[0].data == {"stage": "processing", "step": "media", "targets": [YT, IG]}
    assert out[1].data["video"] == VIDEO and out[1].data["targets"] == [YT, IG]
    m.apply_own()
    assert m.state is not None and m.state.status == "processing"
    first = m.feed(prepared(YT))
    assert types(first) == ["task.started", "publish.requested"]
    assert first[1].data["account_key"] == "youtube:main" and first[1].data["attempt"] == 1
    assert first[1].data["video"]["path"] == "/work/youtube.mp4"  # the prepared file
    m.apply_own()
    assert m.state.status == "publishing"  # type: ignore[union-attr]
    second = m.feed(prepared(IG))
    assert second[1].data["account_key"] == "instagram:brand"


def test_voice_runs_once_before_media_preparation() -> None:
    m = Machine()
    m.feed(created(targets=[YT, IG], voice={"engine": "world", "pitch": 3}), OK)
    m.apply_own()
    out = m.feed(
        ev(
            "timer.fired",
            {"timer_id": f"{TID}:due:1", "purpose": "due", "due_at": T0, "fired_at": T0},
        )
    )
    assert types(out) == ["task.started", "voice.requested"]
    assert out[1].data == {"video": VIDEO, "voice": {"engine": "world", "pitch": 3}}
    m.apply_own()
    voiced = {**VIDEO, "path": "/work/voiced.mp4", "sha256": "b" * 64}
    out = m.feed(
        ev(
            "voice.assembled",
            {
                "video": voiced,
                "engine": "world",
                "chunks": 1,
                "audio_seconds": 1,
                "engine_seconds": 0.1,
                "wall_seconds": 0.2,
                "separation": {"ran": False},
            },
        )
    )
    assert types(out) == ["task.started", "media.requested"]
    assert out[1].data["video"] == voiced


def test_voice_failure_fails_the_task_with_the_reason() -> None:
    m = Machine()
    m.feed(created(voice={"engine": "world"}), OK)
    m.apply_own()
    m.feed(
        ev(
            "timer.fired",
            {"timer_id": f"{TID}:due:1", "purpose": "due", "due_at": T0, "fired_at": T0},
        )
    )
    m.apply_own()
    out = m.feed(ev("voice.failed", {"code": "no_audio_stream", "message": "no audio"}))
    assert types(out) == ["task.failed"]
    assert out[0].data["code"] == "no_audio_stream"


def test_media_rejection_fails_that_target_before_any_upload() -> None:
    m = Machine()
    m.feed(created(targets=[YT, IG]), OK)
    m.apply_own()
    m.feed(
        ev(
            "timer.fired",
            {"timer_id": f"{TID}:due:1", "purpose": "due", "due_at": T0, "fired_at": T0},
        )
    )
    m.apply_own()
    error = {"class": "permanent", "code": "too_long", "message": "Reels allow at most 900 s"}
    assert m.feed(ev("media.rejected", {"target": IG, "error": error})) == []
    m.feed(prepared(YT))
    m.apply_own()
    out = m.feed(ev("publish.completed", {"target": YT, "attempt": 1, "video_id": "v", "url": "u"}))
    assert types(out) == ["task.failed"]
    assert out[0].data["code"] == "too_long"


def test_a_timer_that_is_not_pending_is_ignored() -> None:
    m = Machine()
    scheduled(m)
    out = m.feed(
        ev(
            "timer.fired",
            {"timer_id": f"{TID}:due:9", "purpose": "due", "due_at": T0, "fired_at": T0},
        )
    )
    assert out == []


def failed(
    target: dict[str, str],
    attempt: int,
    retryable: bool = True,
    error: dict[str, Any] = ERR,
    time: str = T0,
) -> Event:
    return ev(
        "publish.failed",
        {"target": target, "attempt": attempt, "error": error, "retryable": retryable},
        time,
    )


def test_retryable_failure_schedules_a_retry_with_backoff() -> None:
    m = Machine()
    start(m)
    m.apply_own()
    out = m.feed(failed(YT, 1))
    assert types(out) == ["task.retry_scheduled", "timer.set"]
    delay = (parse(out[0].data["due_at"]) - parse(T0)).total_seconds()
    assert delay == pytest.approx(backoff(TID, 1, POLICY), abs=0.001)
    assert 5 <= delay <= 10  # base 10 s, jitter 50-100 %
    assert out[0].data["retry_count"] == 1
    m.apply_own()
    assert m.state is not None and m.state.status == "retry_scheduled"
    out = m.feed(
        ev(
            "timer.fired",
            {
                "timer_id": f"{TID}:retry:1",
                "purpose": "retry",
                "due_at": T0,
                "fired_at": T0,
                "target": YT,
            },
        )
    )
    assert types(out) == ["task.started", "publish.requested"]
    assert out[1].data["attempt"] == 2


def test_retries_stop_at_the_maximum_and_the_task_fails_with_the_last_error() -> None:
    m = Machine()
    start(m)
    m.apply_own()
    for n in (1, 2):
        m.feed(failed(YT, n))
        m.apply_own()  # task.retry_scheduled
        m.feed(
            ev(
                "timer.fired",
                {
                    "timer_id": f"{TID}:retry:{n}",
                    "purpose": "retry",
                    "due_at": T0,
                    "fired_at": T0,
                    "target": YT,
                },
            )
        )
        m.apply_own()  # task.started
    last = {**ERR, "message": "still broken"}
    out = m.feed(failed(YT, 3, error=last))
    assert types(out) == ["task.failed"]
    assert out[0].data["message"] == "youtube:main: still broken"
    assert m.state is not None and m.state.retry_count == 2


def test_permanent_failure_on_one_platform_does_not_stop_the_other() -> None:
    m = Machine()
    start(m, [YT, IG])
    m.apply_own()
    perm = {"class": "permanent", "code": "invalidTitle", "message": "bad title"}
    assert m.feed(failed(YT, 1, retryable=False, error=perm)) == []  # IG still running
    out = m.feed(
        ev(
            "publish.completed",
            {"target": IG, "attempt": 1, "video_id": "m1", "url": "https://ig/m1"},
        )
    )
    assert types(out) == ["task.failed"]
    breakdown = {t["platform"]: t for t in out[0].data["targets"]}
    assert breakdown["instagram"]["status"] == "published"
    assert breakdown["instagram"]["url"] == "https://ig/m1"
    assert breakdown["youtube"]["status"] == "failed"
    assert breakdown["youtube"]["error"]["code"] == "invalidTitle"
    m.apply_own()
    out = m.feed(ev("task.retry_requested"))
    assert types(out) == ["task.retried"]
    out = m.feed(ev("task.retried", out[0].data))
    assert types(out) == ["task.started", "media.requested"]
    assert out[1].data["targets"] == [YT]  # only the failed platform starts over
    m.apply_own()
    out = m.feed(prepared(YT))
    assert out[1].data["target"] == YT and out[1].data["attempt"] == 2


def test_quota_defers_to_the_reset_time() -> None:
    m = Machine()
    start(m)
    m.apply_own()
    until = "2026-11-30T08:00:00.000Z"
    quota = {"class": "quota", "code": "quotaExceeded", "message": "out"}
    out = m.feed(
        ev("publish.deferred", {"target": YT, "attempt": 1, "until": until, "error": quota})
    )
    assert types(out) == ["task.deferred", "timer.set"]
    assert out[1].data["due_at"] == until and out[1].data["purpose"] == "deferred"
    m.apply_own()
    assert m.state is not None and m.state.status == "deferred"
    assert m.state.retry_count == 0  # a deferral is not a retry


def test_comment_and_like_follow_the_publish_then_the_task_completes() -> None:
    m = Machine()
    start(m, comment="hi", like=True)
    m.apply_own()
    out = m.feed(
        ev("publish.completed", {"target": YT, "attempt": 1, "video_id": "v1", "url": "u1"})
    )
    assert types(out) == ["interaction.requested", "interaction.requested"]
    assert [e.data["kind"] for e in out] == ["comment", "like"]
    assert out[0].data["content"] == "hi"
    first = m.feed(
        ev(
            "interaction.posted",
            {
                "target": YT,
                "interaction_id": out[0].data["interaction_id"],
                "kind": "comment",
                "video_id": "v1",
            },
        )
    )
    assert first == []
    last = m.feed(
        ev(
            "interaction.failed",
            {
                "target": YT,
                "interaction_id": out[1].data["interaction_id"],
                "kind": "like",
                "video_id": "v1",
                "error": ERR,
            },
        )
    )
    assert types(last) == ["task.completed"]  # a failed like does not unpublish the video
    assert last[0].data["uploads"] == [
        {"platform": "youtube", "account": "main", "video_id": "v1", "url": "u1"}
    ]


@pytest.mark.parametrize("when", ["scheduled", "retry_scheduled"])
def test_cancel_before_publishing_cancels_timers(when: str) -> None:
    m = Machine()
    if when == "scheduled":
        scheduled(m)
    else:
        start(m)
        m.apply_own()
        m.feed(failed(YT, 1))
        m.apply_own()
    pending = list(m.state.timers)  # type: ignore[union-attr]
    out = m.feed(ev("task.cancel_requested", {"reason": "oops"}))
    assert types(out) == ["task.cancelled"] + ["timer.cancelled"] * len(pending)
    assert [e.data["timer_id"] for e in out[1:]] == pending
    m.apply_own()
    assert m.state is not None and m.state.status == "cancelled" and m.state.timers == ()


def test_commands_that_do_not_apply_are_refused_and_change_nothing() -> None:
    m = Machine()
    start(m)
    m.apply_own()
    state = m.state
    out = m.feed(ev("task.cancel_requested"))
    assert types(out) == ["task.command_rejected"]
    assert "publishing has started" in out[0].data["message"]
    assert types(m.feed(ev("task.retry_requested"))) == ["task.command_rejected"]
    assert types(m.feed(ev("task.reschedule_requested", {"scheduled_at": T0}))) == [
        "task.command_rejected"
    ]
    assert m.state == state
    out = decide(None, None, ev("task.cancel_requested"), policy=POLICY)
    assert out[0].data["message"] == "task.cancel_requested for a task never created"


def test_reschedule_replaces_the_due_timer() -> None:
    m = Machine()
    scheduled(m)
    out = m.feed(ev("task.reschedule_requested", {"scheduled_at": "2026-11-30T12:00:00+01:00"}))
    assert types(out) == ["timer.cancelled", "timer.set", "task.rescheduled"]
    assert out[0].data == {"timer_id": f"{TID}:due:1"}
    assert out[1].data["timer_id"] == f"{TID}:due:2"
    assert out[1].data["due_at"] == "2026-11-30T11:00:00.000Z"
    m.apply_own()
    assert m.state is not None and m.state.timers == (f"{TID}:due:2",)
    naive = m.feed(ev("task.reschedule_requested", {"scheduled_at": "2026-11-30T12:00:00"}))
    assert naive[0].data["code"] == "bad_scheduled_time"
    past = m.feed(ev("task.reschedule_requested", {"scheduled_at": "2020-01-01T00:00:00Z"}))
    assert past[0].data["code"] == "scheduled_in_past"


def test_state_survives_a_round_trip_through_json() -> None:
    m = Machine()
    start(m, [YT, IG], comment="c")
    m.apply_own()
    m.feed(failed(IG, 1))
    m.apply_own()
    assert m.state is not None
    assert TaskState.from_dict(m.state.to_dict()) == m.state


def test_backoff_is_deterministic_and_bounded() -> None:
    assert backoff("a", 3, POLICY) == backoff("a", 3, POLICY)
    assert backoff("a", 3, POLICY) != backoff("b", 3, POLICY)
    assert all(
        POLICY.retry_max_s / 2 <= backoff("x", n, POLICY) <= POLICY.retry_max_s
        for n in range(5, 12)
    )


def completed_machine() -> Machine:
    m = Machine()
    start(m, [YT, IG])
    m.apply_own()
    m.feed(ev("publish.completed", {"target": YT, "attempt": 1, "video_id": "v1", "url": "u1"}))
    m.feed(ev("publish.completed", {"target": IG, "attempt": 1, "video_id": "m1", "url": "u2"}))
    m.apply_own()  # task.completed
    assert m.state is not None and m.state.status == "completed"
    return m


def test_metadata_update_now_goes_to_every_published_video() -> None:
    m = completed_machine()
    out = m.feed(ev("metadata.update_requested", {"changes": {"privacy": "public"}}))
    assert types(out) == ["metadata.scheduled"]
    out = m.feed(ev("metadata.scheduled", out[0].data))
    assert types(out) == ["metadata.update", "metadata.update"]
    assert {e.data["video_id"] for e in out} == {"v1", "m1"}
    assert all(e.data["changes"] == {"privacy": "public"} for e in out)


def test_metadata_update_at_a_time_uses_a_timer_and_quota_waits_for_the_reset() -> None:
    m = completed_machine()
    out = m.feed(
        ev(
            "metadata.update_requested",
            {"changes": {"title": "New"}, "targets": [YT], "at": "2026-11-29T18:00:00+00:00"},
        )
    )
    assert types(out) == ["metadata.scheduled", "timer.set"]
    assert out[1].data["due_at"] == "2026-11-29T18:00:00.000Z"
    m.apply_own()  # metadata.scheduled records the timer
    timer = out[1].data["timer_id"]
    out = m.feed(
        ev(
            "timer.fired",
            {
                "timer_id": timer,
                "purpose": "metadata",
                "due_at": T0,
                "fired_at": T0,
                "payload": out[1].data["payload"],
            },
        )
    )
    assert types(out) == ["metadata.update"] and out[0].data["target"] == YT
    quota = {
        "class": "quota",
        "code": "quotaExceeded",
        "message": "out",
        "reset_at": "2026-11-30T08:00:00.000Z",
    }
    out = m.feed(
        ev(
            "metadata.failed",
            {
                "update_id": out[0].data["update_id"],
                "target": YT,
                "video_id": "v1",
                "error": quota,
                "retryable": False,
                "attempt": 1,
            },
        )
    )
    assert types(out) == ["metadata.scheduled", "timer.set"]
    assert out[1].data["due_at"] == quota["reset_at"]


def test_metadata_update_without_a_published_video_is_refused() -> None:
    m = Machine()
    scheduled(m)
    out = m.feed(ev("metadata.update_requested", {"changes": {"privacy": "public"}}))
    assert out[0].data["code"] == "nothing_published"


@pytest.mark.parametrize("outcome", ["publish.completed", "publish.failed"])
def test_a_publish_started_notice_after_its_outcome_changes_nothing(outcome: str) -> None:
    """publish.started is appended outside the publisher's transaction: after a crash, or an
    outbox sweep, it can land after the upload's outcome. It must not reopen the target (a
    task stuck in ``publishing``, as two bench processes once left two tasks)."""
    m = Machine()
    start(m, comment="hi")
    m.apply_own()
    if outcome == "publish.completed":
        data = {"target": YT, "attempt": 1, "video_id": "v1", "url": "u1"}
    else:
        error = {**ERR, "class": "permanent"}
        data = {"target": YT, "attempt": 1, "error": error, "retryable": False}
    decided = m.feed(ev(outcome, data))
    assert m.state is not None
    after = m.state
    late = m.feed(ev("publish.started", {"target": YT, "attempt": 1, "resuming": False}))
    assert late == []
    assert m.state.targets == after.targets
    assert m.state.status == after.status
    if outcome == "publish.completed":
        (target,) = after.targets.values()
        (iid,) = target.interactions
        done = m.feed(
            ev(
                "interaction.posted",
                {"target": YT, "interaction_id": iid, "kind": "comment", "video_id": "v1"},
            )
        )
        assert types(done) == ["task.completed"]
    else:
        assert types(decided) == ["task.failed"]
        assert [t.status for t in m.state.targets.values()] == ["failed"]
