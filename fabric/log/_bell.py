"""A doorbell between processes sharing one SQLite log: "records were appended".

A subscription in one process learns of records appended by another only by looking:
``PRAGMA data_version`` and a query per partition, every poll interval, on a worker thread.
An idle voice worker spent 5 % of a core on that (50 looks a second). The doorbell makes the
look conditional: every process that appends writes one byte to ``<log>-bell`` after the
commit, and every process watches that file with inotify. A subscription skips the look
when the bell has not rung since its last one; it still looks at least every
``SAFETY_S`` (a writer without the bell, a file system without inotify events).

The bell rings after the commit is complete, so a look that starts after the ring sees the
records; a ring processed late only delays the look to the next poll. Heartbeats and offset
commits do not ring: they are not records. Linux only (inotify through libc); elsewhere
``Doorbell.open`` returns ``None`` and the subscriptions poll as before.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
from collections.abc import Callable
from typing import Any

__all__ = ["SAFETY_S", "Doorbell"]

SAFETY_S = 1.0  # the longest a subscription goes without a look, bell or no bell
_IN_MODIFY = 0x2


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None
    if not hasattr(libc, "inotify_init1"):
        return None
    return libc


class Doorbell:
    """Ring: one ``pwrite`` on the bell file. Hear: ``rings`` grows when anyone rings."""

    def __init__(
        self, fd: int, watch: int, loop: asyncio.AbstractEventLoop, on_ring: Callable[[], None]
    ) -> None:
        self._fd = fd  # the bell file, written to ring
        self._watch = watch  # the inotify descriptor, read when it is rung
        self.loop = loop
        self.rings = 0
        self._on_ring = on_ring
        loop.add_reader(watch, self._heard)

    @classmethod
    def open(cls, path: str, on_ring: Callable[[], None]) -> Doorbell | None:
        """The bell at ``path`` (created 0600), watched from the running loop, which calls
        ``on_ring`` after each ring it hears; ``None`` where inotify is not available."""
        libc = _libc()
        if libc is None:
            return None
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        watch = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if watch < 0:
            os.close(fd)
            return None
        if libc.inotify_add_watch(watch, os.fsencode(path), _IN_MODIFY) < 0:
            os.close(watch)
            os.close(fd)
            return None
        return cls(fd, watch, asyncio.get_running_loop(), on_ring)

    def ring(self) -> None:
        os.pwrite(self._fd, b"\0", 0)

    def _heard(self) -> None:
        try:
            while os.read(self._watch, 4096):
                pass
        except BlockingIOError:
            pass
        self.rings += 1
        self._on_ring()

    def usable(self) -> bool:
        """Only the loop that watches hears the rings (tests run several loops in turn)."""
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.remove_reader(self._watch)
        os.close(self._watch)
        os.close(self._fd)
