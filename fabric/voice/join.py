"""Reassemble converted chunks into one file (ARCHITECTURE.md section 5, ``aggregator``).

Each converted chunk file covers its chunk's context range ``[ctx_start, ctx_end)`` (engines
keep length). The join keeps every chunk's own part, and at each cut mixes the two
neighbours over a short crossfade centred on the cut, where both hold real (context) audio.

Why not just concatenate: a vocoder's output depends on its own running state (WORLD places
excitation pulses by integrating f0 from the start of its input), so two chunks that overlap
in time carry the same sound with a different pulse phase. A hard cut there is a click
(RECIPES.md measured up to 46 dB local deviation).

What the join does at each cut:

1. SOLA alignment: the incoming chunk is shifted by up to ``sola_ms`` (default 6 ms, half a
   period of an 83 Hz voice) to the lag that maximises its normalised cross-correlation
   with the outgoing chunk over the fade, so pulses line up instead of doubling; only when
   that correlation is clearly periodic (>= 0.5 and 0.05 better than no shift), since on
   noise the best lag is chance and moving a chunk only smears transients (measured: a
   5 ms shift on a music bed put 5 dB into a 20 ms window). The shift holds for the whole
   incoming chunk (a constant few-ms delay, far below lip-sync tolerance) and is bounded
   per chunk, never accumulated: output positions stay exact. An engine that keeps chunk
   output equal to whole-file output (``world`` with the splitter's ``align``) gives
   correlation ~1 at lag 0 and is never moved.
2. Equal-power crossfade with correlation-aware gains: with fade angle theta running 0 to
   pi/2, gains ``cos(theta)/k`` and ``sin(theta)/k`` with ``k = sqrt(1 + r sin(2 theta))``,
   where ``r`` (clipped to [0, 1]) is the measured correlation after alignment. The expected
   power ``gA^2 + gB^2 + 2 r gA gB`` is then exactly 1 across the fade: for ``r = 1``
   (aligned, identical signals) the gains become amplitude-complementary
   ``cos/(cos+sin)``, close to the sin^2/cos^2 fade, which keeps a coherent signal at constant
   level; for ``r = 0`` they are the classic sin/cos equal-power fade, which keeps
   uncorrelated signals at constant power. A fixed sin^2/cos^2 fade dips 3 dB mid-fade on
   uncorrelated material, a fixed sin/cos bumps 3 dB on correlated material.

The output is written block by block (memory does not grow with the file) as float WAV,
exactly ``chunks[-1].end`` frames long at the chunks' sample rate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from fabric.voice.audio import BLOCK_FRAMES, audio_info, open_wav_writer, temp_path
from fabric.voice.errors import VoiceError
from fabric.voice.split import Span

__all__ = [
    "ChunkReader",
    "JoinResult",
    "Seam",
    "crossfade_gains",
    "join_chunks",
    "join_reach",
    "sola_lag",
]

DEFAULT_FADE_MS = 40.0
DEFAULT_SOLA_MS = 6.0
SOLA_MIN_CORRELATION = 0.5


@dataclasses.dataclass(frozen=True, slots=True)
class Seam:
    """One cut as joined: where, how far the incoming chunk moved, how alike the two were."""

    position: int  # frame of the cut in the output
    shift: int  # frames the incoming chunk was read ahead (+) or behind (-)
    correlation: float  # normalised cross-correlation over the fade after the shift
    fade: int  # crossfade length in frames, centred on ``position``


@dataclasses.dataclass(frozen=True, slots=True)
class JoinResult:
    path: str
    frames: int
    sample_rate: int
    channels: int
    seams: tuple[Seam, ...]


def join_reach(
    sample_rate: int, fade_ms: float = DEFAULT_FADE_MS, sola_ms: float = DEFAULT_SOLA_MS
) -> int:
    """How far past a chunk's kept part the join reads its converted audio, in frames: half
    the fade, plus the lag searched around the fade, plus the chunk's own shift. Engines
    may leave the rest of the context silent (``VoiceEngine.process``'s ``keep``)."""
    fade = max(2, round(fade_ms * sample_rate / 1000))
    return fade // 2 + 2 * max(0, round(sola_ms * sample_rate / 1000))


def crossfade_gains(length: int, correlation: float) -> tuple[np.ndarray, np.ndarray]:
    """(fade-out, fade-in) gains keeping expected power constant for this correlation."""
    r = float(np.clip(correlation, 0.0, 1.0))
    theta = (np.arange(length) + 0.5) * (np.pi / 2.0 / max(length, 1))
    k = np.sqrt(1.0 + r * np.sin(2.0 * theta))
    return np.cos(theta) / k, np.sin(theta) / k


def sola_lag(
    a: np.ndarray, b_ext: np.ndarray, max_lag: int, min_correlation: float = SOLA_MIN_CORRELATION
) -> tuple[int, float]:
    """The lag in ``[-max_lag, max_lag]`` that best aligns ``b_ext`` to ``a``.

    ``a`` is the outgoing signal over the fade (mono, length L); ``b_ext`` the incoming one
    over the same frames widened by ``max_lag`` on both sides (length L + 2 max_lag).
    Returns (lag, normalised correlation at that lag). A lag other than 0 is taken only when
    its correlation reaches ``min_correlation`` and beats lag 0 by 0.05: on noise-like
    material (breath, a music bed) the best lag is chance, and moving a whole chunk by a few
    ms there only smears its transients. Ties go to the smaller ``|lag|``.
    """
    n = len(a)
    zero = _ncc(a, b_ext[max_lag : max_lag + n]) if n else 0.0
    if n == 0 or max_lag <= 0:
        return 0, zero
    num = np.correlate(b_ext, a, mode="valid")  # num[j] = sum a * b_ext[j : j + n]
    csum = np.concatenate(([0.0], np.cumsum(b_ext * b_ext)))
    eb = csum[n:] - csum[:-n]
    ea = float(np.dot(a, a))
    ncc = num / np.sqrt(np.maximum(ea * eb, 1e-30))
    lags = np.arange(-max_lag, max_lag + 1)
    order = np.argsort(np.abs(lags), kind="stable")
    best = order[int(np.argmax(ncc[order]))]
    score = float(ncc[best])
    if lags[best] == 0 or score < min_correlation or score < zero + 0.05:
        return 0, zero
    return int(lags[best]), score


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    den = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return float(np.dot(a, b) / den) if den > 1e-15 else 0.0


class ChunkReader:
    """One converted chunk file, read at output positions (plus its SOLA shift).

    Opened on first read and closed once the join has moved past it, so a 10-hour file's
    hundreds of chunks never hold more than two files open.
    """

    def __init__(self, span: Span, path: str, channels: int) -> None:
        self.span = span
        self.path = path
        self.file: sf.SoundFile | None = None
        self.channels = channels
        self.shift = 0

    def read(self, start: int, stop: int) -> np.ndarray:
        """Output frames [start, stop) as this chunk has them (zeros outside its file)."""
        first = start + self.shift - self.span.ctx_start
        last = stop + self.shift - self.span.ctx_start
        out = np.zeros((stop - start, self.channels), dtype=np.float32)
        lo, hi = max(first, 0), min(last, self.span.frames)
        if hi > lo:
            if self.file is None:
                self.file = sf.SoundFile(self.path)
            self.file.seek(lo)
            data = self.file.read(hi - lo, dtype="float32", always_2d=True)
            out[lo - first : lo - first + len(data)] = data
        return out

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def join_chunks(
    spans: Sequence[Span],
    converted: Sequence[str | os.PathLike[str]],
    out_path: str | os.PathLike[str],
    *,
    fade_ms: float = DEFAULT_FADE_MS,
    sola_ms: float = DEFAULT_SOLA_MS,
) -> JoinResult:
    """Join converted chunk files (one per span, in order) into ``out_path``.

    ``spans`` may be ``Chunk`` or ``Span`` values (anything with start/end/ctx_start/ctx_end,
    ``Chunk.span`` gives one). Raises ``VoiceError("bad_chunks")`` when kept parts do not tile
    ``[0, total)``, a file's length differs from its context range, or rates/channels differ.
    """
    if not spans or len(spans) != len(converted):
        raise VoiceError("bad_chunks", f"{len(spans)} spans but {len(converted)} converted files")
    spans = [Span(s.index, s.start, s.end, s.ctx_start, s.ctx_end) for s in spans]
    infos = [audio_info(p) for p in converted]
    rate, channels = infos[0].sample_rate, infos[0].channels
    expected = 0
    for span, info in zip(spans, infos, strict=True):
        if span.start != expected or span.end <= span.start:
            raise VoiceError(
                "bad_chunks", f"chunk {span.index} starts at {span.start}, not {expected}"
            )
        if info.frames != span.frames:
            raise VoiceError(
                "bad_chunks",
                f"chunk {span.index}: {info.frames} frames converted, "
                f"its context range has {span.frames}",
            )
        if (info.sample_rate, info.channels) != (rate, channels):
            raise VoiceError("bad_chunks", f"chunk {span.index}: rate/channels differ from chunk 0")
        expected = span.end
    total = expected
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out)
    parts = [ChunkReader(s, str(p), channels) for s, p in zip(spans, converted, strict=True)]
    seams: list[Seam] = []
    want_fade = max(2, round(fade_ms * rate / 1000))
    want_lag = max(0, round(sola_ms * rate / 1000))
    try:
        with open_wav_writer(tmp, rate, channels, total) as dst:
            pos = 0  # next output frame to write
            for i, part in enumerate(parts):
                nxt = parts[i + 1] if i + 1 < len(parts) else None
                if nxt is None:
                    _copy(dst, part, pos, total)
                    part.close()
                    pos = total
                    break
                cut = part.span.end
                # The fade (and the lag search around it) must lie inside both files'
                # context and inside the two kept parts; with no context there is no room
                # and the cut is hard.
                room_in = cut - nxt.span.ctx_start
                lag_max = min(want_lag, room_in // 4)
                half = min(
                    want_fade // 2,
                    part.span.ctx_end - cut - abs(part.shift),
                    room_in - lag_max,
                    cut - pos,
                    (nxt.span.end - cut) // 2,
                )
                if half < 1:
                    _copy(dst, part, pos, cut)
                    seams.append(Seam(cut, 0, 0.0, 0))
                    part.close()
                    pos = cut
                    continue
                a0, a1 = cut - half, cut + half
                _copy(dst, part, pos, a0)
                a = part.read(a0, a1)
                b_ext = nxt.read(a0 - lag_max, a1 + lag_max)
                lag, corr = sola_lag(
                    a.mean(axis=1, dtype=np.float64),
                    b_ext.mean(axis=1, dtype=np.float64),
                    lag_max,
                )
                nxt.shift = lag
                b = b_ext[lag_max + lag : lag_max + lag + (a1 - a0)]
                g_out, g_in = crossfade_gains(a1 - a0, corr)
                dst.write((a * g_out[:, None] + b * g_in[:, None]).astype(np.float32))
                seams.append(Seam(cut, lag, corr, a1 - a0))
                part.close()
                pos = a1
        if pos != total:  # pragma: no cover - guarded by the tiling checks above
            raise VoiceError("bad_chunks", f"wrote {pos} frames, expected {total}")
        os.replace(tmp, out)
    finally:
        for part in parts:
            part.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return JoinResult(str(out), total, rate, channels, tuple(seams))


def _copy(dst: sf.SoundFile, part: ChunkReader, start: int, stop: int) -> None:
    pos = start
    while pos < stop:
        n = min(BLOCK_FRAMES, stop - pos)
        dst.write(part.read(pos, pos + n))
        pos += n
