"""fabric._sqlite: several processes may open a new database file at the same time; calls run
inline while the database is free and on the worker thread while another process locks it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from fabric._sqlite import SqliteThread, connect


def test_simultaneous_opens_of_a_new_file_all_switch_to_wal(tmp_path: Path) -> None:
    """Four connections open the same fresh rollback-journal file behind a barrier, 30 times.

    The switch to WAL needs the file to itself; SQLite answers "database is locked" at once
    (no busy timeout) to some of simultaneous switchers: plain ``sqlite3.connect`` +
    ``PRAGMA journal_mode=WAL`` failed 3 of these 120 opens here. ``connect`` tries again.
    """
    errors: list[str] = []
    modes: set[str] = set()
    for round_ in range(30):
        path = tmp_path / f"{round_}.db"
        init = sqlite3.connect(path)
        init.execute("CREATE TABLE t (x)")
        init.commit()
        init.close()
        barrier = threading.Barrier(4)

        def open_it(p: Path = path, b: threading.Barrier = barrier) -> None:
            b.wait()
            try:
                conn = connect(str(p))
                modes.add(conn.execute("PRAGMA journal_mode").fetchone()[0])
                conn.close()
            except sqlite3.Error as e:
                errors.append(str(e))

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert modes == {"wal"}


async def test_calls_run_inline_and_go_to_the_thread_while_another_writer_holds_the_lock(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "t.db")
    t = SqliteThread(path, "t", "FULL")
    await t.transaction(lambda c: c.execute("CREATE TABLE t (x)"))
    loop_thread = threading.get_ident()
    ran_on: list[int] = []

    def insert(conn: sqlite3.Connection) -> int:
        ran_on.append(threading.get_ident())
        return conn.execute("INSERT INTO t VALUES (1)").rowcount

    assert await t.transaction(insert) == 1
    assert ran_on == [loop_thread] and t.deferred == 0

    other = sqlite3.connect(path, isolation_level=None)  # another process's writer
    other.execute("BEGIN IMMEDIATE")
    pending = asyncio.create_task(t.transaction(insert))
    read = asyncio.create_task(t.call(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()))
    for _ in range(20):  # the loop keeps running: nothing waits in SQLite's busy handler on it
        await asyncio.sleep(0)
    assert not pending.done() and t.deferred == 1
    assert not read.done()  # queued behind the deferred write, in order, on the thread
    other.execute("COMMIT")
    other.close()
    assert await pending == 1
    assert await read == (2,)
    assert ran_on[1] != loop_thread

    assert await t.transaction(insert) == 1  # the lock is gone: inline again
    assert ran_on[2] == loop_thread
    assert await t.call(lambda c: c.execute("PRAGMA busy_timeout").fetchone()) == (0,)
    await t.close()


async def test_a_cancelled_caller_leaves_its_job_queued_ahead_of_later_calls(
    tmp_path: Path,
) -> None:
    """The worker thread runs on a job whose caller stopped waiting; until the job ends,
    calls must queue behind it, not use the connection beside it from the event loop."""
    t = SqliteThread(str(tmp_path / "t.db"), "t", "FULL")
    await t.transaction(lambda c: c.execute("CREATE TABLE t (x)"))
    started, release = threading.Event(), threading.Event()

    def slow_write(conn: sqlite3.Connection) -> None:
        started.set()
        release.wait(10)
        conn.execute("INSERT INTO t VALUES (1)")

    write = asyncio.create_task(t.call(slow_write, inline=False))
    await asyncio.to_thread(started.wait, 10)
    write.cancel()
    count = asyncio.create_task(t.call(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()))
    for _ in range(20):
        await asyncio.sleep(0)
    assert write.cancelled() and not count.done()
    release.set()
    assert await count == (1,)  # after the cancelled caller's job, on the same thread
    await t.close()
