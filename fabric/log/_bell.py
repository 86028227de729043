"""A doorbell between processes sharing one SQLite log: "records were appended".

A subscription in one process learns of records appended by another only by looking:
``PRAGMA data_version`` and a query per partition on a worker thread. Looking every poll
interval (20 ms) cost an idle voice worker 5 % of a core. With the doorbell, every process
that appends writes one byte to ``<log>-bell`` after the commit (once per loop iteration),
and every process watches that file with inotify:

- a subscription looks only if the bell rang since its last look (or ``SAFETY_S`` passed:
  a writer without the bell, a file system without inotify events);
- when the bell has not rung for ``ACTIVE_S``, a waiting subscription stops polling and
  sleeps until the next ring (or ``SAFETY_S``); on a busy log it polls as before, so a
  stream of rings costs no more than the poll did.

The bell rings after the commit is complete, so a look that starts after the ring sees the
records; a ring processed late only delays the look to the next poll. Heartbeats and offset
commits do not ring: they are not records. Linux only (inotify through libc); elsewhere
``Doorbell.open`` returns ``None`` and subscriptions poll every interval as before.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ACTIVE_S", "SAFETY_S", "Doorbell"]

SAFETY_S = 1.0  # the longest a subscription goes without a look, bell or no bell
ACTIVE_S = 0.1  # rung this recently: keep polling every poll interval (a busy log)
_IN_MODIFY = 0x2


@functools.cache
def _libc() -> Any:
    """The C library as loaded into this process (``find_library`` would run ldconfig on
    every log start)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
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
        self.heard_at = float("-inf")  # time.monotonic() of the last ring heard
        self._on_ring = on_ring
        self._ring_due = False
        loop.add_reader(watch, self._heard)

    @classmethod
    def open(cls, path: str, on_ring: Callable[[], None]) -> Doorbell | None:
        """The bell at ``path`` (created 0600), watched from the running loop, which calls
        ``on_ring`` after each ring it hears; ``None`` where inotify is not available or
        the bell cannot be opened for writing."""
        libc = _libc()
        if libc is None:
            return None
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError:  # a read-only directory or file: poll instead
            return None
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

    def ring_soon(self) -> None:
        """Ring once at the end of this loop iteration, for all the commits it saw."""
        if not self.usable():
            self.ring()
        elif not self._ring_due:
            self._ring_due = True
            self.loop.call_soon(self._ring_now)

    def _ring_now(self) -> None:
        self._ring_due = False
        self.ring()

    def _heard(self) -> None:
        try:
            while os.read(self._watch, 4096):
                pass
        except BlockingIOError:
            pass
        self.rings += 1
        self.heard_at = time.monotonic()
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
