"""splitter: plans a task's voice step (ARCHITECTURE.md section 5).

For ``voice.requested``: extract the video's audio (its own rate and channels), decide about
separation, cut the audio into chunks at quiet points (with context on both sides, starting
on the engine's analysis grid), write the chunk files into the task's work directory, and
emit ``voice.planned`` (for the aggregator: chunk count, spans, files, separation) plus one
``chunk.ready`` per chunk (for the voice workers). Without separation the audio is cut while
it decodes (``fabric.voice.stream_split``) and each ``chunk.ready`` is published as soon as
its file is complete, so the workers start ~0.4 s (6 minutes of AAC) before the splitter is
done; ``voice.planned`` follows in the handler's transaction (the aggregator takes results
that arrive before their plan). A crash part-way re-announces the same chunks with the same
files: a repeated conversion, never a different result. Bad input (no audio
stream, corrupt or empty audio, an unknown engine or option, a missing or unreadable
separation model the task cannot do without) is ``voice.failed`` with the ``VoiceError``
code, and the orchestrator fails the task with it.

Files live under ``work_root(app)/<task_id>/voice/`` (the media step's per-task directory),
so the cleanup consumer removes them with the rest when the task ends. Paths are fixed per
task and every file is written under a temporary name and renamed, so a redelivered
``voice.requested`` (a crash before the commit) rewrites the same bytes; after a commit the
inbox makes a second delivery a no-op.

Separation runs per chunk on the workers (``fabric.voice.pipeline``: the separator holds its
whole input in memory, and per chunk it is spread over the workers). The splitter checks the
model once per process and model file, by separating the first second of this audio, so a
missing or unreadable model fails the task (or, where the task allows it, the task goes on
without separation and the events say so) before any worker spends time on it.

Settings: ``FABRIC_VOICE_THRESHOLD_S`` (180: longer audio is split), ``FABRIC_VOICE_CHUNK_S``
(300), ``FABRIC_VOICE_CONTEXT_S`` (1.0), ``FABRIC_VOICE_TAPER`` (0.25: four or more
chunks end in pairs halving down to this fraction; 1 makes all equal),
``FABRIC_SEPARATOR_MODEL_DIR`` ($FABRIC_HOME/models),
``FABRIC_SEPARATOR_MODEL`` (audio-separator's default BS-Roformer vocals model),
``FABRIC_SEPARATOR_STEM`` (Vocals).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import soundfile as sf

from consumers.media import work_root
from fabric.events import Event
from fabric.media import WorkDirs
from fabric.runtime import Consumer, Context, Runtime
from fabric.voice.audio import extract_audio, write_wav
from fabric.voice.engines import DEFAULT_ENGINE, get_engine
from fabric.voice.errors import VoiceError
from fabric.voice.split import (
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_CONTEXT_SECONDS,
    DEFAULT_THRESHOLD_SECONDS,
    Chunk,
    split_audio,
)
from fabric.voice.stream_split import split_while_decoding

if TYPE_CHECKING:
    from fabric.app import App
    from fabric.voice.separate import SeparationConfig

__all__ = [
    "PIPELINE_OPTIONS",
    "ModelCheck",
    "Plan",
    "VoiceSettings",
    "consumer",
    "engine_options",
    "make_plan",
]

log = logging.getLogger("fabric.splitter")

MAX_ATTEMPTS = 3  # a crash is retried this often; a VoiceError is final at once
DEFAULT_SEPARATOR_MODEL = "model_bs_roformer_ep_317_sdr_12.9755.ckpt"

PIPELINE_OPTIONS = frozenset(
    {"engine", "separate", "continue_without_separation", "vocal_gain", "background_gain"}
)
"""Task voice options that steer the pipeline; the others go to the engine."""

_ALIASES = {"pitch": "pitch_semitones", "formant": "formant_semitones"}
_MODEL_ERRORS = frozenset({"model_missing", "model_unreadable", "separation_failed"})


def _about(event: Event, **fields: Any) -> dict[str, Any]:
    """Log fields: ``ctx.log``'s adapter replaces a call's ``extra`` on Python < 3.13, so the
    event's ids go in here together with the call's own fields."""
    return {"event_id": event.id, "task_id": event.subject, "event_type": event.type, **fields}


def engine_options(voice: Mapping[str, Any]) -> dict[str, Any]:
    """The engine's options from a task's voice options: the task says ``pitch``/``formant``
    (semitones), engines say ``pitch_semitones``/``formant_semitones``; unset (None) values
    are left to the engine's defaults; the rest pass through, so an option the engine does
    not know is its ``bad_option``, not silently dropped."""
    return {
        _ALIASES.get(k, k): v
        for k, v in voice.items()
        if k not in PIPELINE_OPTIONS and v is not None
    }


TAPER = 0.25  # 4+ chunks end with two at half length and two at a quarter: a short tail


@dataclasses.dataclass(frozen=True)
class VoiceSettings:
    threshold_s: float
    chunk_s: float
    context_s: float
    taper: float
    model_dir: str
    model: str
    stem: str

    @classmethod
    def from_app(cls, app: App) -> VoiceSettings:
        get = app.settings.get

        def number(name: str, default: float) -> float:
            raw = get(name)
            return float(raw) if raw not in (None, "") else default

        return cls(
            threshold_s=number("FABRIC_VOICE_THRESHOLD_S", DEFAULT_THRESHOLD_SECONDS),
            chunk_s=number("FABRIC_VOICE_CHUNK_S", DEFAULT_CHUNK_SECONDS),
            context_s=number("FABRIC_VOICE_CONTEXT_S", DEFAULT_CONTEXT_SECONDS),
            taper=number("FABRIC_VOICE_TAPER", TAPER),
            model_dir=str(get("FABRIC_SEPARATOR_MODEL_DIR") or app.settings.home / "models"),
            model=get("FABRIC_SEPARATOR_MODEL") or DEFAULT_SEPARATOR_MODEL,
            stem=get("FABRIC_SEPARATOR_STEM") or "Vocals",
        )

    def separation_config(self) -> SeparationConfig:
        from fabric.voice.separate import SeparationConfig

        return SeparationConfig(self.model, self.model_dir, vocals_stem=self.stem)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the splitter decided and wrote: the data of ``voice.planned`` and the chunks."""

    planned: dict[str, Any]
    chunks: list[Chunk]
    ready: list[dict[str, Any]]
    announced: int = 0  # ready[:announced] went out while splitting (emit_now)


class ModelCheck:
    """Which separation models this process has seen load and run, by file identity, so a
    model is checked once per splitter process, not once per task."""

    def __init__(self) -> None:
        self._ok: set[tuple[str, int, int]] = set()

    def check(self, config: SeparationConfig, source: Path, scratch: Path) -> None:
        """Separate the first second of ``source`` with the model (VoiceError if it cannot)."""
        from fabric.voice.separate import clear_separator_cache, separate_file

        path = Path(config.model_file_dir) / config.model_filename
        try:
            st = path.stat()
        except OSError:
            st = None
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns) if st else None
        if key is not None and key in self._ok:
            return
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            with sf.SoundFile(str(source)) as f:
                head = f.read(min(f.frames, f.samplerate), dtype="float32", always_2d=True)
                rate = f.samplerate
            probe = scratch / "head.wav"
            write_wav(probe, head, rate)
            separate_file(probe, scratch, config)  # model_missing / model_unreadable / ...
        finally:
            clear_separator_cache()  # the workers run it; do not keep a model here
            shutil.rmtree(scratch, ignore_errors=True)
        if key is not None:
            self._ok.add(key)


def make_plan(
    event: Event,
    work: Path,
    settings: VoiceSettings,
    models: ModelCheck,
    announce: Callable[[dict[str, Any]], None] | None = None,
) -> Plan:
    """Extract, check separation, split and write the chunks (blocking: run in a thread).

    With ``announce`` and no separation asked for, chunks are cut while the audio decodes
    (``split_while_decoding``) and each chunk's ``chunk.ready`` data goes to ``announce`` as
    soon as its file is complete, so workers start before the splitter is done."""
    data = event.data
    task_id = event.subject or data.get("task_id") or ""
    voice = dict(data["voice"])
    video = dict(data["video"])
    engine_name = str(voice.get("engine") or DEFAULT_ENGINE)
    engine = get_engine(engine_name, engine_options(voice))  # unknown_engine / bad_option
    resolved = dict(engine.describe()["options"])

    def ready_of(c: Chunk, count: int, sep: dict[str, Any] | None) -> dict[str, Any]:
        options: dict[str, Any] = {
            "engine_options": resolved,
            "output": str(work / "converted" / f"chunk-{c.index:04d}.wav"),
            "separation": sep,
            "stems_dir": str(work / "stems" / f"{c.index:04d}") if sep else None,
        }
        return {
            **c.as_data(), "task_id": task_id, "chunk_id": f"{task_id}:{c.index}",
            "count": count, "engine": engine_name, "options": options,
        }  # fmt: skip

    streamed = None
    if announce is not None and not voice.get("separate"):
        streamed = split_while_decoding(
            video["path"],
            work / "source.wav",
            work / "chunks",
            chunk_seconds=settings.chunk_s,
            threshold_seconds=settings.threshold_s,
            context_seconds=settings.context_s,
            align_for=engine.frame_alignment,
            taper=settings.taper,
            on_chunk=lambda c, count: announce(ready_of(c, count, None)),
        )
    separation: dict[str, Any] = {"ran": False, "model": None, "note": "not asked for"}
    sep_options: dict[str, Any] | None = None
    if streamed is not None:
        source, chunks = streamed
    else:
        source = extract_audio(video["path"], work / "source.wav")
        if voice.get("separate"):
            config = settings.separation_config()
            try:
                models.check(config, Path(source.path), work / "separation-check")
            except VoiceError as exc:
                if exc.code not in _MODEL_ERRORS or not voice.get("continue_without_separation"):
                    raise
                separation = {
                    "ran": False,
                    "model": config.model_filename,
                    "note": f"{exc.code}: {exc.message}; continued without separation "
                    "(the task allows it)",
                }
            else:
                sep_options = dataclasses.asdict(config)
                separation = {
                    "ran": True,
                    "model": config.model_filename,
                    "note": "vocals separated per chunk by the voice workers; the background is "
                    "joined at the same cuts and remixed",
                }
        chunks = split_audio(
            source.path,
            work / "chunks",
            chunk_seconds=settings.chunk_s,
            threshold_seconds=settings.threshold_s,
            context_seconds=settings.context_s,
            align=engine.frame_alignment(source.sample_rate),
            taper=settings.taper,
        )
    # No sha256 for the whole source: nothing reads it back (each chunk carries its own),
    # and hashing it would cost ~60 ms per 6 minutes of audio before any chunk can start.
    audio = {
        "path": source.path,
        "size": os.path.getsize(source.path),
        "sample_rate": source.sample_rate,
        "channels": source.channels,
        "samples": source.frames,
        "duration_s": round(source.duration, 6),
    }
    planned = {
        "chunks": len(chunks),
        "audio": audio,
        "background": None,  # separation runs per chunk: the aggregator joins the stems
        "separation": separation,
        "engine": engine_name,
        "work_dir": str(work),
        "video": video,
        "voice": voice,
        "requested_at": event.time,
        "spans": [
            {"index": c.index, "start": c.start, "end": c.end, "ctx_start": c.ctx_start,
             "ctx_end": c.ctx_end}
            for c in chunks
        ],
    }  # fmt: skip
    ready = [ready_of(c, len(chunks), sep_options) for c in chunks]
    return Plan(planned, chunks, ready, announced=len(chunks) if streamed else 0)


def consumer(app: App) -> Consumer:
    settings = VoiceSettings.from_app(app)
    dirs = WorkDirs(work_root(app))
    models = ModelCheck()

    async def handle(event: Event, ctx: Context) -> None:
        task_id = event.subject or ""
        try:
            work = dirs.create(task_id) / "voice"
            work.mkdir(mode=0o700, exist_ok=True)
            loop = asyncio.get_running_loop()
            early: list[concurrent.futures.Future[Event]] = []

            def announce(data: dict[str, Any]) -> None:  # called from the splitting thread
                coro = ctx.emit_now("chunk.ready", data)
                early.append(asyncio.run_coroutine_threadsafe(coro, loop))

            try:
                plan = await asyncio.to_thread(make_plan, event, work, settings, models, announce)
            finally:
                await asyncio.gather(*(asyncio.wrap_future(f) for f in early))
        except VoiceError as exc:
            log.warning(
                "voice step refused", extra=_about(event, code=exc.code, reason=exc.message)
            )
            ctx.emit("voice.failed", exc.as_data())
            return
        except Exception as exc:  # a crash, a full disk: retried, then the task fails
            if ctx.attempt < MAX_ATTEMPTS:
                raise
            log.exception("splitting failed for good", extra=_about(event))
            ctx.emit("voice.failed", {"code": "split_failed",
                                      "message": f"{type(exc).__name__}: {exc}"})  # fmt: skip
            return
        ctx.emit("voice.planned", plan.planned)
        for data in plan.ready[plan.announced :]:
            ctx.emit("chunk.ready", data)
        log.info(
            "voice planned",
            extra=_about(
                event, chunks=len(plan.chunks), separation=plan.planned["separation"]["ran"]
            ),
        )

    async def warm(rt: Runtime) -> None:
        """Import the default engine's stack (numpy, scipy.fft, pyworld: ~0.2 s) before the
        first task: the first chunk is cut only after the plan has the engine's frame
        alignment, so a cold splitter held every worker back that long."""
        await asyncio.to_thread(get_engine, DEFAULT_ENGINE)

    return Consumer("splitter", ["fabric.voice"], handle, batch_max=1, max_attempts=MAX_ATTEMPTS,
                    accepts=frozenset({"voice.requested"}), on_start=warm)  # fmt: skip
