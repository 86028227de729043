"""db-poller: rows inserted into ``tasks`` by an outside system become tasks, exactly once.

An outside system inserts a row with status 'pending' and no ``state`` (the column the
projector fills). Each poll claims such rows: the claim (state -> 'submitted') and the
``task.created`` event are one unit of work guarded by the row id, so two pollers, a crash
or a retry never submit a row twice. Naive ``scheduled_time`` values (the original column
has no zone) are read in FABRIC_DB_TIMEZONE (default UTC).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import zoneinfo
from typing import TYPE_CHECKING, Any

from fabric.store.db import Unit
from producers.common import event_for

if TYPE_CHECKING:
    from fabric.app import App

__all__ = ["poll_once", "run"]

log = logging.getLogger("fabric.db_poller")

COLUMNS = [
    "id",
    "account_name",
    "platform",
    "video_path",
    "title",
    "description",
    "keywords",
    "privacy",
    "scheduled_time",
]


def _when(value: Any, zone: dt.tzinfo) -> str | None:
    if value in (None, ""):
        return None
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return when.isoformat()


def spec_from_row(row: dict[str, Any], zone: dt.tzinfo) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "task_id": str(row["id"]),
        "targets": [
            {"platform": row["platform"] or "youtube", "account": row["account_name"] or ""}
        ],
        "video": {"path": row["video_path"] or ""},
        "title": row["title"] or "",
        "description": row["description"] or "",
        "tags": [t.strip() for t in (row["keywords"] or "").split(",") if t.strip()],
        "scheduled_at": _when(row["scheduled_time"], zone),
        "source_row": {"id": str(row["id"])},
    }
    if row["privacy"]:
        spec["privacy"] = row["privacy"]
    return spec


async def poll_once(app: App, limit: int = 100) -> int:
    zone = zoneinfo.ZoneInfo(app.settings.get("FABRIC_DB_TIMEZONE") or "UTC")
    rows = await app.db.fetchall(
        f"SELECT {', '.join(COLUMNS)} FROM tasks WHERE state IS NULL AND status='pending'"
        f" ORDER BY created_at LIMIT {int(limit)}"
    )
    units = []
    for raw in rows:
        row = dict(zip(COLUMNS, raw, strict=True))
        event = event_for(app, spec_from_row(row, zone), "db-poller")
        units.append(
            Unit(
                "db-poller",
                f"row:{row['id']}",
                [("UPDATE tasks SET state='submitted' WHERE id=? AND state IS NULL", (row["id"],))],
                [app.runtime.outbox_row(event)],
            )
        )
    if not units:
        return 0
    applied = await app.runtime.transact(units)
    return sum(applied)


async def run(app: App, interval: float = 1.0, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            claimed = await poll_once(app)
            if claimed:
                log.info("submitted rows", extra={"rows": claimed})
        except Exception:
            log.exception("poll failed")
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass
