"""Persisted intents of outside side effects, in the state database (see platforms/base.py)."""

from __future__ import annotations

import orjson

from fabric.events import utcnow
from fabric.platforms.base import Intent
from fabric.store.db import Database, upsert

__all__ = ["DbIntentStore"]


class DbIntentStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, key: str) -> Intent:
        rows = await self.db.fetchall("SELECT state FROM intents WHERE k=?", (key,))
        return Intent(key, orjson.loads(rows[0][0]) if rows else {})

    async def save(self, intent: Intent) -> None:
        row = {
            "k": intent.key,
            "state": orjson.dumps(intent.state).decode(),
            "updated_at": utcnow(),
        }
        await self.db.execute(*upsert(self.db.dialect, "intents", ("k",), row))
