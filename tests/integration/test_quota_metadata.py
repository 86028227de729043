"""Quota in the running system: an exhausted YouTube upload quota defers the upload to the
next midnight in Los Angeles without a call that must fail; a scheduled metadata change
(unlisted -> public) goes through videos.update with its quota counted; a platform without
metadata updates says so."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import time_machine

from fabric.timeutil import parse
from tests.integration.conftest import CHAT, YT_CLIENT_ID, World, events_of, submit, wait_for

LA = ZoneInfo("America/Los_Angeles")


async def test_quota_exhausted_defers_to_midnight_los_angeles_burning_nothing(
    harness: Any, world: World, vertical_video: Path
) -> None:
    # the evening before the spring DST change: the reset is midnight PST = 08:00 UTC
    with time_machine.travel(dt.datetime(2025, 3, 8, 21, 30, tzinfo=LA), tick=True):
        async with harness(env=world.env(FABRIC_NOTIFY_TELEGRAM_CHAT=CHAT)) as h:
            app = h.app
            await world.add_youtube(app)
            quota = app.platforms.quota
            await quota.spend("yt-main", "youtube", "videos.insert", n=100)  # 100 uploads/day
            task = await submit(app, vertical_video, [("youtube", "yt-main")])
            (deferred,) = await wait_for(
                lambda: events_of(app, "publish.deferred", subject=task), what="deferral"
            )
            (decision,) = await wait_for(
                lambda: events_of(app, "task.deferred", subject=task), what="task deferred"
            )
            notice = await wait_for(
                lambda: [m for m in world.telegram.messages if "Deferred" in m["text"]],
                what="quota notice",
            )
            usage = {u.bucket: u for u in await quota.usage("yt-main", "youtube")}

    reset = dt.datetime(2025, 3, 9, 8, 0, tzinfo=dt.UTC)
    assert parse(deferred["data"]["until"]) == reset
    assert deferred["data"]["error"]["class"] == "quota"
    assert parse(decision["data"]["until"]) == reset
    assert decision["data"]["timer_id"]  # a durable timer wakes it at the reset
    # nothing burnt: no upload was even started at YouTube, and the count did not move
    assert world.youtube.calls_of("videos.insert") == [] and world.youtube.videos == []
    assert world.youtube.units_used == {}
    assert (usage["uploads"].used, usage["uploads"].remaining) == (100, 0)
    assert "2025-03-09 08:00 UTC" in notice[0]["text"] and "YouTube" in notice[0]["text"]


async def test_scheduled_metadata_update_applied_with_its_quota(
    harness: Any, world: World, vertical_video: Path
) -> None:
    async with harness(env=world.env()) as h:
        app = h.app
        await world.add_youtube(app)
        await world.add_instagram(app)
        task = await submit(
            app,
            vertical_video,
            [("youtube", "yt-main"), ("instagram", "ig-brand")],
            privacy="unlisted",
        )
        assert (await h.wait([task], timeout=25))[task] == "completed"
        (video,) = world.youtube.videos
        assert video.resource["status"]["privacyStatus"] == "unlisted"
        quota = app.platforms.quota
        before = {u.bucket: u.used for u in await quota.usage("yt-main", "youtube")}
        fake_before = dict(world.youtube.units_used[YT_CLIENT_ID])

        at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        await h.command(
            task, "metadata.update_requested", changes={"privacy": "public"}, at=at.isoformat()
        )
        (updated,) = await wait_for(
            lambda: events_of(app, "metadata.updated", subject=task), what="metadata updated"
        )
        (refused,) = await wait_for(
            lambda: events_of(app, "metadata.failed", subject=task), what="instagram refused"
        )
        (scheduled,) = await events_of(app, "metadata.scheduled", subject=task)
        after = {u.bucket: u.used for u in await quota.usage("yt-main", "youtube")}
        fake_after = dict(world.youtube.units_used[YT_CLIENT_ID])

        # a new thumbnail, at once, for the YouTube video only: thumbnails.set, 50 units
        image = vertical_video.parent / "thumb.jpg"
        image.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 2048)
        await h.command(
            task,
            "metadata.update_requested",
            changes={"thumbnail": str(image)},
            targets=[{"platform": "youtube", "account": "yt-main"}],
        )
        await wait_for(lambda: _two_updates(app, task), what="thumbnail updated")
        with_thumb = {u.bucket: u.used for u in await quota.usage("yt-main", "youtube")}
    assert world.youtube.thumbnails == {video.id: 2052}
    assert with_thumb["units"] - after["units"] == 50

    assert scheduled["data"]["timer_id"]  # applied by its timer, not at once
    assert parse(updated["time"]) >= at
    assert updated["data"]["target"] == {"platform": "youtube", "account": "yt-main"}
    assert updated["data"]["details"]["privacy"] == "public"
    assert video.resource["status"]["privacyStatus"] == "public"
    (change,) = world.youtube.updates
    assert change["status"]["privacyStatus"] == "public"
    assert len(world.youtube.calls_of("videos.update")) == 1
    # videos.update costs 50 units; update_video reads the video first (videos.list, 1 unit)
    assert after["units"] - before["units"] == 50 + 1
    assert fake_after["units"] - fake_before.get("units", 0) == after["units"] - before["units"]
    assert refused["data"]["target"]["platform"] == "instagram"
    assert refused["data"]["error"]["class"] == "permanent"
    assert refused["data"]["error"]["code"] == "unsupported"
    assert refused["data"]["retryable"] is False


async def _two_updates(app: Any, task: str) -> bool:
    return len(await events_of(app, "metadata.updated", subject=task)) >= 2
