"""voice: the voice workers. One ``chunk.ready`` in, one ``chunk.converted`` out.

The engine runs in an executor so the event loop keeps heartbeating and committing while a
chunk converts for seconds or minutes: a process pool on CPU (``FABRIC_VOICE_PROCESSES``,
default 1, so ``python -m fabric consume voice`` started twice is two workers sharing the
chunks through the consumer group), or one thread per GPU when torch sees CUDA
(``FABRIC_VOICE_DEVICE``: ``auto`` (default), ``cpu`` or ``cuda``). Pool processes are started
with ``spawn`` (a fork of a process with SQLite and event-loop threads can inherit a held
lock) and warmed up before the worker joins its group; each keeps its engines and separator
models loaded (``fabric.voice.pipeline`` caches them), so only the first chunk pays for it.
CPU pool processes run at the lowest priority (``FABRIC_VOICE_NICE``, default 19, 0 to keep
the worker's): conversion is batch work that fills every core, and the latency-bound work
around it (heartbeats that keep leases, the aggregator's in-order encode, publishing) should
get a core first. With the splitter's taper, nice 5 cut the time from the last converted
chunk to the finished video from 1.7-2.5 s to 0.6-1.3 s (bench/voice.py ``timeline_s.tail_s``,
6 minutes, 2 workers, two cores). On a machine where the AAC encoder is slower next to the
engine (12 s of encoding against 26 s of engine per 6 minutes), nice 5 left it behind:
tails 0.93, 0.99 and 3.2 s, against 0.90 and 1.70 at nice 10 and 0.43-0.96 (5 runs) at 19.

Pool processes are not pinned to cores. Tried (stop 18): each pool process claimed a free core
with an ``flock`` and kept it. Two engines pinned side by side spend what one spends alone
(``bench/voice_engine.py``, 120 s each: 0.93-1.05x), and pinned in the pipeline they spent
0.95-1.05x the unchunked engine's core-seconds (mean 1.016, 8 runs) against 0.99-1.15x
floating (mean 1.049). But chunks reach workers by partition (chunk ``i`` to worker
``i mod 2``), and a pinned engine cannot leave the core where the encoder happens to run:
in 1 run of 8 one worker fell behind and the other core idled for 3.5 core-seconds. Speedup
(bench/voice.py, pairs alternated): pinned 1.69-1.88 (mean 1.834), floating 1.67-1.95
(mean 1.814), within the noise. A 1 MB pipe to the encoder (fewer wake-ups, so fewer
preemptions of the engines) did as little: 1.71-2.04 against 1.66-2.08, 6 pairs each.

A chunk is never lost or done twice, even when a worker is killed mid-chunk:

* the ``chunk.ready`` record is committed only after ``chunk.converted`` is staged with the
  worker's inbox row, so a killed worker's chunk goes to another member of the group when
  its lease runs out, and the inbox turns a second delivery after a commit into a no-op;
* output paths are fixed by the splitter and written under a temporary name then renamed,
  so a re-run overwrites the same file with the same bytes (engines are deterministic);
* the aggregator counts chunks by index, so even a duplicate ``chunk.converted`` (two
  members racing past a lease) changes nothing.

Pool processes die with their worker (``PR_SET_PDEATHSIG``) instead of finishing a chunk
nobody will report. A ``VoiceError`` (an unreadable chunk, a bad option, a separator model
this host cannot load) is ``chunk.failed`` at once; a crash (a pool process killed by the OOM
killer, say) is retried, then ``chunk.failed``. Either way the aggregator fails the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import itertools
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from fabric.events import Event
from fabric.files import sha256_file
from fabric.runtime import Consumer, Context, Runtime
from fabric.voice.errors import VoiceError

if TYPE_CHECKING:
    from fabric.app import App
    from fabric.log import Record

__all__ = ["WORKER_ID", "VoicePool", "consumer", "convert_chunk"]

log = logging.getLogger("fabric.voice")

MAX_ATTEMPTS = 3  # a crash is retried this often; a VoiceError is final at once
WORKER_ID = f"{socket.gethostname()}-{os.getpid()}"
_PR_SET_PDEATHSIG = 1


def _about(event: Event, **fields: Any) -> dict[str, Any]:
    """Log fields: ``ctx.log``'s adapter replaces a call's ``extra`` on Python < 3.13, so the
    event's ids go in here together with the call's own fields."""
    return {"event_id": event.id, "task_id": event.subject, "event_type": event.type, **fields}


def convert_chunk(job: dict[str, Any]) -> dict[str, Any]:
    """Separate (when asked) and convert one chunk; runs in a pool process or GPU thread.

    Top-level with a plain dict in and out, so a ``ProcessPoolExecutor`` can pickle it.
    """
    from fabric.voice.audio import CheckedRead
    from fabric.voice.pipeline import process_chunk, separate_chunk

    chunk = job["path"]
    voice_in, background, separation_s = chunk, None, 0.0
    expected: str | None = job["sha256"]  # checked while the engine runs (process_chunk)
    if job.get("separation"):
        CheckedRead(chunk, job["sha256"]).check()  # before the separator reads it
        expected = None  # the engine reads the separated vocals, not the chunk
        from fabric.voice.separate import SeparationConfig

        t0 = time.perf_counter()
        voice_in, background, _model = separate_chunk(
            chunk, job["stems_dir"], SeparationConfig(**job["separation"])
        )
        separation_s = time.perf_counter() - t0
    out, engine_s = process_chunk(voice_in, job["output"], job["engine"], job["options"],
                                  keep=job.get("keep"), sha256=expected)  # fmt: skip
    if not Path(chunk).exists():
        _ended(Path(chunk))
        raise VoiceError("not_found", f"the task's work directory was removed while {chunk} "
                         "was being converted (the task ended)")  # fmt: skip
    return {
        "path": out,
        "size": os.path.getsize(out),
        "engine_seconds": engine_s,
        "background": background,
        "separation_seconds": separation_s,
    }


def _sha256(path: str) -> str:
    """A converted chunk's sha256 (``fabric.files``: this process never imports numpy);
    ``not_found`` when the task ended (its work directory removed) since it was written."""
    try:
        return sha256_file(path)
    except FileNotFoundError:
        raise VoiceError("not_found", f"the converted chunk {path} is gone (the task "
                         "ended)") from None  # fmt: skip


def _ended(chunk: Path) -> None:
    """The task ended (its work directory was removed) while its chunk was converting, and
    writing the output made the directories again: remove what this worker wrote, so no
    task directory outlives its task. ``chunk`` is ``<root>/<task>/voice/chunks/<name>``."""
    voice_dir = chunk.parent.parent
    shutil.rmtree(voice_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        voice_dir.parent.rmdir()  # the task's directory, only when nothing else is in it


def _pool_init(parent: int, nice: int) -> None:
    """Pool process initializer: get SIGKILL when the worker dies (Linux), so a killed
    worker's chunk is not finished by an orphan nobody listens to; lower the priority; keep
    freed engine memory for the next chunk (``keep_freed_memory``)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the worker died before prctl took effect
        os._exit(0)
    if nice > 0:
        os.nice(nice)
    from fabric.voice.engines import keep_freed_memory

    keep_freed_memory()


def _warm() -> int:
    """Import the engine stack in a pool process before the first chunk arrives."""
    from fabric.voice.engines import DEFAULT_ENGINE, get_engine
    from fabric.voice.pipeline import load_engine

    get_engine(DEFAULT_ENGINE)
    load_engine(DEFAULT_ENGINE, {})
    return os.getpid()


def _gpus(mode: str) -> int:
    """CUDA devices torch sees; 0 (CPU pool) when none, or when no NVIDIA device node exists
    (``auto`` then skips importing torch at all)."""
    if mode == "cpu":
        return 0
    if mode == "auto" and not (Path("/dev/nvidiactl").exists() or Path("/dev/nvidia0").exists()):
        return 0
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


class VoicePool:
    """The executor behind one worker: a spawn-started process pool, or a thread per GPU.

    The GPU path binds each thread to its own device with ``torch.cuda.set_device``; the
    engine cache is per process, so an engine that keeps state on a device must key its
    cache on the current device (the neural engines' concern; ``world`` is CPU-only).
    """

    def __init__(self, processes: int, device: str = "auto", nice: int = 0) -> None:
        self.gpus = _gpus(device)
        self.size = self.gpus or max(1, processes)
        self.nice = nice
        self._pool: Executor | None = None
        self._lock = threading.Lock()

    def _make(self) -> Executor:
        if self.gpus:
            counter = itertools.count()

            def bind() -> None:
                import torch

                torch.cuda.set_device(next(counter) % self.gpus)

            return ThreadPoolExecutor(self.size, thread_name_prefix="voice-gpu", initializer=bind)
        return ProcessPoolExecutor(
            self.size,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_pool_init,
            initargs=(os.getpid(), self.nice),
        )

    @property
    def pool(self) -> Executor:
        with self._lock:
            if self._pool is None:
                self._pool = self._make()
            return self._pool

    async def start(self) -> None:
        """Start and warm every pool process (so the group is joined ready to work)."""
        loop = asyncio.get_running_loop()
        pool = self.pool
        await asyncio.gather(*(loop.run_in_executor(pool, _warm) for _ in range(self.size)))

    async def run(self, job: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        pool = self.pool
        try:
            return await loop.run_in_executor(pool, convert_chunk, job)
        except BrokenProcessPool:
            self.discard(pool)  # a pool process died (OOM kill): the next try gets a new pool
            raise

    def discard(self, broken: Executor) -> None:
        with self._lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)

    async def stop(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(
                functools.partial(pool.shutdown, wait=True, cancel_futures=True)
            )


def _chunk_order(rec: Record) -> tuple[int, int]:
    """Start chunks appended together in index order. A task's chunk i is on partition
    i mod 16, so past 16 chunks the partition no longer says which comes first."""
    try:
        index = int(orjson.loads(rec.value)["data"]["index"])
    except Exception:  # not a chunk event: its turn by time; the runtime dead-letters it
        index = 0
    return rec.timestamp_ms, index


def consumer(app: App) -> Consumer:
    from fabric.voice.join import join_reach
    from fabric.voice.split import Chunk

    processes = int(app.settings.get("FABRIC_VOICE_PROCESSES") or 1)
    nice = app.settings.get("FABRIC_VOICE_NICE")
    pool = VoicePool(processes, (app.settings.get("FABRIC_VOICE_DEVICE") or "auto").lower(),
                     nice=int(nice) if nice not in (None, "") else 19)  # fmt: skip

    async def start(rt: Runtime) -> None:
        await pool.start()
        ready = {"worker": WORKER_ID, "executors": pool.size, "gpus": pool.gpus}
        log.info("voice worker ready", extra=ready)

    async def stop(rt: Runtime) -> None:
        await pool.stop()

    async def handle(event: Event, ctx: Context) -> None:
        data = event.data
        options = data["options"]
        base = {k: data[k] for k in ("task_id", "chunk_id", "index", "count")}
        job = {
            "path": data["path"], "sha256": data["sha256"], "engine": data["engine"],
            "options": options.get("engine_options") or {}, "output": options["output"],
            "separation": options.get("separation"), "stems_dir": options.get("stems_dir"),
            "keep": Chunk.from_data(data).span.keep(join_reach(data["sample_rate"])),
        }  # fmt: skip
        log.info(
            "chunk started",
            extra=_about(
                event,
                chunk_id=data["chunk_id"],
                index=data["index"],
                worker=WORKER_ID,
                attempt=ctx.attempt,
            ),
        )
        try:
            result = await pool.run(job)
            # Hashed here, not in the pool process: there the next chunk's conversion waited
            # for it (~1.8 ms per 18 s chunk); this process has little else to do.
            sha256 = await asyncio.to_thread(_sha256, result["path"])
        except VoiceError as exc:
            log.warning(
                "chunk failed",
                extra=_about(event, chunk_id=data["chunk_id"], code=exc.code, reason=exc.message),
            )
            ctx.emit("chunk.failed", {**base, **exc.as_data()})
            return
        except Exception as exc:
            if ctx.attempt < MAX_ATTEMPTS:
                raise  # the runtime backs off and runs it again
            log.exception(
                "chunk failed after retries", extra=_about(event, chunk_id=data["chunk_id"])
            )
            ctx.emit("chunk.failed", {**base, "code": "worker_error",
                                      "message": f"{type(exc).__name__}: {exc}"})  # fmt: skip
            return
        ctx.emit("chunk.converted", {
            **base, "path": result["path"], "sha256": sha256, "size": result["size"],
            "engine_seconds": round(result["engine_seconds"], 6), "worker": WORKER_ID,
            "background": result["background"],
            "separation_seconds": round(result["separation_seconds"], 6),
        })  # fmt: skip
        log.info(
            "chunk converted",
            extra=_about(
                event,
                chunk_id=data["chunk_id"],
                worker=WORKER_ID,
                engine_seconds=result["engine_seconds"],
            ),
        )

    # One record more in flight than executors: the next chunk waits in the pool's queue
    # while the previous one commits, so a pool process never idles between chunks.
    return Consumer("voice", ["fabric.chunks"], handle, accepts=frozenset({"chunk.ready"}),
                    start_order=_chunk_order,
                    ordered=False, concurrency=pool.size + 1, batch_max=16,
                    max_attempts=MAX_ATTEMPTS, on_start=start, on_stop=stop)  # fmt: skip
