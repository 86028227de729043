"""The content processor as a step of the event flow (issue 8): each platform gets the
file its profile asks for, what cannot be fixed is refused before any upload or quota, and
the task's work directory is gone however the task ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consumers.media import work_root
from fabric.testing.media import make_video
from fabric.voice.audio import sha256_file
from tests.integration.conftest import World, events_of, submit


@pytest.fixture(scope="session")
def landscape(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("media") / "landscape.mp4", 3.5, "640x360")


async def test_reels_get_a_9_16_file_and_the_source_is_left_alone(
    harness: Any, world: World, landscape: Path
) -> None:
    source_sha = sha256_file(landscape)
    async with harness(env=world.env()) as h:
        await world.add_instagram(h.app)
        task = await submit(h.app, landscape, [("instagram", "ig-brand")])
        assert (await h.wait([task], timeout=30))[task] == "completed"
        (prepared,) = await events_of(h.app, "media.prepared", subject=task)
        work = work_root(h.app) / task
        assert not work.exists()  # removed when the task completed
        report = await _status(h)
    decision = prepared["data"]["decision"]
    assert "scale_pad" in decision["actions"] and decision["reason"]
    video = prepared["data"]["video"]
    assert abs(video["width"] / video["height"] - 9 / 16) < 0.01  # padded to 9:16
    assert world.graph.bytes_received == video["size"]  # the prepared file was uploaded
    assert sha256_file(landscape) == source_sha  # the source is never touched
    assert report["metrics"]["temp_cleanups"] == 1
    assert report["metrics"]["temp_cleanup_success_rate"] == 1.0


async def test_what_cannot_be_fixed_is_refused_before_any_upload(
    harness: Any, world: World, vertical_video: Path
) -> None:
    async with harness(env=world.env()) as h:
        # this account's Reels may be at most 2 s long (an override of the profile)
        await world.add_instagram(
            h.app, profile_overrides={"min_duration_s": 1.0, "max_duration_s": 2.0}
        )
        await world.add_youtube(h.app)
        task = await submit(
            h.app, vertical_video, [("instagram", "ig-brand"), ("youtube", "yt-main")]
        )
        assert (await h.wait([task], timeout=30))[task] == "failed"
        (rejected,) = await events_of(h.app, "media.rejected", subject=task)
        (failed,) = await events_of(h.app, "task.failed", subject=task)
        assert not (work_root(h.app) / task).exists()  # removed on failure too
    error = rejected["data"]["error"]
    assert error["code"] == "too_long"
    assert "2" in error["message"] and "3.5" in error["message"]  # limit and measured value
    assert (rejected["data"]["limit"], round(rejected["data"]["measured"], 1)) == (2.0, 3.5)
    assert world.graph.containers_created == 0 and world.graph.bytes_received == 0
    assert len(world.youtube.videos) == 1  # the other platform still published
    breakdown = {t["platform"]: t["status"] for t in failed["data"]["targets"]}
    assert breakdown == {"instagram": "failed", "youtube": "published"}


async def test_youtube_shorts_are_detected(
    harness: Any, world: World, vertical_video: Path
) -> None:
    async with harness(env=world.env()) as h:
        await world.add_youtube(h.app)
        task = await submit(h.app, vertical_video, [("youtube", "yt-main")])
        assert (await h.wait([task], timeout=30))[task] == "completed"
        (prepared,) = await events_of(h.app, "media.prepared", subject=task)
        (request,) = await events_of(
            h.app, "publish.requested", topic="fabric.publish", subject=task
        )
    assert prepared["data"]["profile"] == "youtube_shorts" and prepared["data"]["short"]
    assert request["data"]["options"]["short"] is True


async def _status(h: Any) -> dict[str, Any]:
    from fabric.tasks_api import status

    return await status(h.app)
