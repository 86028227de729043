"""Process trees on Linux (/proc), for tests and benchmarks that watch worker pools."""

from __future__ import annotations

import contextlib
from pathlib import Path

__all__ = ["children"]


def children(pid: int) -> set[int]:
    """Live child processes of ``pid`` (a thread that ends while it is read is skipped)."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out |= {int(c) for c in (task / "children").read_text().split()}
    return out
