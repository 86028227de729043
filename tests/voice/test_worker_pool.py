"""The voice workers' CPU pool: its processes run below the worker's priority and keep freed
engine memory for the next chunk."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from consumers.voice_worker import VoicePool, _sha256
from fabric.voice.audio import sha256_file
from fabric.voice.errors import VoiceError


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


def test_worker_hashes_the_converted_file_or_reports_it_gone(tmp_path: Path) -> None:
    """The worker process hashes each converted chunk (the pool process no longer does); a
    file removed with its task's work directory before that is ``not_found``, which ends
    the chunk like the pool's own ``not_found`` does, instead of a retried crash."""
    out = tmp_path / "chunk-0000.wav"
    out.write_bytes(os.urandom(3 << 20))
    assert _sha256(str(out)) == sha256_file(out)
    out.unlink()
    with pytest.raises(VoiceError) as err:
        _sha256(str(out))
    assert err.value.code == "not_found"
