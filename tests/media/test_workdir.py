"""Per-task work directories: 0700/0600, removed on success, failure and cancellation, counted."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from fabric.media import CleanupStats, WorkDirs


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_modes_are_private(tmp_path: Path) -> None:
    old = os.umask(0o000)  # even with a permissive umask
    try:
        dirs = WorkDirs(tmp_path / "work")
        path = dirs.create("task-1")
        video = dirs.file("task-1", "out.mp4")
    finally:
        os.umask(old)
    assert mode(dirs.root) == 0o700
    assert mode(path) == 0o700
    assert mode(video) == 0o600 and video.parent == path
    assert dirs.create("task-1") == path  # idempotent: a redelivered task reuses it
    assert dirs.stats == CleanupStats(created=1)
    assert dirs.active() == ("task-1",)


def test_removed_after_success(tmp_path: Path) -> None:
    dirs = WorkDirs(tmp_path)
    with dirs.scope("t-ok") as path:
        dirs.file("t-ok", "a.mp4").write_bytes(b"x" * 100)
        (path / "sub").mkdir()
        (path / "sub" / "b.wav").write_bytes(b"y")
    assert not path.exists()
    assert dirs.stats == CleanupStats(created=1, removed=1, failed=0)
    assert dirs.stats.success_rate == 1.0


def test_removed_after_an_exception(tmp_path: Path) -> None:
    dirs = WorkDirs(tmp_path)
    with pytest.raises(RuntimeError, match="ffmpeg exploded"):
        with dirs.scope("t-fail") as path:
            dirs.file("t-fail", "partial.mp4.part")
            raise RuntimeError("ffmpeg exploded")
    assert not path.exists()
    assert dirs.stats.removed == 1 and dirs.stats.failed == 0


async def test_removed_after_cancellation(tmp_path: Path) -> None:
    dirs = WorkDirs(tmp_path)
    inside = asyncio.Event()
    paths: list[Path] = []

    async def task() -> None:
        with dirs.scope("t-cancel") as path:
            dirs.file("t-cancel", "out.mp4")
            paths.append(path)
            inside.set()
            await asyncio.Event().wait()  # until cancelled

    running = asyncio.create_task(task())
    await asyncio.wait_for(inside.wait(), 10)
    assert paths[0].is_dir()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert not paths[0].exists()
    assert dirs.stats == CleanupStats(created=1, removed=1, failed=0)


def test_a_failed_cleanup_is_counted(tmp_path: Path) -> None:
    dirs = WorkDirs(tmp_path / "work")
    stuck = dirs.file("t-stuck", "busy.mp4")
    if os.geteuid() != 0:  # a read-only directory keeps its entries
        os.chmod(stuck.parent, 0o500)
        undo = ["chmod", "700", str(stuck.parent)]
    elif shutil.which("chattr"):  # root ignores permissions, not the immutable flag
        if subprocess.run(["chattr", "+i", str(stuck)], capture_output=True).returncode:
            pytest.skip("cannot make a file undeletable here")
        undo = ["chattr", "-i", str(stuck)]
    else:
        pytest.skip("cannot make a file undeletable here")
    try:
        assert dirs.remove("t-stuck") is False
        assert stuck.exists()
    finally:
        subprocess.run(undo, check=True)
    assert dirs.stats.failed == 1 and dirs.stats.removed == 0
    assert dirs.stats.success_rate == 0.0
    assert dirs.remove("t-stuck") is True  # retried later, once nothing holds it
    assert dirs.stats.as_data() == {"created": 1, "removed": 1, "failed": 1, "success_rate": 0.5}


def test_counts_restart_from_persisted_values_and_missing_dirs_are_not_counted(
    tmp_path: Path,
) -> None:
    dirs = WorkDirs(tmp_path, stats=CleanupStats(created=10, removed=9, failed=1))
    assert dirs.remove("never-created") is True
    assert dirs.stats == CleanupStats(created=10, removed=9, failed=1)


def test_sweep_removes_leftovers_of_a_crash(tmp_path: Path) -> None:
    before = WorkDirs(tmp_path / "work")
    for task in ("a", "b", "c"):
        before.file(task, "x.mp4")
    after_restart = WorkDirs(tmp_path / "work")
    assert after_restart.sweep(keep={"b"}) == 2
    assert after_restart.active() == ("b",)
    assert after_restart.stats.removed == 2


def test_unsafe_task_ids_and_planted_roots_are_refused(tmp_path: Path) -> None:
    dirs = WorkDirs(tmp_path / "work")
    for bad in ("../escape", "a/b", "", ".hidden", "x" * 200):
        with pytest.raises(ValueError):
            dirs.create(bad)
    with pytest.raises(ValueError):
        dirs.file("ok", "../x")
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(PermissionError):
        WorkDirs(tmp_path / "link")
    os.symlink(target, dirs.root / "planted")
    with pytest.raises(PermissionError):
        dirs.create("planted")
