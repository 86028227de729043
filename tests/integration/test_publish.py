"""One task to YouTube, Instagram and TikTok at once, end to end (issue 7's Tests section):
three uploads, the notifications arrive, one task.completed; and one platform failing for
good while the others publish, then ``task retry`` retrying only that platform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.conftest import CHAT, TT_OPEN_ID, World, events_of, submit, wait_for

TARGETS = [("youtube", "yt-main"), ("instagram", "ig-brand"), ("tiktok", "tt-me")]


async def test_one_task_to_three_platforms_publishes_and_notifies(
    harness: Any, world: World, vertical_video: Path
) -> None:
    async with harness(env=world.env()) as h:
        app = h.app
        await world.add_youtube(app, notify=[{"channel": "telegram", "to": "2002"}])
        await world.add_instagram(app)
        await world.add_tiktok(app)
        task = await submit(
            app,
            vertical_video,
            TARGETS,
            privacy="public",
            notify=[
                {"channel": "telegram", "to": "1001"},
                {"channel": "email", "to": "owner@example.com"},
            ],
        )
        assert (await h.wait([task], timeout=25))[task] == "completed"
        (done,) = await events_of(app, "task.completed", subject=task)
        sent = await wait_for(lambda: _sent(app, task), what="three notifications")

    # three uploads: each fake holds exactly one video
    assert len(world.youtube.videos) == 1 and len(world.youtube.calls_of("videos.insert")) == 1
    assert world.graph.media_published == 1 and world.graph.containers_created == 1
    assert world.tiktok.published == 1 and world.tiktok.inits == 1
    urls = {u["platform"]: u["url"] for u in done["data"]["uploads"]}
    assert set(urls) == {"youtube", "instagram", "tiktok"} and all(urls.values())
    assert urls["youtube"] == f"https://www.youtube.com/watch?v={world.youtube.videos[0].id}"

    # three notifications: the task's Telegram chat and e-mail, the YouTube account's chat
    assert sorted((s["data"]["channel"], s["data"]["kind"]) for s in sent) == [
        ("email", "task_published"),
        ("telegram", "task_published"),
        ("telegram", "task_published"),
    ]
    chats = sorted(m["chat"]["id"] for m in world.telegram.messages)
    assert chats == ["1001", "2002"]
    for message in world.telegram.messages:
        assert "Published" in message["text"] and "Morning run" in message["text"]
        for url in urls.values():
            assert url in message["text"] and f'<a href="{url}">' in message["html"]
    (mail,) = world.inbox.messages
    assert mail["Subject"] == "Published: Morning run"
    assert mail["To"] == "owner@example.com"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    for url in urls.values():
        assert url in text and f'<a href="{url}">' in html
    assert CHAT not in chats  # no global default configured in this test


async def _sent(app: Any, task: str) -> list[dict[str, Any]] | None:
    found = [
        e
        for e in await events_of(app, "notification.sent", "fabric.notifications")
        if e["subject"] == task
    ]
    return found if len(found) >= 3 else None


async def test_one_platform_failing_for_good_and_retry_only_that_one(
    harness: Any, world: World, vertical_video: Path
) -> None:
    env = world.env(FABRIC_NOTIFY_TELEGRAM_CHAT=CHAT)
    async with harness(env=env) as h:
        app = h.app
        await world.add_youtube(app)
        await world.add_instagram(app)
        await world.add_tiktok(app, privacy=["SELF_ONLY"])  # an unaudited TikTok app
        task = await submit(app, vertical_video, TARGETS, privacy="public")
        assert (await h.wait([task], timeout=25))[task] == "failed"
        (failed,) = await events_of(app, "task.failed", subject=task)
        breakdown = {t["platform"]: t for t in failed["data"]["targets"]}
        assert breakdown["youtube"]["status"] == "published" and breakdown["youtube"]["url"]
        assert breakdown["instagram"]["status"] == "published"
        assert breakdown["tiktok"]["status"] == "failed"
        assert breakdown["tiktok"]["error"]["class"] == "permanent"
        assert breakdown["tiktok"]["error"]["code"] == "unaudited_app_private_only"
        notice = await wait_for(
            lambda: [m for m in world.telegram.messages if "Failed" in m["text"]],
            what="failure notice",
        )
        assert "TikTok (tt-me): failed" in notice[0]["text"]
        assert "YouTube (yt-main): published" in notice[0]["text"]

        # the app gets audited; `task retry` runs the failed platform again, only that one
        world.tiktok.creators[TT_OPEN_ID]["privacy_level_options"] = [
            "PUBLIC_TO_EVERYONE",
            "SELF_ONLY",
        ]
        await h.command(task, "task.retry_requested")
        await wait_for(
            lambda: events_of(app, "task.completed", subject=task),
            what="task completed after the retry",
        )
        (retried,) = await events_of(app, "task.retried", subject=task)
        assert retried["data"]["targets"] == [{"platform": "tiktok", "account": "tt-me"}]
        requested = [
            e["data"]["target"]["platform"]
            for e in await events_of(app, "publish.requested", "fabric.publish")
        ]

    assert sorted(requested) == ["instagram", "tiktok", "tiktok", "youtube"]
    assert len(world.youtube.videos) == 1 and len(world.youtube.calls_of("videos.insert")) == 1
    assert world.graph.media_published == 1 and world.graph.containers_created == 1
    assert world.tiktok.published == 1
