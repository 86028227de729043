"""The voice workers' CPU pool: its processes run below the worker's priority."""

from __future__ import annotations

import asyncio
import os

from consumers.voice_worker import VoicePool


async def test_cpu_pool_processes_run_at_the_configured_lower_priority() -> None:
    pool = VoicePool(1, "cpu", nice=3)
    try:
        loop = asyncio.get_running_loop()
        child = await loop.run_in_executor(pool.pool, os.nice, 0)
        pid = await loop.run_in_executor(pool.pool, os.getpid)
    finally:
        await pool.stop()
    assert pid != os.getpid()
    assert child == min(19, os.nice(0) + 3)
