"""Plan and write the chunks of a long audio file (ARCHITECTURE.md section 5, ``splitter``).

A file longer than ``threshold_seconds`` is cut into chunks of about ``chunk_seconds``; when
there are enough of them and ``taper`` < 1, the last ones are shorter (``chunk_weights``). Each
cut sits at the quietest point (short-time RMS over a window as long as the join
crossfade) within ``search_seconds`` of its nominal position, so the crossfade that later
hides the seam runs over the least signal there is. Every chunk file
holds ``context_seconds`` of extra audio on both sides: an engine analyses frames that
reach back and forward in time, and with context it sees the same neighbourhood at the cut
that it sees when the whole file is processed at once.

Only the search windows and the chunks' own frames are read, block by block; memory does not
grow with the input's length (a 1-hour 44.1 kHz stereo file splits in well under 200 MB).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from fabric.voice.audio import audio_info, iter_blocks, write_wav_file
from fabric.voice.errors import VoiceError

__all__ = [
    "Chunk",
    "Span",
    "chunk_weights",
    "cut_search",
    "place_cut",
    "plan_spans",
    "quietest_point",
    "split_audio",
    "taper_tiers",
    "write_chunk_file",
    "write_chunks",
]

DEFAULT_CHUNK_SECONDS = 300.0
DEFAULT_THRESHOLD_SECONDS = 180.0
DEFAULT_CONTEXT_SECONDS = 1.0
DEFAULT_SEARCH_SECONDS = 10.0
DEFAULT_RMS_WINDOW_MS = 40.0
DEFAULT_TAPER = 1.0  # equal chunks; the splitter consumer tapers (FABRIC_VOICE_TAPER)
TAPER_MIN_CHUNKS = 4  # fewer chunks than this are all the same length

_KEEP_SUBTYPES = ("PCM_16", "PCM_24", "FLOAT", "DOUBLE")


@dataclasses.dataclass(frozen=True, slots=True)
class Span:
    """Where one chunk lies in the source, in frames: kept part ``[start, end)`` inside the
    context range ``[ctx_start, ctx_end)``. Kept parts of consecutive spans touch."""

    index: int
    start: int
    end: int
    ctx_start: int
    ctx_end: int

    @property
    def frames(self) -> int:
        """Frames in the chunk file (the context range)."""
        return self.ctx_end - self.ctx_start

    def keep(self, reach: int) -> tuple[int, int]:
        """The frames of the chunk file whose conversion is used: the kept part and
        ``reach`` frames either side (``fabric.voice.join.join_reach``), within the file."""
        return (max(0, self.start - self.ctx_start - reach),
                min(self.frames, self.end - self.ctx_start + reach))  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Chunk:
    """A chunk file on disk and where it belongs; what a ``chunk.ready`` event carries."""

    index: int
    path: str
    sha256: str
    size: int
    start: int
    end: int
    ctx_start: int
    ctx_end: int
    sample_rate: int
    channels: int

    @property
    def frames(self) -> int:
        return self.ctx_end - self.ctx_start

    @property
    def span(self) -> Span:
        return Span(self.index, self.start, self.end, self.ctx_start, self.ctx_end)

    def as_data(self) -> dict[str, Any]:
        """Plain JSON-able fields for an event payload (paths and hashes, never audio)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Chunk:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


def quietest_point(mono: np.ndarray, window: int, prefer: int) -> int:
    """Index of the centre of the quietest ``window``-long stretch of ``mono``.

    Energies within 1 % (0.04 dB) of the minimum count as equally quiet, and the one nearest
    ``prefer`` wins: in digital silence (common between TTS sentences) the cut then stays
    close to its nominal place instead of drifting to the search window's edge.
    """
    x = np.asarray(mono, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError("quietest_point needs a non-empty 1-D signal")
    window = max(1, min(window, len(x)))
    csum = np.concatenate(([0.0], np.cumsum(x * x)))
    energy = csum[window:] - csum[:-window]
    floor = float(energy.min())
    ok = np.flatnonzero(energy <= floor * 1.01 + 1e-12 * window)
    centres = ok + window // 2
    return int(centres[np.argmin(np.abs(centres - prefer))])


def taper_tiers(taper: float) -> list[float]:
    """The short lengths at the end of a tapered plan, longest first: ``taper`` doubled
    while it stays under 1 (0.25 -> [0.5, 0.25]; 0.5 -> [0.5]; 1 -> [])."""
    if not 0 < taper <= 1:
        raise VoiceError("bad_option", f"taper must be in (0, 1], got {taper}")
    tiers: list[float] = []
    t = taper
    while t < 1:
        tiers.insert(0, t)
        t *= 2
    return tiers


def chunk_weights(seconds: float, chunk_seconds: float, taper: float) -> list[float]:
    """Relative lengths of the chunks of a ``seconds``-long file (the count is the length).

    Equal chunks would leave the end of a run on one core: the aggregator encodes the joined
    audio in order while chunks arrive, so whatever follows the last chunk to finish is
    encoded after every worker is done. With two workers the last two chunks finish
    together, and with 5-minute chunks that tail is ~10 minutes of AAC (~10 s here). So,
    where there are at least ``TAPER_MIN_CHUNKS`` equal chunks (two rounds for two workers),
    the plan ends in pairs that halve down to ``taper`` (0.25: two at half length, then two
    at a quarter; ``taper_tiers``), and chunks are added so that none is longer than
    ``chunk_seconds``. Halving, not one step: the encoder works through each pair while the
    workers convert the next, shorter one, so it has caught up when the last pair is done
    (measured, 6 minutes on 2 workers: the tail after the last chunk went from 0.62 s
    with one quarter-length pair to 0.26-0.38 s). Fewer chunks stay equal: a short last chunk
    would unbalance the workers. ``taper`` 1 turns this off.
    """
    tiers = taper_tiers(taper)
    equal = max(2, math.ceil(seconds / chunk_seconds))
    if equal < TAPER_MIN_CHUNKS or not tiers:
        return [1.0] * equal
    short = [t for t in tiers for _ in range(2)]
    count = max(equal, math.ceil(seconds / chunk_seconds + sum(1 - t for t in short)))
    return [1.0] * (count - len(short)) + short


def _read_mono(f: sf.SoundFile, start: int, stop: int) -> np.ndarray:
    f.seek(start)
    data = f.read(stop - start, dtype="float32", always_2d=True)
    return np.asarray(data.mean(axis=1), dtype=np.float64)


def cut_search(
    weights: Sequence[float], i: int, unit: float, prev: int, sr: int, search_seconds: float,
    window: int,
) -> tuple[int, int, int]:  # fmt: skip
    """Where to look for cut ``i`` (between chunks ``i - 1`` and ``i``): its nominal frame
    and the range ``[lo, hi)`` searched (``hi`` not yet clamped to the file's length). The
    reach is at most a quarter of the shorter neighbour, so chunks keep at least half their
    nominal length."""
    target = round(sum(weights[:i]) * unit)
    reach = min(round(search_seconds * sr), int(min(weights[i - 1], weights[i]) * unit / 4))
    lo = max(prev + window, target - reach - window // 2)
    return target, lo, target + reach + window - window // 2


def place_cut(mono: Callable[[int, int], np.ndarray], target: int, lo: int, hi: int,
              window: int) -> int:  # fmt: skip
    """The cut: the quietest point of ``mono(lo, hi)``, or ``target`` when the range is too
    short to search."""
    if hi - lo <= window:
        return target
    return lo + quietest_point(mono(lo, hi), window, target - lo)


def write_chunk_file(
    out: Path, stem: str, span: Span, blocks: Iterable[np.ndarray], sample_rate: int,
    channels: int, subtype: str = "FLOAT",
) -> Chunk:  # fmt: skip
    """Write a chunk's context range (``blocks``) to ``out/{stem}-{index:04d}.wav``
    (``write_wav_file``: renamed when complete, so a splitter killed mid-write never leaves
    a truncated chunk under the final name; hashed before it is written)."""
    final = out / f"{stem}-{span.index:04d}.wav"
    sha256, size = write_wav_file(final, blocks, sample_rate, channels, span.frames, subtype)
    return Chunk(index=span.index, path=str(final), sha256=sha256,
                 size=size, start=span.start, end=span.end,
                 ctx_start=span.ctx_start, ctx_end=span.ctx_end, sample_rate=sample_rate,
                 channels=channels)  # fmt: skip


def plan_spans(
    path: str | os.PathLike[str],
    *,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    threshold_seconds: float = DEFAULT_THRESHOLD_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    search_seconds: float = DEFAULT_SEARCH_SECONDS,
    rms_window_ms: float = DEFAULT_RMS_WINDOW_MS,
    align: int = 1,
    taper: float = DEFAULT_TAPER,
) -> list[Span]:
    """Decide the chunks of ``path`` without writing anything.

    At or under ``threshold_seconds`` the whole file is one span. Above it the file gets at
    least ``max(2, ceil(duration / chunk_seconds))`` chunks with the lengths of
    ``chunk_weights`` (so a 200 s file with a 180 s threshold still gives two workers
    something to do, and no chunk is a short leftover). Each cut moves to the quietest point
    within ``search_seconds`` (at most a quarter of the shorter neighbouring chunk's nominal
    length, so chunks stay at least half their nominal length).

    ``align`` (from ``VoiceEngine.frame_alignment``) moves each context start down to a
    multiple of that many frames, so the engine's analysis frames inside a chunk fall on the
    same absolute times as in a whole-file run and the chunk's output matches it closely.
    """
    if chunk_seconds <= 0 or threshold_seconds < 0 or context_seconds < 0 or search_seconds < 0:
        raise VoiceError("bad_option", "chunk, threshold, context and search must be >= 0")
    if align < 1:
        raise VoiceError("bad_option", f"align must be >= 1, got {align}")
    info = audio_info(path)
    n, sr = info.frames, info.sample_rate
    if n == 0:
        raise VoiceError("empty_audio", f"{Path(path).name} holds no samples")
    pad = round(context_seconds * sr)
    if n <= threshold_seconds * sr:
        return [Span(0, 0, n, 0, n)]
    weights = chunk_weights(n / sr, chunk_seconds, taper)
    unit = n / sum(weights)
    window = max(1, round(rms_window_ms * sr / 1000))
    cuts = [0]
    with sf.SoundFile(str(path)) as f:
        for i in range(1, len(weights)):
            target, lo, hi = cut_search(weights, i, unit, cuts[-1], sr, search_seconds, window)
            cuts.append(place_cut(partial(_read_mono, f), target, lo, min(n, hi), window))
    cuts.append(n)
    return [
        Span(i, a, b, max(0, a - pad) // align * align, min(n, b + pad))
        for i, (a, b) in enumerate(itertools.pairwise(cuts))
    ]


def write_chunks(
    path: str | os.PathLike[str],
    spans: Sequence[Span],
    out_dir: str | os.PathLike[str],
    *,
    stem: str = "chunk",
) -> list[Chunk]:
    """Write each span's context range to ``out_dir/{stem}-{index:04d}.wav``.

    Each file is written by ``write_chunk_file`` (temporary name, renamed when complete).
    PCM_16/24 and float inputs keep their sample format (lossless).
    """
    info = audio_info(path)
    subtype = info.subtype if info.subtype in _KEEP_SUBTYPES else "FLOAT"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chunks: list[Chunk] = []
    with sf.SoundFile(str(path)) as src:
        for span in spans:
            if not 0 <= span.ctx_start <= span.start < span.end <= span.ctx_end <= info.frames:
                raise VoiceError("bad_chunks", f"span {span} does not fit {info.frames} frames")
            blocks = iter_blocks(src, span.ctx_start, span.ctx_end)
            chunks.append(write_chunk_file(out, stem, span, blocks, info.sample_rate,
                                           info.channels, subtype))  # fmt: skip
    return chunks


def split_audio(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    threshold_seconds: float = DEFAULT_THRESHOLD_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    search_seconds: float = DEFAULT_SEARCH_SECONDS,
    rms_window_ms: float = DEFAULT_RMS_WINDOW_MS,
    align: int = 1,
    taper: float = DEFAULT_TAPER,
    stem: str = "chunk",
) -> list[Chunk]:
    """``plan_spans`` then ``write_chunks``: the whole job of the splitter consumer."""
    spans = plan_spans(
        path,
        chunk_seconds=chunk_seconds,
        threshold_seconds=threshold_seconds,
        context_seconds=context_seconds,
        search_seconds=search_seconds,
        rms_window_ms=rms_window_ms,
        align=align,
        taper=taper,
    )
    return write_chunks(path, spans, out_dir, stem=stem)
