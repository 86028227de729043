"""Vocals vs background with audio-separator, offline only, and the remix that undoes it.

audio-separator downloads whatever it lacks (its model registry ``download_checks.json``,
model files, configs) through ``Separator.download_file_if_not_exists``. Here that method is
overridden to refuse: a file not already in ``model_file_dir`` is a
``VoiceError("model_missing")`` naming it, never a network fetch (workers run without network
and must not pull hundreds of MB from GitHub mid-task). A model that is there but cannot be
loaded (corrupt file, checkpoint that does not match its yaml) is ``model_unreadable``; the
library calls ``sys.exit(1)`` in that case, so ``SystemExit`` is caught too.

Only the vocals stem is taken from the model. The background is ``mixture - vocals`` at the
original rate, channels and length: the library normalises the mix and each stem to a peak
threshold separately and works at 44.1 kHz stereo, so its own second stem, resampled back,
would not add up to the input. With the residual, remixing with gains 1/1 gives the input
back to float precision whatever the model, and for single-target models (the usual
vocals models) the residual is exactly what the library computes as its second stem anyway.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from fabric.voice.audio import BLOCK_FRAMES, audio_info, open_wav_writer, temp_path, write_wav
from fabric.voice.errors import VoiceError

__all__ = [
    "RemixResult",
    "Separation",
    "SeparationConfig",
    "clear_separator_cache",
    "remix",
    "separate_file",
]


@dataclasses.dataclass(frozen=True, slots=True)
class SeparationConfig:
    """Which separation model to run, from where. Picklable: it travels to pool workers."""

    model_filename: str
    model_file_dir: str
    vocals_stem: str = "Vocals"  # the model's name for the voice stem (case-insensitive)
    sample_rate: int = 44100  # the rate the model was trained at


@dataclasses.dataclass(frozen=True, slots=True)
class Separation:
    vocals: str
    background: str
    model: str  # the model file that ran (recorded in events)
    model_name: str | None  # the registry's friendly name, e.g. "Roformer Model: BS-Roformer"
    frames: int
    sample_rate: int
    channels: int


@dataclasses.dataclass(frozen=True, slots=True)
class RemixResult:
    path: str
    frames: int
    sample_rate: int
    channels: int
    peak: float  # peak of vocals*gain + background*gain before any limiting
    gain: float  # extra gain applied to stay under the ceiling (1.0 when none was needed)
    over_ceiling: bool  # the unlimited mix would have exceeded the ceiling


class _ModelMissing(Exception):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


_SEPARATORS: dict[tuple[str, str, str, int], Any] = {}


def clear_separator_cache() -> None:
    """Drop loaded separator models (tests; freeing memory in a long-lived worker)."""
    for sep in _SEPARATORS.values():
        shutil.rmtree(getattr(sep, "_fabric_scratch", ""), ignore_errors=True)
    _SEPARATORS.clear()


def _offline_separator_class() -> type[Any]:
    from audio_separator.separator import Separator

    class OfflineSeparator(Separator):  # type: ignore[misc]
        """audio-separator with downloads switched off: a missing file is an error."""

        def download_file_if_not_exists(self, url: str, output_path: str) -> None:
            if not os.path.isfile(output_path):
                raise _ModelMissing(output_path)

    return OfflineSeparator


def _separator(config: SeparationConfig) -> Any:
    key = (
        os.path.abspath(config.model_file_dir),
        config.model_filename,
        config.vocals_stem,
        config.sample_rate,
    )
    cached = _SEPARATORS.get(key)
    if cached is not None:
        return cached
    model_dir = Path(key[0])
    if not model_dir.is_dir():
        raise VoiceError("model_missing", f"model directory {model_dir} does not exist")
    if not (model_dir / config.model_filename).is_file():
        raise VoiceError(
            "model_missing", f"{config.model_filename} is not in {model_dir} (downloads are off)"
        )
    scratch = tempfile.mkdtemp(prefix="fabric-sep-")
    try:
        with warnings.catch_warnings():  # the constructor silences all warnings process-wide
            sep = _offline_separator_class()(
                log_level=logging.ERROR,  # failures arrive as exceptions
                model_file_dir=str(model_dir),
                output_dir=scratch,
                output_format="WAV",
                output_single_stem=config.vocals_stem,
                normalization_threshold=1.0,
                sample_rate=config.sample_rate,
                use_soundfile=True,
            )
        sep.model_file_dir = str(model_dir)  # not the AUDIO_SEPARATOR_MODEL_DIR override
        sep.load_model(model_filename=config.model_filename)
    except _ModelMissing as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise VoiceError(
            "model_missing",
            f"{Path(exc.path).name} is needed by {config.model_filename} but is not in "
            f"{model_dir} (downloads are off)",
        ) from None
    except ValueError as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        if "not found in supported model files" in str(exc):
            raise VoiceError(
                "model_missing",
                f"{config.model_filename} is not registered in {model_dir}/download_checks.json",
            ) from exc
        raise VoiceError("model_unreadable", f"{config.model_filename}: {exc}") from exc
    except (SystemExit, Exception) as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise VoiceError(
            "model_unreadable",
            f"{config.model_filename} could not be loaded ({type(exc).__name__}: {exc})",
        ) from None
    sep._fabric_scratch = scratch
    _SEPARATORS[key] = sep
    return sep


def separate_file(
    audio_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: SeparationConfig,
) -> Separation:
    """Write ``out_dir/vocals.wav`` and ``out_dir/background.wav`` for ``audio_path``.

    Both stems have the input's frames, rate and channels (float WAV). The model is loaded
    once per process. The whole input is held in memory by the library: call this per chunk
    for long audio (``fabric.voice.pipeline`` does).
    """
    info = audio_info(audio_path)
    sep = _separator(config)
    scratch = Path(sep._fabric_scratch)
    name = "fabric_vocals"
    try:
        sep.separate(str(audio_path), custom_output_names={config.vocals_stem: name})
    except (SystemExit, Exception) as exc:
        raise VoiceError(
            "separation_failed", f"{config.model_filename} on {Path(audio_path).name}: {exc}"
        ) from None
    produced = scratch / f"{name}.wav"
    if not produced.is_file():
        found = sorted(p.name for p in scratch.iterdir())
        raise VoiceError(
            "separation_failed",
            f"{config.model_filename} wrote no {config.vocals_stem!r} stem (got {found})",
        )
    try:
        vocals, rate = sf.read(str(produced), dtype="float64", always_2d=True)
    finally:
        produced.unlink()
    if rate != info.sample_rate:
        vocals = soxr.resample(vocals, rate, info.sample_rate, quality="VHQ")
    vocals = _fit(vocals, info.frames, info.channels)
    mix, _ = sf.read(str(audio_path), dtype="float64", always_2d=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocals_path, background_path = out / "vocals.wav", out / "background.wav"
    _write(vocals_path, vocals, info.sample_rate)
    _write(background_path, mix - vocals, info.sample_rate)
    return Separation(
        vocals=str(vocals_path),
        background=str(background_path),
        model=config.model_filename,
        model_name=getattr(sep, "model_friendly_name", None),
        frames=info.frames,
        sample_rate=info.sample_rate,
        channels=info.channels,
    )


def _fit(x: np.ndarray, frames: int, channels: int) -> np.ndarray:
    """Trim/zero-pad to ``frames`` and map the model's channels onto the input's."""
    x = x[:frames] if len(x) >= frames else np.pad(x, ((0, frames - len(x)), (0, 0)))
    if x.shape[1] == channels:
        return x
    mono: np.ndarray = x.mean(axis=1, keepdims=True)
    return mono if channels == 1 else np.repeat(mono, channels, axis=1)


def _write(path: Path, data: np.ndarray, rate: int) -> None:
    tmp = temp_path(path)
    try:
        write_wav(tmp, data, rate)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def remix(
    vocals: str | os.PathLike[str],
    background: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    vocal_gain: float = 1.0,
    background_gain: float = 1.0,
    *,
    limit: bool = True,
    ceiling: float = 0.99,
) -> RemixResult:
    """Write ``vocals * vocal_gain + background * background_gain`` to ``out_path``.

    Streams in two passes: the first finds the mix's peak; the second writes it. The WAV is
    float, so nothing clips here, but the AAC encode after it would: with ``limit`` a mix
    whose peak exceeds ``ceiling`` is scaled down as a whole by ``ceiling / peak`` (a
    constant gain: no distortion, no pumping), and the result reports the peak and gain so
    the event can say so. With ``limit=False`` the mix is written as is and
    ``over_ceiling`` tells the caller.
    """
    a, b = audio_info(vocals), audio_info(background)
    if (a.frames, a.sample_rate, a.channels) != (b.frames, b.sample_rate, b.channels):
        raise VoiceError(
            "stem_mismatch",
            f"vocals {a.frames}@{a.sample_rate}x{a.channels} vs "
            f"background {b.frames}@{b.sample_rate}x{b.channels}",
        )
    peak = 0.0
    with sf.SoundFile(str(vocals)) as fv, sf.SoundFile(str(background)) as fb:
        for mixed in _mixed_blocks(fv, fb, vocal_gain, background_gain):
            peak = max(peak, float(np.abs(mixed).max(initial=0.0)))
    over = peak > ceiling
    gain = ceiling / peak if (limit and over) else 1.0
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out)
    try:
        with (
            sf.SoundFile(str(vocals)) as fv,
            sf.SoundFile(str(background)) as fb,
            open_wav_writer(tmp, a.sample_rate, a.channels, a.frames) as dst,
        ):
            for mixed in _mixed_blocks(fv, fb, vocal_gain * gain, background_gain * gain):
                dst.write(mixed.astype(np.float32))
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return RemixResult(str(out), a.frames, a.sample_rate, a.channels, peak, gain, over)


def _mixed_blocks(fv: sf.SoundFile, fb: sf.SoundFile, gv: float, gb: float) -> Iterator[np.ndarray]:
    while True:
        v = fv.read(BLOCK_FRAMES, dtype="float64", always_2d=True)
        b = fb.read(BLOCK_FRAMES, dtype="float64", always_2d=True)
        if len(v) == 0:
            return
        yield v * gv + b * gb
