"""probe: counts ``probe.ping`` events into its kv state and logs them (a health check of the
backbone: `fabric demo` and bench/bus.py use it)."""

from __future__ import annotations

import logging
from typing import Any

from fabric.events import Event
from fabric.runtime import Consumer, Context

log = logging.getLogger("fabric.probe")


async def handle(event: Event, ctx: Context) -> None:
    seen = await ctx.get("pings") or 0
    ctx.put("pings", seen + 1)
    log.info("ping", extra={"seq": event.data["seq"], "event_id": event.id, "total": seen + 1})


def consumer(app: Any) -> Consumer:
    return Consumer("probe", ["fabric.probe"], handle, accepts=frozenset({"probe.ping"}))
