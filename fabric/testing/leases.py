"""Who holds a consumer group's partitions on the embedded log, read from its file: tests and
benchmarks wait for every member process to hold its share before they start measuring."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

__all__ = ["holders"]


def holders(log_db: Path | str, group: str, topic: str) -> set[str]:
    """Members holding a live lease on ``topic`` in ``group`` (empty before the log exists)."""
    conn = sqlite3.connect(f"file:{log_db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT owner FROM leases WHERE grp=? AND topic=? AND owner IS NOT NULL"
            " AND expires > ?",
            (group, topic, time.time()),
        ).fetchall()
    except sqlite3.OperationalError:  # no file or no leases table yet
        return set()
    finally:
        conn.close()
    return {r[0] for r in rows}
