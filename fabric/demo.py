"""The backbone demo: events through the embedded log and a consumer group, a bad record
dead-lettered and re-driven once fixed. (The task-lifecycle demo replaces this.)"""

from __future__ import annotations

import argparse
import asyncio
import time

from fabric.app import App
from fabric.config import Settings
from fabric.dlq import list_dead_letters, redrive
from fabric.events import encode, new_event

__all__ = ["run_demo"]


async def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    from consumers import load

    probe = load("probe", settings)
    async with App(settings) as app:
        events = [
            new_event(
                "probe.ping", {"seq": i, "sent_at_ms": time.time() * 1000}, subject=f"demo-{i % 2}"
            )
            for i in range(5)
        ]
        await app.runtime.bus.publish(*events)
        bad = new_event("probe.ping", {"seq": -1}, subject="demo-bad")  # breaks the schema
        await app.log.publish("fabric.probe", "demo-bad", encode(bad))
        await app.log.publish("fabric.probe", "demo-bad", b"\x00 not json")
        print(f"published 5 pings and 2 bad records to {settings.log_url}")

        stop = asyncio.Event()
        task = asyncio.create_task(app.runtime.run([probe], stop))
        worker = app.runtime.workers
        while not worker or worker["probe"].stats.handled + worker["probe"].stats.dlq < 7:
            await asyncio.sleep(0.05)
        dead = await list_dead_letters(app.log)
        for d in dead:
            print(f"dead letter {d.id}: {d.data['code']}: {d.data['reason'][:70]}")
        fixed = next(d for d in dead if d.data["code"] == "schema_violation")
        await redrive(
            app.runtime.bus, fixed, encode(new_event("probe.ping", {"seq": 99}, subject="demo-bad"))
        )
        while worker["probe"].stats.handled < 6:
            await asyncio.sleep(0.05)
        stop.set()
        await task
        stats = app.runtime.stats()["probe"]
        print(f"probe consumer: {stats}")
        print(f"open dead letters: {len(await list_dead_letters(app.log))}")
    return 0
