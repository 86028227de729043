"""Rebuild the read model from the log: ``fabric replay --into URL``.

Every record of ``fabric.tasks`` is read from offset 0, validated like the live projector
validates it (an event the projector dead-lettered is skipped here too), and run through the
same ``project`` function; the rows and ``projector_offsets`` are written in batches, one
transaction each. A task's events all sit in one partition, so partitions are independent.

A record whose event id was already seen is skipped, as the live projector's inbox skips
it: the log is at-least-once, and a copy appended again later (an outbox flush repeated
after a slow or lost acknowledgement) must not re-apply an old event over newer ones.
"""

from __future__ import annotations

import time
from typing import Any

from fabric.events import DecodeError, loads
from fabric.log import Log
from fabric.schemas import SchemaError, registry
from fabric.store.db import Database, Op, upsert
from fabric.store.readmodel import PROJECTED, TABLES, project

__all__ = ["read_model_rows", "replay"]

TOPIC = "fabric.tasks"


async def replay(
    log: Log, db: Database, *, topic: str = TOPIC, batch: int = 5000
) -> dict[str, Any]:
    reg = registry()
    events = skipped = duplicates = 0
    started = time.perf_counter()
    for partition in sorted(await log.end_offsets(topic)):
        offset = 0
        seen: set[str] = set()  # event ids: copies of one event share its key's partition
        while records := await log.read(topic, partition, offset, batch):
            ops: list[Op] = []
            for rec in records:
                try:
                    event = reg.parse(loads(rec.value))
                except (DecodeError, SchemaError):
                    skipped += 1
                    continue
                if event.id in seen:
                    duplicates += 1
                    continue
                seen.add(event.id)
                if event.type in PROJECTED:
                    ops.extend(project(event, db.dialect))
                    events += 1
            offset = records[-1].offset + 1
            ops.append(
                upsert(
                    db.dialect,
                    "projector_offsets",
                    ("topic", "part"),
                    {"topic": topic, "part": partition, "next_offset": offset},
                )
            )
            await db.run(ops)
    seconds = time.perf_counter() - started
    return {
        "events": events,
        "skipped": skipped,
        "duplicates": duplicates,
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds, 1) if seconds else None,
    }


async def read_model_rows(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the projected tables, in a stable order (for comparisons)."""
    order = {
        "tasks": "id",
        "uploads": "upload_id",
        "post_interactions": "id",
        "voice_runs": "task_id",
    }
    out = {}
    for table in TABLES:
        rows = await db.fetchall(f"SELECT * FROM {table} ORDER BY {order[table]}")
        out[table] = [tuple(_norm(v) for v in row) for row in rows]
    return out


def _norm(value: Any) -> Any:
    """MySQL returns datetimes and bytes where SQLite returns text: compare as text."""
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode()
    return value
