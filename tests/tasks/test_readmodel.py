"""Projection rules that event order alone does not settle (SQLite and MariaDB)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fabric.events import Event
from fabric.store.db import open_db
from fabric.store.readmodel import project

TID = "task-1"
TARGET = {"platform": "local", "account": "a"}


def ev(kind: str, data: dict[str, Any], time: str) -> Event:
    return Event(kind, {"target": TARGET, **data}, subject=TID, time=time)


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'read.db'}"
    return str(request.getfixturevalue("mysql_url"))


@pytest.mark.parametrize(
    ("outcome", "data", "status"),
    [
        ("publish.completed", {"video_id": "v1", "url": "file:///v1"}, "published"),
        (
            "publish.failed",
            {"error": {"class": "permanent", "code": "x", "message": "no"}, "retryable": False},
            "failed",
        ),
    ],
)
async def test_a_late_publish_started_does_not_undo_the_uploads_outcome(
    db_url: str, outcome: str, data: dict[str, Any], status: str
) -> None:
    """publish.started is appended outside the publisher's transaction, so it can land after
    the outcome; the row keeps the outcome (and gets its start time)."""
    db = open_db(db_url)
    await db.start()
    try:
        await db.run(
            project(ev(outcome, {"attempt": 1, **data}, "2026-11-29T10:00:02Z"), db.dialect)
        )
        started = ev("publish.started", {"attempt": 1, "resuming": False}, "2026-11-29T10:00:01Z")
        await db.run(project(started, db.dialect))
        rows = await db.fetchall("SELECT status, attempts, started_at FROM uploads")
        assert [(r[0], r[1], str(r[2])[:19]) for r in rows] == [(status, 1, "2026-11-29 10:00:01")]
        # in order, the notice marks the upload as going
        await db.execute("DELETE FROM uploads")
        await db.run(project(started, db.dialect))
        rows = await db.fetchall("SELECT status, platform, account_name FROM uploads")
        assert [tuple(r) for r in rows] == [("uploading", "local", "a")]
    finally:
        await db.close()
