"""Join converted chunks as they arrive and encode them into the video while later chunks
are still being converted: the aggregator's way of keeping the mux off the critical path.

Why: ffmpeg's AAC encoder is slow next to the ``world`` engine. Measured on this project's
2-core machine, 6 minutes of 44.1 kHz speech take ~6.7 s to encode (the default ``twoloop``
coder) against ~29 s of engine time; joining and muxing only after the last chunk would add
~25 % to every voice task. Streamed, the encoder works on chunk ``k`` while chunk ``k + 1``
is being converted, and after the last chunk only that chunk's own audio is left to encode.

``StreamJoiner`` is ``fabric.voice.join.join_chunks`` taken apart: the same SOLA search, the
same correlation-aware equal-power crossfade, the same fade lengths, computed in the same
order with the same dtypes, so its output equals ``join_chunks``' sample for sample
(``tests/voice/test_events.py`` checks that). It only needs every chunk's span up front (the
splitter's plan has them) and the converted files in index order. Everything a cut needs
besides the incoming chunk's audio (fade length, lag range) follows from the spans and the
previous chunk's shift, so after chunk ``k`` arrives the output is final up to the start of
the crossfade at cut ``k``.

``MuxStream`` is ``fabric.voice.mux.mux_audio`` with the audio read from a pipe: ffmpeg copies
the video stream(s) and encodes the raw float samples it is fed, into a temporary file that
is renamed when ffmpeg has finished (the publisher never sees half a video).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from fabric.voice.audio import BLOCK_FRAMES, audio_info, probe, stderr_tail, temp_path
from fabric.voice.errors import VoiceError
from fabric.voice.join import (
    DEFAULT_FADE_MS,
    DEFAULT_SOLA_MS,
    ChunkReader,
    crossfade_gains,
    sola_lag,
)
from fabric.voice.split import Span

__all__ = ["MuxStream", "StreamJoiner", "muxed_suffix"]

Sink = Callable[[np.ndarray], None]
"""Receives the joined audio in order, as float32 ``(frames, channels)`` blocks."""


class StreamJoiner:
    """``join_chunks`` one chunk at a time: ``add`` the converted files in index order and
    the joined audio goes to ``sink`` as far as it is final.

    Raises ``VoiceError("bad_chunks")`` when the spans do not tile ``[0, total)`` or a file's
    length, rate or channels do not fit its span.
    """

    def __init__(
        self,
        spans: Sequence[Span],
        sink: Sink,
        *,
        sample_rate: int,
        channels: int,
        fade_ms: float = DEFAULT_FADE_MS,
        sola_ms: float = DEFAULT_SOLA_MS,
    ) -> None:
        if not spans:
            raise VoiceError("bad_chunks", "no spans to join")
        expected = 0
        for span in spans:
            if span.start != expected or span.end <= span.start:
                raise VoiceError(
                    "bad_chunks", f"chunk {span.index} starts at {span.start}, not {expected}"
                )
            if not 0 <= span.ctx_start <= span.start or span.ctx_end < span.end:
                raise VoiceError("bad_chunks", f"chunk {span.index}: context outside {span}")
            expected = span.end
        self.spans = [Span(s.index, s.start, s.end, s.ctx_start, s.ctx_end) for s in spans]
        self.total = expected
        self.sample_rate = sample_rate
        self.channels = channels
        self._sink = sink
        self._fade = max(2, round(fade_ms * sample_rate / 1000))
        self._lag = max(0, round(sola_ms * sample_rate / 1000))
        self._pos = 0  # next output frame to write
        self._next = 0  # index of the next chunk to add
        self._cur: ChunkReader | None = None
        self._half = 0  # half-fade of the cut after the current chunk (< 1: a hard cut)
        self.seams: list[tuple[int, int, float, int]] = []  # (position, shift, corr, fade)

    @property
    def done(self) -> bool:
        return self._pos == self.total

    @property
    def position(self) -> int:
        """Frames handed to the sink so far."""
        return self._pos

    @property
    def next_index(self) -> int:
        return self._next

    def add(self, path: str | os.PathLike[str]) -> None:
        """Take the next chunk (index ``next_index``) and write what is now final."""
        k = self._next
        if k >= len(self.spans):
            raise VoiceError("bad_chunks", f"all {len(self.spans)} chunks were already joined")
        span = self.spans[k]
        info = audio_info(path)
        if info.frames != span.frames:
            raise VoiceError(
                "bad_chunks",
                f"chunk {span.index}: {info.frames} frames converted, "
                f"its context range has {span.frames}",
            )
        if (info.sample_rate, info.channels) != (self.sample_rate, self.channels):
            raise VoiceError(
                "bad_chunks",
                f"chunk {span.index}: {info.sample_rate} Hz x {info.channels} does not match "
                f"the source's {self.sample_rate} Hz x {self.channels}",
            )
        part = ChunkReader(span, str(path), self.channels)
        prev = self._cur
        try:
            if prev is not None:
                self._cross(prev, part)
                prev.close()
            self._cur = part
            self._next = k + 1
            if k + 1 == len(self.spans):
                self._copy(part, self._pos, self.total)
                self._pos = self.total
                part.close()
                return
            cut = span.end
            nxt = self.spans[k + 1]
            room_in = cut - nxt.ctx_start
            lag_max = min(self._lag, room_in // 4)
            half = min(
                self._fade // 2,
                span.ctx_end - cut - abs(part.shift),
                room_in - lag_max,
                cut - self._pos,
                (nxt.end - cut) // 2,
            )
            stop = cut - half if half >= 1 else cut
            self._copy(part, self._pos, stop)
            self._pos = stop
            self._half = half
        except BaseException:
            part.close()
            raise

    def close(self) -> None:
        if self._cur is not None:
            self._cur.close()

    def _cross(self, part: ChunkReader, nxt: ChunkReader) -> None:
        """The cut between ``part`` and ``nxt`` (``self._pos`` is where its fade starts)."""
        cut = part.span.end
        half = self._half
        if half < 1:  # no context to fade in: a hard cut (``_pos`` is already at it)
            self.seams.append((cut, 0, 0.0, 0))
            return
        room_in = cut - nxt.span.ctx_start
        lag_max = min(self._lag, room_in // 4)
        a0, a1 = cut - half, cut + half
        a = part.read(a0, a1)
        b_ext = nxt.read(a0 - lag_max, a1 + lag_max)
        lag, corr = sola_lag(
            a.mean(axis=1, dtype=np.float64), b_ext.mean(axis=1, dtype=np.float64), lag_max
        )
        nxt.shift = lag
        b = b_ext[lag_max + lag : lag_max + lag + (a1 - a0)]
        g_out, g_in = crossfade_gains(a1 - a0, corr)
        self._sink((a * g_out[:, None] + b * g_in[:, None]).astype(np.float32))
        self.seams.append((cut, lag, corr, a1 - a0))
        self._pos = a1

    def _copy(self, part: ChunkReader, start: int, stop: int) -> None:
        pos = start
        while pos < stop:
            n = min(BLOCK_FRAMES, stop - pos)
            self._sink(part.read(pos, pos + n))
            pos += n


_KEEP_SUFFIX = (".mp4", ".mov", ".m4v", ".mkv")


def muxed_suffix(video: str | os.PathLike[str]) -> str:
    """The container for the muxed result: the source's when it takes AAC (MP4, MOV, MKV),
    else MP4 (a WebM or AVI source, or audio alone)."""
    suffix = Path(video).suffix.lower()
    return suffix if suffix in _KEEP_SUFFIX else ".mp4"


class MuxStream:
    """ffmpeg copying the video stream(s) of ``video`` and encoding audio fed through a pipe.

    ``write`` float32 ``(frames, channels)`` blocks (the joiner's sink), then ``close`` to
    finish the file, or ``abort`` to kill ffmpeg and leave nothing behind. Raises
    ``VoiceError``: ``not_found``/``corrupt_audio`` for an unreadable video, ``mux_failed``
    when ffmpeg fails or dies.
    """

    def __init__(
        self,
        video: str | os.PathLike[str],
        out_path: str | os.PathLike[str],
        *,
        sample_rate: int,
        channels: int,
        codec: str = "aac",
        bitrate: str = "192k",
    ) -> None:
        probe(video)  # a clear error before ffmpeg starts
        self.out = Path(out_path)
        if not self.out.parent.is_dir():  # not made here: it belongs to a task that may be over
            raise VoiceError("not_found", f"no directory {self.out.parent} to write the video in")
        self._tmp = temp_path(self.out)
        self._log = tempfile.TemporaryFile()  # ffmpeg's stderr, read if it fails
        self.frames = 0
        cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", "-i", str(video)]
        cmd += ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", "pipe:0"]
        cmd += ["-map", "0:v?", "-map", "1:a:0", "-map_metadata", "0", "-map_chapters", "0"]
        cmd += ["-c:v", "copy", "-c:a", codec, "-b:a", bitrate]
        if self.out.suffix.lower() in (".mp4", ".m4a", ".mov", ".m4v"):
            cmd += ["-movflags", "+faststart"]
        cmd.append(str(self._tmp))
        if shutil.which("ffmpeg") is None:
            raise VoiceError("tool_missing", "ffmpeg is not installed (needed to mux)")
        # ``-nostdin`` only stops ffmpeg reading keys from stdin; ``pipe:0`` still reads it.
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=self._log)  # fmt: skip

    def write(self, block: np.ndarray) -> None:
        data = np.ascontiguousarray(block, dtype="<f4")
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            stdin.write(data.tobytes())
        except (BrokenPipeError, ValueError) as exc:  # ffmpeg died (or we were aborted)
            self._proc.wait()
            raise VoiceError("mux_failed", f"ffmpeg stopped reading: {self._stderr()}") from exc
        self.frames += len(data)

    def close(self) -> Path:
        """Finish the file and move it into place."""
        try:
            if self._proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    self._proc.stdin.close()
            rc = self._proc.wait()
            if rc != 0:
                raise VoiceError(
                    "mux_failed", f"ffmpeg could not write {self.out.name}: {self._stderr()}"
                )
            os.replace(self._tmp, self.out)
        finally:
            self._cleanup()
        return self.out

    def abort(self) -> None:
        """Kill ffmpeg and remove its partial output (safe to call more than once)."""
        if self._proc.poll() is None:
            self._proc.kill()
        with contextlib.suppress(OSError, ValueError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        self._proc.wait()
        self._cleanup()

    def _stderr(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self._log.seek(0)
            return stderr_tail(self._log.read())
        return "(no message)"

    def _cleanup(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()
        with contextlib.suppress(OSError, ValueError):
            self._log.close()
