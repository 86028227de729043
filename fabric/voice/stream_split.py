"""Split while decoding: each chunk file is written, and announced, as soon as ffmpeg has
decoded far enough past its end, instead of after the whole file is decoded and written.

Why: on the voice path the first chunk could start converting only after the splitter had
probed (0.08 s), decoded and written the whole source (0.35 s for 6 minutes of AAC) and
then written every chunk (0.16 s); with one worker that was most of the pipeline's overhead
over the engine time (bench/voice.py ``timeline_s.split_s``). Here the first chunk is
ready once ``chunk + search + context`` seconds are decoded.

The samples are those of ``extract_audio`` (the source WAV is written alongside, its header
by libsndfile rather than ffmpeg), and the layout is ``split_audio``'s except that the cut
targets come from the container's duration, known before the first chunk exists, instead
of the decoded length (AAC decodes a few ms longer): the chunk count can differ by one where
the length sits on a boundary. Memory holds one chunk plus its search window and context,
whatever the input's length.

A decode error part-way (``-xerror``) is ``corrupt_audio`` after some chunks may have been
announced: their conversions are wasted work, not a wrong result (the task fails, and the
aggregator never sees a plan for them).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

from fabric.voice.audio import (
    BLOCK_FRAMES,
    AudioInfo,
    open_wav_writer,
    probe,
    stderr_tail,
    temp_path,
)
from fabric.voice.errors import VoiceError
from fabric.voice.split import (
    DEFAULT_RMS_WINDOW_MS,
    DEFAULT_SEARCH_SECONDS,
    Chunk,
    Span,
    chunk_weights,
    cut_search,
    place_cut,
    write_chunk_file,
)

__all__ = ["split_while_decoding"]

OnChunk = Callable[[Chunk, int], None]
"""Called with each chunk as soon as its file is complete, and the chunk count."""


class _Blocks:
    """Decoded frames ``[start, end)`` as a list of blocks; ranges are copied out on read."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.blocks: list[tuple[int, np.ndarray]] = []
        self.start = 0
        self.end = 0

    def append(self, block: np.ndarray) -> None:
        self.blocks.append((self.end, block))
        self.end += len(block)

    def read(self, a: int, b: int) -> np.ndarray:
        if not self.start <= a <= b <= self.end:
            raise VoiceError("bad_chunks", f"frames {a}-{b} are not held ({self.start}-{self.end})")
        parts = [blk[max(a - s, 0) : b - s] for s, blk in self.blocks if s < b and s + len(blk) > a]
        if not parts:
            return np.zeros((0, self.channels), dtype=np.float32)
        return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()

    def mono(self, a: int, b: int) -> np.ndarray:
        return np.asarray(self.read(a, b).mean(axis=1), dtype=np.float64)

    def drop_before(self, frame: int) -> None:
        while self.blocks and self.blocks[0][0] + len(self.blocks[0][1]) <= frame:
            self.blocks.pop(0)
        self.start = max(self.start, frame)


def split_while_decoding(
    media: str | os.PathLike[str],
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    chunk_seconds: float,
    threshold_seconds: float,
    context_seconds: float,
    search_seconds: float = DEFAULT_SEARCH_SECONDS,
    rms_window_ms: float = DEFAULT_RMS_WINDOW_MS,
    align_for: Callable[[int], int] | None = None,
    taper: float = 1.0,
    on_chunk: OnChunk | None = None,
    stem: str = "chunk",
) -> tuple[AudioInfo, list[Chunk]] | None:
    """Decode the first audio stream of ``media`` to ``source`` (float32 WAV) and cut it into
    chunk files in ``out_dir`` on the way, calling ``on_chunk`` for each as it is done.
    ``align_for(sample_rate)`` is ``split_audio``'s ``align`` (the engine's frame alignment).

    None (nothing written) when the stream is not clearly longer than the threshold or its
    duration is unknown: then ``extract_audio`` + ``split_audio`` do the job. Raises
    ``VoiceError`` like ``extract_audio`` (``no_audio_stream``, ``corrupt_audio``,
    ``empty_audio``) and ``bad_chunks`` when the stream ends far before its stated duration.
    """
    # The decoder starts before the probe: each starts an ffmpeg binary (~60 ms here), and
    # what it decodes meanwhile waits in the pipe until the plan, which needs the probe's
    # duration, can cut it.
    with _decoder(media) as (proc, errors):
        info = probe(media)
        if not info.has_audio:
            raise VoiceError("no_audio_stream", f"{Path(media).name} has no audio stream")
        duration = info.audio_duration or info.duration
        sr, channels = info.sample_rate, info.channels
        # a margin: the decoded length differs from the container's by a frame or two
        if not duration or not sr or not channels or duration <= threshold_seconds + 1.0:
            return None
        weights = chunk_weights(duration, chunk_seconds, taper)
        count = len(weights)
        unit = duration * sr / sum(weights)
        align = max(1, align_for(sr)) if align_for is not None else 1
        pad = round(context_seconds * sr)
        window = max(1, round(rms_window_ms * sr / 1000))
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        final_source = Path(source)
        tmp_source = temp_path(final_source)
        blocks = _Blocks(channels)
        cuts = [0]
        chunks: list[Chunk] = []

        def find_cuts(n: int | None) -> None:
            while len(cuts) < count:
                target, lo, hi = cut_search(weights, len(cuts), unit, cuts[-1], sr, search_seconds,
                                            window)  # fmt: skip
                if n is None and blocks.end < hi:
                    return
                if n is not None:
                    hi = min(hi, n)
                    if target >= n - window:
                        raise VoiceError(
                            "bad_chunks",
                            f"the audio of {Path(media).name} ends at {n / sr:.3f} s, far before "
                            f"its stated {duration:.3f} s",
                        )
                cuts.append(place_cut(blocks.mono, target, lo, hi, window))

        def write_ready(n: int | None) -> None:
            while len(chunks) < count:
                k = len(chunks)
                if k + 1 < len(cuts):
                    a, b = cuts[k], cuts[k + 1]
                elif n is not None and len(cuts) == count:
                    a, b = cuts[k], n
                else:
                    return
                ctx_start = max(0, a - pad) // align * align
                ctx_end = b + pad if n is None else min(n, b + pad)
                if n is None and blocks.end < ctx_end:
                    return
                span = Span(k, a, b, ctx_start, ctx_end)
                data = blocks.read(ctx_start, ctx_end)
                chunks.append(write_chunk_file(out, stem, span, [data], sr, channels))
                if on_chunk is not None:
                    on_chunk(chunks[-1], count)
                if k + 1 < len(cuts):  # keep from the next chunk's context on
                    blocks.drop_before(max(0, cuts[k + 1] - pad) // align * align)

        frame_bytes = 4 * channels
        try:
            assert proc.stdout is not None
            with open_wav_writer(tmp_source, sr, channels, round(duration * sr)) as whole:
                rest = b""
                while raw := proc.stdout.read(BLOCK_FRAMES * frame_bytes):
                    raw = rest + raw
                    usable = len(raw) - len(raw) % frame_bytes
                    rest = raw[usable:]
                    block = np.frombuffer(raw[:usable], dtype="<f4").reshape(-1, channels)
                    whole.write(block)
                    blocks.append(block)
                    find_cuts(None)
                    write_ready(None)
            if proc.wait() != 0:
                errors.seek(0)
                raise VoiceError(
                    "corrupt_audio",
                    f"ffmpeg cannot decode {Path(media).name}: {stderr_tail(errors.read())}",
                )
            n = blocks.end
            if n == 0:
                raise VoiceError(
                    "empty_audio", f"the audio stream of {Path(media).name} holds no samples"
                )
            find_cuts(n)
            write_ready(n)
            os.replace(tmp_source, final_source)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp_source.unlink()
        return AudioInfo(str(final_source), n, sr, channels, "FLOAT"), chunks


@contextlib.contextmanager
def _decoder(media: str | os.PathLike[str]) -> Iterator[tuple[subprocess.Popen[bytes], IO[bytes]]]:
    """ffmpeg decoding the first audio stream of ``media`` to float32 on its stdout, and the
    file its stderr goes to; killed on the way out if still running."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-xerror", "-i", str(media)]
    cmd += ["-map", "0:a:0", "-vn", "-sn", "-dn", "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"]
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors,
                                stdin=subprocess.DEVNULL)  # fmt: skip
        try:
            yield proc, errors
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
