"""Notifications in the running system (issue 7): failures are retried with backoff and
never fail the task; a recipient already served is not served again when the event is
retried or redelivered; what cannot be delivered ends as ``notification.failed``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from consumers.notifier import Notifier, Recipient, mask
from fabric.events import new_event
from fabric.notify import render
from tests.integration.conftest import World, events_of, submit, wait_for


async def _notes(app: Any, kind: str) -> list[dict[str, Any]]:
    return await events_of(app, kind, "fabric.notifications")


async def test_retried_after_failures_without_sending_twice(
    harness: Any, world: World, vertical_video: Path
) -> None:
    async with harness(env=world.env()) as h:
        app = h.app
        await world.add_youtube(app)
        for _ in range(3):  # the first chat's first attempt: three 5xx in a row
            world.telegram.fail_next(502)
        task = await submit(
            app,
            vertical_video,
            [("youtube", "yt-main")],
            notify=[{"channel": "telegram", "to": "1001"}, {"channel": "telegram", "to": "1002"}],
        )
        assert (await h.wait([task], timeout=20))[task] == "completed"
        sent = await wait_for(lambda: _two(app), what="both chats served")
        assert await _notes(app, "notification.failed") == []
        stats = app.runtime.stats()["notifier"]

    # 1002 got its message on the first attempt; the retry (for 1001) did not resend it
    assert sorted(m["chat"]["id"] for m in world.telegram.messages) == ["1001", "1002"]
    by_chat = {e["data"]["recipient_hash"]: e["data"] for e in sent}
    assert by_chat[Recipient("telegram", "1002").hash]["recovered"] is True
    assert by_chat[Recipient("telegram", "1001").hash]["recovered"] is False
    assert {d["recipient"] for d in by_chat.values()} == {mask("1001")} == {"***"}
    assert stats["retried"] >= 1 and stats["dlq"] == 0


async def _two(app: Any) -> list[dict[str, Any]] | None:
    sent = await _notes(app, "notification.sent")
    return sent if len(sent) >= 2 else None


async def test_undeliverable_notifications_are_recorded_and_the_task_still_completes(
    harness: Any, world: World, vertical_video: Path
) -> None:
    env = world.env(FABRIC_NOTIFY_ATTEMPTS="2")
    async with harness(env=env) as h:
        app = h.app
        await world.add_youtube(app)
        world.telegram.fail_next(400, description="Bad Request: chat not found")
        for _ in range(6):  # then a Telegram outage longer than every retry
            world.telegram.fail_next(503)
        task = await submit(
            app,
            vertical_video,
            [("youtube", "yt-main")],
            notify=[
                {"channel": "telegram", "to": "404404"},
                {"channel": "telegram", "to": "1001"},
                {"channel": "email", "to": "owner@example.com"},
            ],
        )
        assert (await h.wait([task], timeout=20))[task] == "completed"
        failed = await wait_for(lambda: _failed_two(app), what="two failures recorded")
        sent = await _notes(app, "notification.sent")
        assert (await h.row(task))["state"] == "completed"
        assert app.runtime.stats()["notifier"]["dlq"] == 0

    codes = sorted((e["data"]["error"]["code"], e["data"]["attempts"]) for e in failed)
    assert codes == [("telegram_400", 1), ("telegram_503", 2)]
    assert {e["data"]["error"]["retryable"] for e in failed} == {False, True}
    assert [e["data"]["channel"] for e in sent] == ["email"]  # the mail went out regardless
    assert len(world.inbox.messages) == 1 and world.telegram.messages == []


async def _failed_two(app: Any) -> list[dict[str, Any]] | None:
    failed = await _notes(app, "notification.failed")
    return failed if len(failed) >= 2 else None


@dataclasses.dataclass
class _Ctx:
    """What ``Notifier.deliver`` uses of a handler context: the attempt and ``emit``."""

    attempt: int = 1
    emitted: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)

    def emit(self, kind: str, data: dict[str, Any], **_: Any) -> None:
        self.emitted.append((kind, data))


async def test_a_redelivered_event_after_a_crash_does_not_send_again(
    harness: Any, world: World
) -> None:
    """The handler's transaction never committed (a crash after the sends): the event is
    handled again, and the persisted per-recipient intents turn the sends into records."""
    async with harness(env=world.env(), consumers=()) as h:
        notifier = Notifier(h.app)
        event = new_event("task.completed", {"uploads": []}, subject="t-1")
        note = render("task_published", {"task_id": "t-1", "title": "Crash test", "uploads": []})
        to = [Recipient("telegram", "1001"), Recipient("email", "owner@example.com")]
        first, again = _Ctx(), _Ctx()
        await notifier.deliver(event, first, "task_published", note, to)
        await notifier.deliver(event, again, "task_published", note, to)  # the redelivery
        await notifier.close()

    assert len(world.telegram.messages) == 1 and len(world.inbox.messages) == 1
    assert [d["recovered"] for _, d in first.emitted] == [False, False]
    assert [(k, d["recovered"]) for k, d in again.emitted] == [
        ("notification.sent", True),
        ("notification.sent", True),
    ]
    assert again.emitted[0][1]["message_ids"] == first.emitted[0][1]["message_ids"]
    # the e-mail's Message-ID is derived from the event and recipient: a resend is the same
    assert world.inbox.messages[0]["Message-ID"].strip() == first.emitted[1][1]["message_ids"][0]
    assert event.id in world.inbox.messages[0]["Message-ID"]
