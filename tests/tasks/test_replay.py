"""`fabric replay --into` rebuilds the read model row for row (SQLite and MariaDB)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fabric.events import loads
from fabric.store.db import open_db
from fabric.store.replay import read_model_rows, replay
from tests.conftest import ROOT
from tests.tasks.harness import Harness

ACCOUNTS = {
    "steady": {},
    "once": {"fail_first": 1},
    "flaky": {"fail_rate": 0.4},
    "broken": {"fail_permanent": True},
    "slowly": {"fail_first": 4},
}


async def run_tasks(h: Harness, video: Path, n: int) -> None:
    for name, settings in ACCOUNTS.items():
        await h.account(name, **settings)
    names = list(ACCOUNTS)
    ids = [
        await h.create(
            video, names[i % len(names)], comment=f"c{i}" if i % 4 == 0 else None, like=i % 5 == 0
        )
        for i in range(n)
    ]
    await h.wait(ids, timeout=600)
    await h.stop()  # the projector has caught up once every task is terminal


async def assert_replay_equal(h: Harness, into: str) -> None:
    live = await read_model_rows(h.app.db)
    target = open_db(into)
    await target.start()
    try:
        result = await replay(h.app.log, target, topic=h.app.runtime.bus.topic("fabric.tasks"))
        rebuilt = await read_model_rows(target)
    finally:
        await target.close()
    assert result["skipped"] == 0 and result["events"] > 0
    for table, rows in live.items():
        assert rebuilt[table] == rows, table
    assert len(live["tasks"]) == 500
    states = {r[0] for r in await h.app.db.fetchall("SELECT state FROM tasks")}
    assert {"completed", "failed"} <= states
    retried = await h.app.db.fetchall("SELECT COUNT(*) FROM tasks WHERE retry_count > 0")
    assert retried[0][0] > 100
    assert len(live["post_interactions"]) > 0


async def test_replay_into_sqlite_equals_the_live_read_model(
    harness: Callable[..., Harness], video: Path, tmp_path: Path
) -> None:
    async with harness() as h:
        await run_tasks(h, video, 500)
        await assert_replay_equal(h, f"sqlite:///{tmp_path}/rebuilt.db")


@pytest.mark.mariadb
async def test_replay_into_mariadb_equals_the_live_read_model(
    harness: Callable[..., Harness], video: Path, mysql_database: Callable[[], str]
) -> None:
    async with harness(db_url=mysql_database()) as h:
        await run_tasks(h, video, 500)
        await assert_replay_equal(h, mysql_database())


def test_replay_cli_refuses_a_database_that_has_tasks(tmp_path: Path) -> None:
    db = tmp_path / "has.db"
    import sqlite3

    from fabric.store.db import MIGRATIONS

    conn = sqlite3.connect(db)
    conn.executescript((MIGRATIONS / "sqlite" / "0002_read_model.sql").read_text())
    conn.execute("INSERT INTO tasks (id, status) VALUES ('x', 'pending')")
    conn.commit()
    conn.close()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fabric",
            "--home",
            str(tmp_path / "home"),
            "replay",
            "--into",
            f"sqlite:///{db}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2 and "already has tasks" in result.stderr


async def test_replay_skips_a_repeated_copy_of_an_event(
    harness: Callable[..., Harness], video: Path, tmp_path: Path
) -> None:
    """The log is at-least-once: a copy of ``media.prepared`` appended again after the
    upload failed is a no-op for the live projector (its inbox) and must be one for replay,
    or it clears the upload's error (seen once in CI on MariaDB)."""
    async with harness() as h:
        await run_tasks(h, video, 5)  # one task per account; "broken" fails permanently
        live = await read_model_rows(h.app.db)
        topic = h.app.runtime.bus.topic("fabric.tasks")
        failed = {r[0] for r in await h.app.db.fetchall("SELECT task_id FROM uploads"
                                                        " WHERE error IS NOT NULL")}  # fmt: skip
        assert failed
        copy = None
        for partition in await h.app.log.end_offsets(topic):
            for rec in await h.app.log.read(topic, partition, 0, 10_000):
                obj = loads(rec.value)
                if obj["type"] == "media.prepared" and obj["subject"] in failed:
                    copy = rec
        assert copy is not None
        await h.app.log.publish(topic, copy.key, copy.value, partition=copy.partition)
        target = open_db(f"sqlite:///{tmp_path}/rebuilt.db")
        await target.start()
        try:
            result = await replay(h.app.log, target, topic=topic)
            rebuilt = await read_model_rows(target)
        finally:
            await target.close()
    assert rebuilt == live
    assert result["duplicates"] == 1
