"""The voice steps as plain functions, and ``convert_file`` which runs them in one process.

The event pipeline drives the same functions from consumers (splitter → voice workers →
aggregator); ``convert_file`` is the reference path that tests and the benchmark compare it
with. Order of steps::

    extract_audio → split_audio → per chunk: [separate_chunk] → process_chunk
                  → join_chunks (vocals) [→ join_chunks (background) → remix] → mux

Separation runs per chunk, not on the whole file: audio-separator loads its whole input into
memory (a 10-hour file would need ~13 GB as float32), and per chunk it is also spread across
the workers, where it costs far more than the voice engine. Every chunk has context on both
sides, so the separator sees the same neighbourhood at a cut as it would in one piece, and
the background is crossfaded at the same cuts as the vocals.

``process_chunk`` and ``separate_chunk`` are top-level and take only picklable arguments, so
a ``ProcessPoolExecutor`` can run them; each worker process keeps its engines and separator
models in a module-level cache and loads each once.

The splitter must start chunk contexts on the engine's analysis grid:
``split_audio(..., align=get_engine(name, options).frame_alignment(sample_rate))``, as
``convert_file`` does. Without it the join still crossfades every seam, but a chunk's output
no longer equals the whole-file output near its cut (measured 1-8 dB local deviations with
``world`` instead of < 0.05 dB).
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from fabric.voice.audio import (
    CheckedRead,
    audio_info,
    extract_audio,
    temp_path,
    wav_bytes,
    write_atomic,
)
from fabric.voice.engines import VoiceEngine, get_engine
from fabric.voice.errors import VoiceError
from fabric.voice.join import JoinResult, join_chunks, join_reach
from fabric.voice.mux import mux_audio
from fabric.voice.separate import RemixResult, SeparationConfig, remix, separate_file
from fabric.voice.split import (
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_CONTEXT_SECONDS,
    DEFAULT_THRESHOLD_SECONDS,
    Chunk,
    split_audio,
)

__all__ = [
    "ConversionResult",
    "clear_engine_cache",
    "convert_file",
    "load_engine",
    "process_chunk",
    "separate_chunk",
]

_ENGINES: dict[tuple[str, tuple[tuple[str, Any], ...]], VoiceEngine] = {}


def _key(engine_name: str, options: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, Any], ...]]:
    return engine_name, tuple(sorted((k, repr(v)) for k, v in options.items()))


def load_engine(engine_name: str, options: Mapping[str, Any]) -> VoiceEngine:
    """The loaded engine for (name, options), built and loaded once per process."""
    key = _key(engine_name, options)
    engine = _ENGINES.get(key)
    if engine is None:
        engine = get_engine(engine_name, options)
        engine.load()
        _ENGINES[key] = engine
    return engine


def clear_engine_cache() -> None:
    """Forget cached engines (tests; a worker switching models to free memory)."""
    _ENGINES.clear()


def process_chunk(
    chunk_path: str,
    out_path: str,
    engine_name: str,
    options: Mapping[str, Any],
    keep: tuple[int, int] | None = None,
    sha256: str | None = None,
) -> tuple[str, float]:
    """Convert one chunk file with an engine; returns (out_path, engine_seconds).

    ``keep``: the frames of the chunk whose conversion the join uses (``Span.keep``); the
    engine may leave the rest silent. ``sha256``: the chunk's digest from its event. The
    file is then read once and hashed while the engine runs (``CheckedRead``); a mismatch
    is ``bad_chunks`` before anything is written. Checking first cost each chunk ~1.8 ms
    (18 s of mono) between two engine runs.

    The output keeps the chunk's frames, channels and rate and is written under a temporary
    name then renamed, so a worker killed mid-chunk leaves no half file under ``out_path``
    and a redelivered chunk simply overwrites with identical bytes (engines are
    deterministic). ``engine_seconds`` is the time spent in ``process`` alone (what
    ``engine_rtf`` and ``overhead_pct`` are computed from), excluding file I/O and loading.
    The output is not hashed here: a voice worker hashes it beside the next conversion.
    """
    engine = load_engine(engine_name, options)
    checked = CheckedRead(chunk_path, sha256) if sha256 is not None else None
    if checked is None:
        audio_info(chunk_path)  # not_found / corrupt_audio, with the file's name
        data, rate = sf.read(chunk_path, dtype="float32", always_2d=True)
    else:
        try:
            data, rate = sf.read(io.BytesIO(checked.raw), dtype="float32", always_2d=True)
        except (RuntimeError, sf.LibsndfileError) as exc:
            checked.check()  # bytes that are not the chunk's: that, not "corrupt"
            name = Path(chunk_path).name
            raise VoiceError("corrupt_audio", f"cannot read {name}: {exc}") from exc
        checked.release()  # not kept beside the engine's arrays
    samples = data[:, 0] if data.shape[1] == 1 else data
    t0 = time.perf_counter()
    converted = engine.process(samples, rate, keep=keep)
    engine_seconds = time.perf_counter() - t0
    if checked is not None:
        checked.check()
    converted = np.asarray(converted, dtype=np.float32)
    if converted.shape != samples.shape:
        raise VoiceError(
            "bad_chunks", f"engine {engine_name} returned {converted.shape} for {samples.shape}"
        )
    converted = converted.reshape(data.shape)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, wav_bytes([converted], rate, data.shape[1], len(converted)))
    return str(out), engine_seconds


def separate_chunk(chunk_path: str, out_dir: str, config: SeparationConfig) -> tuple[str, str, str]:
    """Split one chunk into (vocals_path, background_path, model_name); pool-friendly.

    The separator model is loaded once per process (``fabric.voice.separate`` caches it).
    """
    result = separate_file(chunk_path, out_dir, config)
    return result.vocals, result.background, result.model


@dataclasses.dataclass(frozen=True, slots=True)
class ConversionResult:
    """What ``convert_file`` did, with timings per step (seconds)."""

    output: str
    frames: int
    sample_rate: int
    channels: int
    chunks: tuple[Chunk, ...]
    engine: dict[str, Any]
    engine_seconds: float
    wall_seconds: float
    steps: dict[str, float]
    join: JoinResult
    separation_model: str | None = None
    remix: RemixResult | None = None


def convert_file(
    input_media: str | os.PathLike[str],
    output_media: str | os.PathLike[str],
    engine: str,
    options: Mapping[str, Any],
    workdir: str | os.PathLike[str],
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    threshold: float = DEFAULT_THRESHOLD_SECONDS,
    separate: SeparationConfig | None = None,
    *,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    vocal_gain: float = 1.0,
    background_gain: float = 1.0,
    audio_bitrate: str = "192k",
) -> ConversionResult:
    """Run every step in this process, one chunk after another.

    A ``.wav`` ``output_media`` gets the converted audio as float WAV at the input's rate;
    any other container gets the input's video stream(s) copied (if it has any) and the
    converted audio encoded as AAC.
    """
    t_start = time.perf_counter()
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    steps: dict[str, float] = {}

    def step(name: str, t0: float) -> None:
        steps[name] = steps.get(name, 0.0) + time.perf_counter() - t0

    t0 = time.perf_counter()
    source = extract_audio(input_media, work / "source.wav")
    step("extract", t0)

    t0 = time.perf_counter()
    voice = load_engine(engine, options)
    chunks = split_audio(
        source.path,
        work / "chunks",
        chunk_seconds=chunk_seconds,
        threshold_seconds=threshold,
        context_seconds=context_seconds,
        align=voice.frame_alignment(source.sample_rate),
    )
    step("split", t0)

    engine_seconds = 0.0
    converted: list[str] = []
    backgrounds: list[str] = []
    model: str | None = None
    for chunk in chunks:
        voice_in = chunk.path
        if separate is not None:
            t0 = time.perf_counter()
            vocals, background, model = separate_chunk(
                chunk.path, str(work / "stems" / f"{chunk.index:04d}"), separate
            )
            backgrounds.append(background)
            voice_in = vocals
            step("separate", t0)
        t0 = time.perf_counter()
        out, seconds = process_chunk(
            voice_in, str(work / "converted" / f"chunk-{chunk.index:04d}.wav"), engine, options,
            keep=chunk.span.keep(join_reach(chunk.sample_rate)),
        )  # fmt: skip
        engine_seconds += seconds
        converted.append(out)
        step("engine", t0)

    t0 = time.perf_counter()
    spans = [c.span for c in chunks]
    joined = join_chunks(spans, converted, work / "voice.wav")
    final_audio = joined.path
    mixed: RemixResult | None = None
    if separate is not None:
        bed = join_chunks(spans, backgrounds, work / "background.wav")
        mixed = remix(joined.path, bed.path, work / "mix.wav", vocal_gain, background_gain)
        final_audio = mixed.path
    step("join", t0)

    t0 = time.perf_counter()
    out_path = Path(output_media)
    if out_path.suffix.lower() == ".wav":
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(out_path)
        shutil.copyfile(final_audio, tmp)
        os.replace(tmp, out_path)
    else:
        mux_audio(input_media, final_audio, out_path, bitrate=audio_bitrate)
    step("mux", t0)

    return ConversionResult(
        output=str(out_path),
        frames=joined.frames,
        sample_rate=joined.sample_rate,
        channels=joined.channels,
        chunks=tuple(chunks),
        engine=voice.describe(),
        engine_seconds=engine_seconds,
        wall_seconds=time.perf_counter() - t_start,
        steps=steps,
        join=joined,
        separation_model=model,
        remix=mixed,
    )
