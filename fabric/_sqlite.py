"""sqlite3 without blocking the event loop on a lock: inline while free, a thread while locked."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Generic, TypeVar

import tenacity

__all__ = ["GroupCommit", "SqliteThread", "connect"]

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
R = TypeVar("R")


BUSY_S = 30  # how long a call on a connection's thread waits for another writer's lock


def connect(path: str, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) on a 0600 WAL file."""
    if path != ":memory:" and not os.path.exists(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_S)
    _wal(conn)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    # checkpoint the WAL every ~16 MB instead of every 4 MB: checkpoints run inside a
    # commit and were a large share of the time of small, frequent transactions
    conn.execute("PRAGMA wal_autocheckpoint=4000")
    return conn


@tenacity.retry(
    retry=tenacity.retry_if_exception(
        lambda e: isinstance(e, sqlite3.OperationalError) and _locked(e)
    ),
    wait=tenacity.wait_exponential(multiplier=0.01, max=0.5) + tenacity.wait_random(0, 0.01),
    stop=tenacity.stop_after_delay(BUSY_S),
    reraise=True,
)
def _wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. Two processes opening a new (rollback-journal) file at once can get
    "database is locked" here at once, without the busy timeout: the switch needs the file
    to itself for a moment, so it is tried again with backoff (up to the busy timeout)."""
    conn.execute("PRAGMA journal_mode=WAL")


class SqliteThread:
    """One connection, used from the event loop thread while that costs nothing, and from
    its own worker thread while it would block.

    A call runs inline first, with the busy timeout at 0: SQLite answers from its page
    cache and the WAL in microseconds, far less than handing the call to a thread and back
    (measured: the hand-offs and the GIL convoy they cause cost more than the queries; the
    sqlite3 module releases and re-takes the GIL on every row). Where the database is
    locked (another process writes), the call goes to the worker thread, which waits with
    the full busy timeout; calls made meanwhile queue behind it there, in order, so the
    connection is never used by both threads at once. The event loop never sleeps in
    SQLite's busy handler; it may wait for a commit's fsync.

    The first call, which opens the connection (the switch to WAL may wait for other
    processes), and ``inline=False`` (start-up scripts whose statements commit one by one,
    so a retry on the thread could not redo them safely) take the thread.

    A GroupCommit ``work`` function takes (connection, items) with ``items`` by keyword.

    Functions run here must not return a Cursor (or anything holding one): a cursor freed
    later in the event loop thread touches the connection from a second thread while this
    one uses it, and SQLite answers "bad parameter or other API misuse".
    """

    BUSY_MS = BUSY_S * 1000

    def __init__(self, path: str, name: str, synchronous: str) -> None:
        self._ex = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._path = path
        self._sync = synchronous
        self._queued = 0  # calls handed to the worker thread and not finished
        self._busy_ms = self.BUSY_MS
        self.conn: sqlite3.Connection | None = None
        self.deferred = 0  # calls that found the database locked and went to the thread

    async def call(self, fn: Callable[[sqlite3.Connection], T], *, inline: bool = True) -> T:
        if inline and self._free():
            result = self._attempt(fn)
            if result is not _LOCKED:
                return result  # type: ignore[return-value]
        return await self._on_thread(fn)

    def _free(self) -> bool:
        """Inline is possible: nothing queued on the thread, and the connection is open
        (it is opened on the thread: the switch to WAL may wait for other processes)."""
        return not self._queued and self.conn is not None

    def _attempt(self, fn: Callable[[sqlite3.Connection], T]) -> T | object:
        """Run ``fn`` here, now, without waiting for a lock; ``_LOCKED`` if it found one
        before changing anything (outside a transaction: it can run again on the thread)."""
        try:
            return self._run(fn, 0)
        except sqlite3.OperationalError as exc:
            if not _locked(exc) or (self.conn is not None and self.conn.in_transaction):
                raise
            self.deferred += 1
            return _LOCKED

    async def _on_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # Counted until the thread is done with it, not until the caller stops waiting: a
        # cancelled caller leaves its job behind, and the next call must queue behind that
        # job, not use the connection beside it.
        loop = asyncio.get_running_loop()
        self._queued += 1  # before the first await: later calls queue behind this one
        job = self._ex.submit(self._run, fn, self.BUSY_MS)
        job.add_done_callback(partial(self._finished, loop))
        return await asyncio.wrap_future(job)

    def _finished(self, loop: asyncio.AbstractEventLoop, _job: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed while a job ran on
            loop.call_soon_threadsafe(self._done)

    def _done(self) -> None:
        self._queued -= 1

    def _run(self, fn: Callable[[sqlite3.Connection], T], busy_ms: int) -> T:
        conn = self.conn
        if conn is None:
            conn = self.conn = connect(self._path, synchronous=self._sync)
        if busy_ms != self._busy_ms:
            conn.execute(f"PRAGMA busy_timeout={busy_ms}")
            self._busy_ms = busy_ms
        return fn(conn)

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` inside BEGIN IMMEDIATE ... COMMIT, inline while the database is free.

        The COMMIT's fsync (synchronous FULL) is waited for inline too: handing only the
        COMMIT to the thread measured slower on the tasks bench (248-272 against 274-284
        tasks/s, alternated), the hand-off costing more than the wait it frees."""
        return await self.call(partial(_body, fn=fn))

    async def close(self) -> None:
        def shut(conn: sqlite3.Connection) -> None:
            conn.close()

        if self.conn is not None:
            await self.call(shut)
            self.conn = None
        self._ex.shutdown(wait=True)


_LOCKED = object()


def _body(conn: sqlite3.Connection, *, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _locked(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY ("database is locked") or SQLITE_LOCKED ("database table is locked")."""
    return "locked" in str(exc)


class GroupCommit(Generic[I, R]):
    """Many concurrent callers, one transaction: the fsync is paid once per group.

    While one transaction is being written, new submissions queue up; the next transaction
    takes all of them. Each caller gets back its own slice of the results, or the exception
    that rolled the group back.
    """

    def __init__(self, thread: SqliteThread, work: Callable[..., list[R]]) -> None:
        self._thread = thread
        self._work = work
        self._queue: list[tuple[list[I], asyncio.Future[list[R]]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, items: list[I]) -> list[R]:
        fut: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._queue.append((items, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            flat = [item for items, _ in group for item in items]
            try:
                results = await self._thread.transaction(partial(self._work, items=flat))
            except Exception as exc:
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            i = 0
            for items, fut in group:
                if not fut.done():
                    fut.set_result(results[i : i + len(items)])
                i += len(items)

    async def wait_idle(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)
