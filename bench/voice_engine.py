#!/usr/bin/env python3
"""Voice engine benchmark: how fast the ``world`` engine converts, on one CPU core.

    python bench/voice_engine.py            # a table
    python bench/voice_engine.py --json     # one JSON object

A 6-minute voiced file is generated (espeak-ng speech at varying pitch, resampled to
44.1 kHz; synthetic vowel glides where espeak-ng is missing), written to a temporary WAV and
read back, then converted in one ``engine.process`` call with the process pinned to one CPU
(``os.sched_setaffinity``) and glibc told to keep freed memory, as the voice worker's pool
processes are (``keep_freed_memory``).

* ``engine_rtf``: wall-clock engine seconds / audio seconds (the issue's metric; goal
  <= 0.1). On a shared machine other processes on the same core inflate it.
* ``engine_rtf_cpu``: the same with this process's CPU time (``time.process_time``), which
  contention does not inflate; the two agree on an idle core.
* ``stereo_engine_rtf`` / ``stereo_engine_rtf_cpu`` (with ``--stereo``): a true-stereo
  version of the file (channels differ), which runs the per-channel envelope path.

The event-pipeline figures (``chunked_speedup``, ``overhead_pct``) are measured elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fabric.voice.audio import write_wav  # noqa: E402
from fabric.voice.engines import get_engine, keep_freed_memory  # noqa: E402

TEXTS = (
    "The quick brown fox jumps over the lazy dog, and the voice engine has to keep up.",
    "Long recordings are cut into chunks at quiet places and joined again without a seam.",
    "One, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, thirteen.",
    "The weather today is calm, with light wind from the west and a few clouds.",
)


def espeak_speech(seconds: float, sr: int) -> np.ndarray | None:
    """Speech from espeak-ng (22.05 kHz) at varying pitch and speed, resampled to ``sr``."""
    if shutil.which("espeak-ng") is None:
        return None
    parts: list[np.ndarray] = []
    total, k = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        while total < seconds * 22050:
            cmd = ["espeak-ng", "-v", ("en", "en-us")[k % 2], "-p", str(30 + (k * 13) % 50)]
            cmd += ["-s", str(145 + (k * 7) % 35), "-w", str(wav), TEXTS[k % len(TEXTS)]]
            subprocess.run(cmd, check=True, capture_output=True)
            part, rate = sf.read(str(wav), dtype="float64")
            parts.append(np.asarray(part))
            total += len(part)
            k += 1
    x = soxr.resample(np.concatenate(parts), rate, sr)[: round(seconds * sr)]
    return np.asarray(0.5 * x / np.abs(x).max())


def vowel_glides(seconds: float, sr: int) -> np.ndarray:
    """Fallback: a pulse train gliding 100-250 Hz through fixed formant resonators."""
    from scipy import signal

    t = np.arange(round(seconds * sr)) / sr
    f0 = 175 + 75 * np.sin(2 * np.pi * t / 7.0)
    phase = np.cumsum(f0) / sr
    x = np.diff(2 * (phase % 1.0) - 1, prepend=0.0)
    for freq, bw in ((700, 80), (1220, 90), (2600, 120)):
        r = np.exp(-np.pi * bw / sr)
        x = signal.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * freq / sr), r * r], x)
    return np.asarray(0.5 * x / np.abs(x).max())


def timed(engine: Any, x: np.ndarray, sr: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    y = engine.process(x, sr)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert y.shape == x.shape and np.all(np.isfinite(y))
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--seconds", type=float, default=360.0, help="length of the generated file")
    ap.add_argument("--rate", type=int, default=44100, help="sample rate")
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last)")
    ap.add_argument("--pitch", type=float, default=3.0, help="pitch shift, semitones")
    ap.add_argument("--formant", type=float, default=0.0, help="formant shift, semitones")
    ap.add_argument("--f0-method", default="dio", choices=("dio", "harvest"))
    ap.add_argument("--stereo", action="store_true", help="also time a true-stereo file")
    args = ap.parse_args()

    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    kept = keep_freed_memory()  # as in the voice worker's pool processes
    sr = args.rate
    x = espeak_speech(args.seconds, sr)
    source = "espeak-ng speech"
    if x is None:
        x, source = vowel_glides(args.seconds, sr), "vowel glides"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "voiced.wav"
        write_wav(path, x, sr)
        mono = sf.read(str(path), dtype="float32")[0]
    options = {"pitch_semitones": args.pitch, "formant_semitones": args.formant,
               "f0_method": args.f0_method}  # fmt: skip
    engine = get_engine("world", options)
    engine.load()
    engine.process(mono[: 5 * sr], sr)  # warm-up: imports, allocator, caches
    audio_s = len(mono) / sr
    wall, cpu_s = timed(engine, mono, sr)
    result: dict[str, Any] = {
        "engine": "world",
        "options": engine.describe()["options"],
        "source": source,
        "sample_rate": sr,
        "audio_seconds": round(audio_s, 3),
        "cpu": cpu,
        "keep_freed_memory": kept,
        "engine_seconds": round(wall, 3),
        "engine_rtf": round(wall / audio_s, 4),
        "engine_rtf_cpu": round(cpu_s / audio_s, 4),
        "seconds_per_audio_minute": round(60 * wall / audio_s, 3),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    if args.stereo:
        right = 0.6 * np.roll(mono, int(0.003 * sr)) + 0.01 * vowel_glides(audio_s, sr)[: len(mono)]
        stereo = np.stack([mono, right.astype(np.float32)], axis=1)
        wall, cpu_s = timed(engine, stereo, sr)
        result["stereo_engine_rtf"] = round(wall / audio_s, 4)
        result["stereo_engine_rtf_cpu"] = round(cpu_s / audio_s, 4)
    if args.json:
        print(json.dumps(result))
        return
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
