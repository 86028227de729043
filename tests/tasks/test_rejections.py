"""Every kind of bad task ends as task.rejected with a machine-readable reason; nothing else
happens to it (no timer, no upload)."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.tasks.harness import Harness


@pytest.fixture
async def h(harness: Callable[..., Harness]) -> Any:
    async with harness() as running:
        await running.account("main")
        await running.account("off")
        await running.app.accounts.set_enabled("local", "off", False)
        await running.app.accounts.add("youtube", "yt")  # no tokens needed to validate
        yield running


def audio_only(path: Path) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=1",
            "-c:a",
            "aac",
            str(path),
        ],
        check=True,
    )
    return path


CASES: dict[str, Callable[[Path, Path], dict[str, Any]]] = {
    "unknown_account": lambda v, tmp: {"accounts": ["nobody"]},
    "account_disabled": lambda v, tmp: {"accounts": ["off"]},
    "video_missing": lambda v, tmp: {"video": tmp / "nope.mp4"},
    "video_unreadable": lambda v, tmp: {"video": tmp},  # a directory
    "video_corrupt": lambda v, tmp: {"video": _write(tmp / "junk.mp4", b"\x00junk" * 100)},
    "no_video_stream": lambda v, tmp: {"video": audio_only(tmp / "audio.m4a")},
    "title_too_long": lambda v, tmp: {
        "targets": [{"platform": "youtube", "account": "yt"}],
        "title": "x" * 101,
    },
    "title_missing": lambda v, tmp: {"title": "   "},
    "naive_scheduled_time": lambda v, tmp: {"scheduled_at": "2030-01-01T10:00:00"},
    "bad_scheduled_time": lambda v, tmp: {"scheduled_at": "next tuesday"},
    "scheduled_in_past": lambda v, tmp: {
        "scheduled_at": (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat()
    },
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def test_each_bad_input_is_rejected_with_its_code(
    h: Harness, video: Path, tmp_path: Path
) -> None:
    ids = {}
    for code, make in CASES.items():
        case = make(video, tmp_path)
        accounts = case.pop("accounts", ["main"])
        path = case.pop("video", video)
        ids[code] = await h.create(path, *accounts, **case)
    final = await h.wait(list(ids.values()))
    for code, task_id in ids.items():
        row = await h.row(task_id)
        assert (final[task_id], row["error_code"]) == ("rejected", code), row
        assert row["status"] == "failed" and row["error"]
        events = await h.events(task_id)
        assert events == ["task.created", "task.rejected"], (code, events)
    assert not h.platform_dir.exists() or not any(h.platform_dir.rglob("metadata.json"))


async def test_the_message_names_the_limit_and_the_value(h: Harness, video: Path) -> None:
    task_id = await h.create(
        video, title="y" * 120, targets=[{"platform": "youtube", "account": "yt"}]
    )
    await h.wait([task_id])
    row = await h.row(task_id)
    assert row["error"] == "youtube titles are at most 100 characters; this one has 120"
