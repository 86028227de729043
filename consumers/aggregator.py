"""aggregator: puts a task's converted chunks back together (ARCHITECTURE.md section 5).

Reads ``fabric.chunk-results`` (keyed by task, so one task's results arrive in order at one
member). Its state is per task in the consumer's kv store, committed with the inbox, never
only in memory: ``voice.planned`` stores the plan (spans, files, separation), each
``chunk.converted`` records its chunk by index (a duplicate changes nothing) and emits
``voice.progress`` (done / total), ``chunk.failed`` ends the step with ``voice.failed``. When
every chunk is in, the audio is joined (exact length, to the sample), remixed with the
separated background when separation ran (``vocal_gain``/``background_gain`` from the task's
voice options), muxed into the video (video stream copied, audio AAC) under the task's work
directory, and ``voice.assembled`` carries the new video on to media preparation.

Streaming. AAC encoding is slow next to the ``world`` engine (see ``fabric.voice.stream``), so
without separation the join and the mux run while chunks are still being converted: an
in-memory ``Assembly`` per task feeds each chunk, in index order, as soon as it is recorded,
through ``StreamJoiner`` into an ffmpeg process, and the last chunk's handler only waits for
that chunk's share. The Assembly is an accelerator, not state: after a restart the next
result of the task builds a new one from the kv state and the chunk files on disk (the same
output, sample for sample). At most ``FABRIC_VOICE_STREAMS`` (4) tasks stream at once; the
others are assembled when their last chunk arrives. With separation the remix needs the
whole mix's peak first (``remix`` limits it as a whole), so it runs after the last chunk.

Heavy work runs in threads (the joiner and ffmpeg) so the event loop keeps heartbeating. The
handler of the last chunk waits for the assembly, so other tasks' results on the same
partition wait that long too (seconds with streaming).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fabric.events import Event
from fabric.runtime import Consumer, Context, Runtime
from fabric.timeutil import parse
from fabric.voice.audio import sha256_file
from fabric.voice.errors import VoiceError
from fabric.voice.split import Span
from fabric.voice.stream import MuxStream, StreamJoiner, muxed_suffix

if TYPE_CHECKING:
    from fabric.app import App

__all__ = ["Aggregator", "Assembly", "consumer"]

log = logging.getLogger("fabric.aggregator")

MAX_ATTEMPTS = 3  # a crash is retried this often; a VoiceError is final at once
HANDLED = frozenset({"voice.planned", "chunk.converted", "chunk.failed"})


def _about(event: Event, **fields: Any) -> dict[str, Any]:
    """Log fields: ``ctx.log``'s adapter replaces a call's ``extra`` on Python < 3.13, so the
    event's ids go in here together with the call's own fields."""
    return {"event_id": event.id, "task_id": event.subject, "event_type": event.type, **fields}


def _spans(plan: dict[str, Any]) -> list[Span]:
    spans = plan.get("spans")
    if not spans or len(spans) != plan["chunks"]:
        raise VoiceError("bad_chunks", "the plan does not list every chunk's span")
    return [Span(s["index"], s["start"], s["end"], s["ctx_start"], s["ctx_end"]) for s in spans]


def output_path(plan: dict[str, Any]) -> Path:
    """Where the voiced video goes: the task's voice work directory, the source's container."""
    return Path(plan["work_dir"]) / f"video{muxed_suffix(plan['video']['path'])}"


class _Aborted(Exception):
    pass


class Assembly:
    """Join and mux one task's chunks in a thread, each as soon as it and its predecessors
    are in; ``offer`` chunks in any order, await ``result()`` for the finished video."""

    def __init__(self, task_id: str, plan: dict[str, Any], bitrate: str) -> None:
        self.task_id = task_id
        self.plan = plan
        self.out = output_path(plan)
        self.bitrate = bitrate
        self.spans = _spans(plan)
        self._paths: dict[int, str] = {}
        self._cond = threading.Condition()
        self._aborted = False
        self._sink: MuxStream | None = None
        self._future: concurrent.futures.Future[Path] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, name=f"assemble-{task_id[:12]}",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def offer(self, index: int, path: str) -> None:
        with self._cond:
            if index not in self._paths:
                self._paths[index] = path
                self._cond.notify()

    async def result(self) -> Path:
        return await asyncio.wrap_future(self._future)

    def abort(self) -> None:
        """Stop: kill ffmpeg, remove its partial file; ``result()`` raises."""
        with self._cond:
            self._aborted = True
            sink = self._sink
            self._cond.notify()
        if sink is not None:
            sink.abort()

    def _next(self, k: int) -> str:
        with self._cond:
            while k not in self._paths and not self._aborted:
                self._cond.wait()
            if self._aborted:
                raise _Aborted(self.task_id)
            return self._paths[k]

    def _run(self) -> None:
        audio = self.plan["audio"]
        joiner: StreamJoiner | None = None
        try:
            for k in range(len(self.spans)):
                path = self._next(k)
                if joiner is None:  # ffmpeg starts with the first chunk, not with the plan
                    sink = MuxStream(self.plan["video"]["path"], self.out,
                                     sample_rate=audio["sample_rate"], channels=audio["channels"],
                                     bitrate=self.bitrate)  # fmt: skip
                    with self._cond:
                        self._sink = sink
                        aborted = self._aborted
                    if aborted:
                        raise _Aborted(self.task_id)
                    joiner = StreamJoiner(self.spans, sink.write,
                                          sample_rate=audio["sample_rate"],
                                          channels=audio["channels"])  # fmt: skip
                joiner.add(path)
            assert joiner is not None and joiner.done and self._sink is not None
            if joiner.position != audio["samples"]:
                raise VoiceError("bad_chunks", f"joined {joiner.position} samples, the source "
                                 f"has {audio['samples']}")  # fmt: skip
            self._future.set_result(self._sink.close())
        except BaseException as exc:
            if self._sink is not None:
                self._sink.abort()
            self._future.set_exception(exc)
        finally:
            if joiner is not None:
                joiner.close()


def _remixed(plan: dict[str, Any], chunks: dict[str, Any], bitrate: str) -> tuple[Path, str]:
    """With separation: join the converted vocals and the backgrounds at the same cuts, remix
    them with the task's gains, mux. Returns the video and a note about the remix."""
    from fabric.voice.join import join_chunks
    from fabric.voice.mux import mux_audio
    from fabric.voice.separate import remix

    spans = _spans(plan)
    order = [chunks[str(s.index)] for s in spans]
    if any(not c.get("background") for c in order):
        raise VoiceError("bad_chunks", "separation ran but a chunk came back without background")
    work = Path(plan["work_dir"])
    voice = join_chunks(spans, [c["path"] for c in order], work / "voice.wav")
    bed = join_chunks(spans, [c["background"] for c in order], work / "background.wav")
    if voice.frames != plan["audio"]["samples"]:
        raise VoiceError("bad_chunks", f"joined {voice.frames} samples, the source has "
                         f"{plan['audio']['samples']}")  # fmt: skip
    options = plan.get("voice") or {}
    vg = float(options.get("vocal_gain", 1.0))
    bg = float(options.get("background_gain", 1.0))
    mixed = remix(voice.path, bed.path, work / "mix.wav", vg, bg)
    out = mux_audio(plan["video"]["path"], mixed.path, output_path(plan), bitrate=bitrate)
    note = f"remixed with vocal_gain {vg:g} and background_gain {bg:g}"
    if mixed.gain < 1.0:
        note += f", scaled by {mixed.gain:.3f} to keep the mix's peak under full scale"
    return out, note


def _describe(path: Path) -> dict[str, Any]:
    """The voiced video by reference. Without its duration: ffprobe took 65-70 ms of the
    tail (the last chunk to ``voice.assembled``), and media preparation, next, probes the
    video anyway (``media.prepared`` carries the duration)."""
    return {"path": str(path), "sha256": sha256_file(path), "size": path.stat().st_size}


class Aggregator:
    def __init__(self, app: App) -> None:
        get = app.settings.get
        self.streams = int(get("FABRIC_VOICE_STREAMS") or 4)
        self.bitrate = get("FABRIC_VOICE_AUDIO_BITRATE") or "192k"
        self.assemblies: dict[str, Assembly] = {}

    # -- in-memory accelerators ----------------------------------------------------------
    def _assembly(self, task_id: str, state: dict[str, Any], final: bool) -> Assembly | None:
        """The task's Assembly with every recorded chunk offered; a new one after a
        restart; None with separation, or when too many tasks stream already."""
        plan = state["plan"]
        if plan["separation"].get("ran"):
            return None
        current = self.assemblies.get(task_id)
        if current is None:
            if not final and len(self.assemblies) >= self.streams:
                return None
            current = self.assemblies[task_id] = Assembly(task_id, plan, self.bitrate)
        for index, chunk in state["chunks"].items():
            current.offer(int(index), chunk["path"])
        return current

    def _drop(self, task_id: str) -> None:
        current = self.assemblies.pop(task_id, None)
        if current is not None:
            current.abort()

    async def stop(self, rt: Runtime) -> None:
        for task_id in list(self.assemblies):
            self._drop(task_id)

    async def _finish(self, task_id: str, state: dict[str, Any]) -> tuple[Path, str | None]:
        plan = state["plan"]
        if not await asyncio.to_thread(os.path.isdir, plan["work_dir"]):  # the task ended
            self._drop(task_id)
            raise VoiceError("not_found", f"the work directory {plan['work_dir']} is gone")
        if plan["separation"].get("ran"):
            return await asyncio.to_thread(_remixed, plan, state["chunks"], self.bitrate)
        assembly = self._assembly(task_id, state, final=True)
        assert assembly is not None
        try:
            return await assembly.result(), None
        finally:
            self.assemblies.pop(task_id, None)

    # -- events --------------------------------------------------------------------------
    async def handle(self, event: Event, ctx: Context) -> None:
        data = event.data
        task_id = event.subject or data.get("task_id") or ""
        key = f"voice:{task_id}"
        state = await ctx.get(key) or {"status": "collecting", "plan": None, "chunks": {}}
        if state["status"] != "collecting":
            return  # the step is over: late or repeated results change nothing
        if event.type == "chunk.failed":
            self._drop(task_id)
            state["status"] = "failed"
            message = f"chunk {data['index'] + 1} of {data['count']}: {data['message']}"
            ctx.emit("voice.failed", {"code": data["code"], "message": message})
            ctx.put(key, state)
            return
        if event.type == "voice.planned":
            if state["plan"] is not None:
                return
            state["plan"] = {**data, "planned_at": event.time}
        else:
            index = str(data["index"])
            if index in state["chunks"]:
                return  # counted by index: a second conversion of a chunk changes nothing
            state["chunks"][index] = {
                "path": data["path"], "sha256": data["sha256"],
                "engine_seconds": data["engine_seconds"], "worker": data.get("worker"),
                "background": data.get("background"),
                "separation_seconds": data.get("separation_seconds", 0.0),
            }  # fmt: skip
        plan = state["plan"]
        if plan is None:  # a result before its plan (possible on Kafka): wait for the plan
            ctx.put(key, state)
            return
        done, total = len(state["chunks"]), int(plan["chunks"])
        if done:
            ctx.emit("voice.progress", {"done": done, "total": total})
        if done < total:
            with contextlib.suppress(VoiceError):  # a bad plan fails at the end, with a reason
                self._assembly(task_id, state, final=False)
            ctx.put(key, state)
            return
        try:
            video, note = await self._finish(task_id, state)
            described = await asyncio.to_thread(_describe, video)
        except VoiceError as exc:
            log.warning(
                "voice assembly failed", extra=_about(event, code=exc.code, reason=exc.message)
            )
            state["status"] = "failed"
            ctx.emit("voice.failed", exc.as_data())
            ctx.put(key, state)
            return
        except Exception as exc:
            if ctx.attempt < MAX_ATTEMPTS:
                raise
            log.exception("voice assembly failed for good", extra=_about(event))
            state["status"] = "failed"
            ctx.emit("voice.failed", {"code": "assembly_failed",
                                      "message": f"{type(exc).__name__}: {exc}"})  # fmt: skip
            ctx.put(key, state)
            return
        separation = dict(plan["separation"])
        if note:
            separation["note"] = f"{separation.get('note', '')}; {note}".lstrip("; ")
        started = parse(plan.get("requested_at") or plan["planned_at"])
        wall = (dt.datetime.now(dt.UTC) - started).total_seconds()
        audio = plan["audio"]
        assembled = {
            "video": described,
            "engine": plan["engine"],
            "chunks": total,
            "audio_seconds": round(audio["samples"] / audio["sample_rate"], 6),
            "engine_seconds": round(sum(c["engine_seconds"] for c in state["chunks"].values()), 6),
            "wall_seconds": round(max(0.0, wall), 3),
            "separation": separation,
        }
        ctx.emit("voice.assembled", assembled)
        state["status"] = "assembled"
        state["video"] = described
        ctx.put(key, state)
        log.info("voice assembled", extra=_about(event, chunks=total, wall_seconds=wall))


def consumer(app: App) -> Consumer:
    aggregator = Aggregator(app)
    app.runtime.services["aggregator"] = aggregator
    return Consumer("aggregator", ["fabric.chunk-results"], aggregator.handle, accepts=HANDLED,
                    max_attempts=MAX_ATTEMPTS, on_stop=aggregator.stop)  # fmt: skip
