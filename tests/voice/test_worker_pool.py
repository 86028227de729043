"""The voice workers' CPU pool: its processes run below the worker's priority and keep freed
engine memory for the next chunk."""

from __future__ import annotations

import asyncio
import multiprocessing
import os

import numpy as np

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


def _mb_kept_after_free() -> float:
    """Resident MB a freed 64 MB array leaves behind (kept for the next one)."""

    def rss() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    a = np.ones(8_000_000)
    full = rss()
    del a
    return 64 - (full - rss())


async def test_cpu_pool_processes_keep_freed_memory_for_the_next_chunk() -> None:
    loop = asyncio.get_running_loop()
    pool = VoicePool(1, "cpu")
    try:
        kept = await loop.run_in_executor(pool.pool, _mb_kept_after_free)
    finally:
        await pool.stop()
    with multiprocessing.get_context("spawn").Pool(1) as plain:  # glibc's defaults
        default = plain.apply(_mb_kept_after_free)
    assert default < 8  # unmapped on free: the next array faults its pages in again
    assert kept > 56
