"""projector: keeps the read model (tasks, uploads, post_interactions) up to date.

Each event's rows, its inbox row and the projector's own offset (``projector_offsets``) are
written in one transaction; ``fabric replay --into URL`` runs the same ``project`` function
over the log from offset 0 into an empty database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric.events import Event
from fabric.runtime import Consumer, Context
from fabric.store.db import upsert
from fabric.store.readmodel import PROJECTED, project

if TYPE_CHECKING:
    from fabric.app import App

__all__ = ["consumer"]


def consumer(app: App) -> Consumer:
    async def handle(event: Event, ctx: Context) -> None:
        dialect = ctx.db.dialect
        for sql, params in project(event, dialect):
            ctx.sql(sql, params)
        rec = ctx.record
        ctx.sql(
            *upsert(
                dialect,
                "projector_offsets",
                ("topic", "part"),
                {"topic": rec.topic, "part": rec.partition, "next_offset": rec.offset + 1},
            )
        )

    return Consumer(
        "projector",
        ["fabric.tasks"],
        handle,
        accepts=frozenset(PROJECTED),
        precheck=False,
        linger_s=0.02,
    )
