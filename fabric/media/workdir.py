"""Per-task work directories: private while the task runs, gone when it ends.

Intermediate videos are the user's unpublished content, so each task's directory is created
0700 and its files 0600, and a directory is removed when its task ends however it ends
(success, exception, cancellation), through ``WorkDirs.scope``. Removals are counted: the
original system showed "temp file cleanup success" in its status, and a failing cleanup is the
first sign of a disk that will fill up. The counts live in memory; the owner persists them
(``stats`` out, ``WorkDirs(stats=...)`` back in) where it keeps its other metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

__all__ = ["CleanupStats", "WorkDirs"]

_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # one path component, no "..", no "/"


@dataclasses.dataclass(frozen=True, slots=True)
class CleanupStats:
    """Work directories created, removed, and removals that failed (left something behind)."""

    created: int = 0
    removed: int = 0
    failed: int = 0

    @property
    def success_rate(self) -> float | None:
        """Removed / attempted; None before the first removal."""
        attempted = self.removed + self.failed
        return self.removed / attempted if attempted else None

    def as_data(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "removed": self.removed,
            "failed": self.failed,
            "success_rate": self.success_rate,
        }


def _ensure_private_dir(path: Path) -> None:
    """``path`` is a real directory we own, mode 0700 (not a symlink planted by someone else)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise PermissionError(
                f"{path} exists and is not a directory owned by this user"
            ) from None
    os.chmod(path, 0o700)  # exact bits, whatever the umask or an earlier run left


class WorkDirs:
    """Work directories under one root, one per task id.

    ``create(task_id)`` is idempotent (a redelivered task reuses its directory; files in it are
    overwritten); ``remove(task_id)`` deletes it and counts the outcome. Use ``scope`` to tie
    the directory to the task's lifetime.
    """

    def __init__(self, root: Path | str | None = None, *, stats: CleanupStats | None = None):
        if root is None:
            root = Path(tempfile.gettempdir()) / f"content-fabric-{os.getuid()}"
        self._root = Path(root).absolute()
        self._root.parent.mkdir(parents=True, exist_ok=True)
        _ensure_private_dir(self._root)
        self._stats = stats or CleanupStats()

    @property
    def root(self) -> Path:
        return self._root

    @property
    def stats(self) -> CleanupStats:
        return self._stats

    def path(self, task_id: str) -> Path:
        """Where the task's directory is (whether or not it exists)."""
        if not _TASK_ID.fullmatch(task_id):
            raise ValueError(f"task id {task_id!r} is not usable as a directory name")
        return self._root / task_id

    def create(self, task_id: str) -> Path:
        """The task's directory, created 0700 if missing."""
        path = self.path(task_id)
        existed = path.exists()
        _ensure_private_dir(path)
        if not existed:
            self._stats = dataclasses.replace(self._stats, created=self._stats.created + 1)
        return path

    def file(self, task_id: str, name: str) -> Path:
        """An empty file ``name`` in the task's directory, mode 0600 (for tools that write into
        an existing file, e.g. ffmpeg, which keeps the mode when it truncates)."""
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"{name!r} is not a plain file name")
        path = self.create(task_id) / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        return path

    def remove(self, task_id: str) -> bool:
        """Delete the task's directory; True when nothing is left. A missing directory is not
        counted (nothing was cleaned); a directory that survives counts as a failure."""
        path = self.path(task_id)
        if not os.path.lexists(path):
            return True
        try:
            if os.path.islink(path) or not path.is_dir():
                path.unlink()
            else:
                shutil.rmtree(path)
        except OSError:
            pass  # counted below from what is left on disk
        ok = not os.path.lexists(path)
        self._stats = dataclasses.replace(
            self._stats,
            removed=self._stats.removed + ok,
            failed=self._stats.failed + (not ok),
        )
        return ok

    @contextlib.contextmanager
    def scope(self, task_id: str) -> Iterator[Path]:
        """``with dirs.scope(task_id) as path:`` the directory exists inside, and is removed on
        the way out: normal exit, exception, or ``asyncio.CancelledError`` in a coroutine."""
        path = self.create(task_id)
        try:
            yield path
        finally:
            self.remove(task_id)

    def active(self) -> tuple[str, ...]:
        """Task ids with a directory now (for ``status``, and to find leftovers)."""
        return tuple(sorted(p.name for p in self._root.iterdir() if _TASK_ID.fullmatch(p.name)))

    def sweep(self, keep: Collection[str] = ()) -> int:
        """Remove the directories of tasks not in ``keep`` (left by a crash); how many went."""
        return sum(self.remove(task) for task in self.active() if task not in keep)
