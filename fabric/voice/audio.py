"""Media probing and audio extraction with ffprobe/ffmpeg, plus the WAV helpers the other
voice modules share.

Everything here streams: ffmpeg decodes straight to a WAV file and the helpers read and hash
files in blocks, so a 10-hour input costs disk space, not memory. Extraction keeps the
original sample rate and channel count (no ``-ar``/``-ac``): every later step works at the
source rate, and the output must match the input to the sample. Samples are written as
32-bit float so a decoder's overshoot above full scale is kept, not clipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf

from fabric.files import sha256_file
from fabric.voice.errors import VoiceError

__all__ = [
    "BLOCK_FRAMES",
    "AudioInfo",
    "CheckedRead",
    "MediaInfo",
    "audio_info",
    "extract_audio",
    "iter_blocks",
    "open_wav_writer",
    "probe",
    "run_tool",
    "sha256_file",
    "stderr_tail",
    "temp_path",
    "wav_bytes",
    "write_atomic",
    "write_wav",
    "write_wav_file",
]

BLOCK_FRAMES = 1 << 16
"""Frames per block when streaming audio (1.5 s at 44.1 kHz; 512 KiB of stereo float32)."""

_WAV_LIMIT = (1 << 32) - (1 << 20)
"""Past ~4 GiB a RIFF size field overflows: such files are written as RF64 instead."""


@dataclasses.dataclass(frozen=True, slots=True)
class MediaInfo:
    """What ffprobe says about a media file (first audio and first video stream)."""

    path: str
    duration: float  # seconds, of the container (or the audio stream when the container has none)
    has_audio: bool
    has_video: bool
    sample_rate: int | None = None
    channels: int | None = None
    audio_codec: str | None = None
    video_codec: str | None = None
    audio_duration: float | None = None
    format_name: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AudioInfo:
    """A PCM audio file on disk: the unit every voice step reads and writes."""

    path: str
    frames: int
    sample_rate: int
    channels: int
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def run_tool(cmd: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
    """Run ffmpeg/ffprobe with output captured; a missing binary is a ``tool_missing`` error."""
    if shutil.which(cmd[0]) is None:
        raise VoiceError("tool_missing", f"{cmd[0]} is not installed (needed for audio I/O)")
    return subprocess.run(list(cmd), capture_output=True, check=False, stdin=subprocess.DEVNULL)


def stderr_tail(raw: bytes, limit: int = 600) -> str:
    """The end of a tool's stderr, where ffmpeg puts the reason it failed."""
    text = raw.decode("utf-8", "replace").strip()
    return text[-limit:] if text else "(no message)"


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out else None  # NaN -> None


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Read stream facts with ffprobe, without decoding the media.

    Raises ``VoiceError``: ``not_found`` when the file is missing, ``corrupt_audio`` when
    ffprobe cannot parse the container (garbage bytes, a truncated MP4 without its index).
    """
    p = Path(path)
    if not p.is_file():
        raise VoiceError("not_found", f"no such file: {p}")
    proc = run_tool(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(p)]
    )
    if proc.returncode != 0:
        raise VoiceError(
            "corrupt_audio", f"ffprobe cannot read {p.name}: {stderr_tail(proc.stderr)}"
        )
    try:
        doc = json.loads(proc.stdout or b"{}")
    except json.JSONDecodeError as exc:
        raise VoiceError("corrupt_audio", f"ffprobe gave unreadable output for {p.name}") from exc
    streams = doc.get("streams") or []
    fmt = doc.get("format") or {}
    if not streams and not fmt:
        raise VoiceError("corrupt_audio", f"ffprobe found no streams in {p.name}")
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    # Cover art in MP3/M4A is a "video" stream with the attached_pic disposition: not a video.
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video"
            and not (s.get("disposition") or {}).get("attached_pic")
        ),
        None,
    )
    audio_duration = _float(audio.get("duration")) if audio else None
    duration = _float(fmt.get("duration")) or audio_duration or 0.0
    return MediaInfo(
        path=str(p),
        duration=duration,
        has_audio=audio is not None,
        has_video=video is not None,
        sample_rate=int(audio["sample_rate"]) if audio and audio.get("sample_rate") else None,
        channels=int(audio["channels"]) if audio and audio.get("channels") else None,
        audio_codec=audio.get("codec_name") if audio else None,
        video_codec=video.get("codec_name") if video else None,
        audio_duration=audio_duration,
        format_name=fmt.get("format_name"),
    )


def temp_path(final: str | os.PathLike[str]) -> Path:
    """A hidden sibling of ``final`` with the same extension (ffmpeg and libsndfile pick the
    format from it); written first, then renamed over ``final`` so readers never see a
    half-written file, and a crash leaves only a dot-file behind."""
    f = Path(final)
    return f.with_name(f".{f.stem}.{uuid.uuid4().hex[:8]}.part{f.suffix}")


def extract_audio(
    media: str | os.PathLike[str], out_wav: str | os.PathLike[str], *, strict: bool = True
) -> AudioInfo:
    """Decode the first audio stream of ``media`` into a float32 WAV at its own rate/channels.

    ffmpeg streams the decode, so memory does not grow with the input's length; outputs past
    4 GiB (about 6 hours of 44.1 kHz stereo) become RF64, which libsndfile reads transparently.
    With ``strict`` a decode error anywhere aborts (``-xerror``) and is reported as
    ``corrupt_audio`` instead of yielding audio with a silently concealed gap.

    Raises ``VoiceError`` with ``not_found``, ``corrupt_audio``, ``no_audio_stream`` or
    ``empty_audio``.
    """
    info = probe(media)
    if not info.has_audio:
        raise VoiceError("no_audio_stream", f"{Path(media).name} has no audio stream")
    out = Path(out_wav)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out)
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y"]
    if strict:
        cmd.append("-xerror")
    cmd += ["-i", str(media), "-map", "0:a:0", "-vn", "-sn", "-dn", "-c:a", "pcm_f32le"]
    # bitexact: no encoder-version tag in the header, so the bytes (and the sha256 that
    # events carry) depend on the audio alone
    cmd += ["-fflags", "+bitexact", "-flags:a", "+bitexact", "-rf64", "auto", "-f", "wav", str(tmp)]
    proc = run_tool(cmd)
    try:
        if proc.returncode != 0:
            raise VoiceError(
                "corrupt_audio",
                f"ffmpeg cannot decode {Path(media).name}: {stderr_tail(proc.stderr)}",
            )
        try:
            got = audio_info(tmp)
        except VoiceError as exc:
            # ffmpeg writes a bare header when the stream holds no packets at all.
            if tmp.stat().st_size <= 4096:
                raise VoiceError(
                    "empty_audio", f"the audio stream of {Path(media).name} holds no samples"
                ) from exc
            raise
        if got.frames == 0:
            raise VoiceError(
                "empty_audio", f"the audio stream of {Path(media).name} holds no samples"
            )
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return dataclasses.replace(got, path=str(out))


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Frames, rate, channels and subtype of a PCM file, from its header only."""
    try:
        i = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as exc:
        if not Path(path).is_file():
            raise VoiceError("not_found", f"no such file: {path}") from exc
        raise VoiceError("corrupt_audio", f"cannot read {Path(path).name}: {exc}") from exc
    return AudioInfo(str(path), int(i.frames), int(i.samplerate), int(i.channels), str(i.subtype))


def open_wav_writer(
    path: str | os.PathLike[str] | BinaryIO,
    sample_rate: int,
    channels: int,
    frames_hint: int,
    subtype: str = "FLOAT",
) -> sf.SoundFile:
    """A SoundFile for writing (to a path or a binary file object), WAV when it will fit in
    4 GiB and RF64 beyond that."""
    width = {"PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}.get(subtype, 4)
    container = "RF64" if frames_hint * channels * width >= _WAV_LIMIT else "WAV"
    target = path if isinstance(path, io.IOBase) else str(path)
    f = sf.SoundFile(
        target, "w", samplerate=sample_rate, channels=channels, format=container, subtype=subtype
    )
    _no_peak_chunk(f)
    return f


def write_wav(path: str | os.PathLike[str], data: np.ndarray, sample_rate: int) -> None:
    """Write ``(frames,)`` or ``(frames, channels)`` samples as a reproducible float WAV."""
    frames = np.asarray(data, dtype=np.float32).reshape(len(data), -1)
    with open_wav_writer(path, sample_rate, frames.shape[1], len(frames)) as f:
        f.write(frames)


def write_wav_file(
    path: str | os.PathLike[str],
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    channels: int,
    frames: int,
    subtype: str = "FLOAT",
) -> tuple[str, int]:
    """Write ``blocks`` (``(n, channels)`` each, ``frames`` in all) as ``write_wav``'s WAV
    at ``path``, under a temporary name renamed when complete (a process killed mid-write
    never leaves a truncated file under ``path``); returns its (sha256, size).

    For chunk files, which events refer to by sha256: the file is built in memory, hashed
    there, written in one call (``write_atomic``), and never read back. Measured on an 18 s
    mono chunk (3.2 MB, new files, median of 300): 3.4 ms against 5.4 ms for writing it
    with libsndfile and hashing the file. It holds the whole file in memory: not for a
    source of unbounded length.
    """
    payload = wav_bytes(blocks, sample_rate, channels, frames, subtype)
    digest = hashlib.sha256(payload).hexdigest()
    write_atomic(path, payload)
    return digest, len(payload)


def wav_bytes(
    blocks: Iterable[np.ndarray], sample_rate: int, channels: int, frames: int,
    subtype: str = "FLOAT",
) -> memoryview:  # fmt: skip
    """The bytes ``write_wav`` would write for ``blocks`` (``frames`` in all)."""
    buf = io.BytesIO()
    with open_wav_writer(buf, sample_rate, channels, frames, subtype) as f:
        for block in blocks:
            f.write(block)
    return buf.getbuffer()


def write_atomic(path: str | os.PathLike[str], payload: bytes | memoryview) -> None:
    """``payload`` at ``path``: written under a temporary name in one call, then renamed."""
    final = Path(path)
    tmp = temp_path(final)
    try:
        with open(tmp, "wb") as out:
            out.write(payload)
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class CheckedRead:
    """A file named in an event with its sha256 (a chunk), read once; the digest is computed
    on a thread of its own beside whatever the caller does next (hashlib releases the GIL
    while it hashes a large buffer), and ``check()`` raises ``bad_chunks`` when it differs.
    ``not_found`` when the file is gone."""

    def __init__(self, path: str | os.PathLike[str], sha256: str) -> None:
        self.path = Path(path)
        try:
            self.raw = self.path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise VoiceError("not_found", f"chunk file {path} is gone (task ended?)") from None
        self._expected = sha256
        self._digest: str | None = None
        self._hashing = threading.Thread(target=self._hash, args=(self.raw,), daemon=True,
                                         name="sha256")  # fmt: skip
        self._hashing.start()

    def _hash(self, raw: bytes) -> None:
        self._digest = hashlib.sha256(raw).hexdigest()

    def release(self) -> None:
        """Drop the bytes once decoded (up to ~100 MB for 5 minutes of stereo); the hashing
        thread holds them until it is done."""
        self.raw = b""

    def check(self) -> None:
        self._hashing.join()
        if self._digest != self._expected:
            raise VoiceError("bad_chunks", f"{self.path.name} does not match its sha256")


_SFC_SET_ADD_PEAK_CHUNK = 0x1050  # libsndfile's sndfile.h


def _no_peak_chunk(f: sf.SoundFile) -> None:
    """Stop libsndfile from adding its PEAK chunk to float files.

    That chunk carries the wall-clock time of writing, so the same samples written a second
    later hash differently; chunk files and converted chunks are identified by sha256 in
    events, and a redelivered chunk must produce the same bytes. soundfile has no public
    call for this libsndfile command, hence its private handles (soundfile is pinned);
    ``tests/voice/test_audio.py`` checks that written files carry no PEAK chunk.
    """
    snd, ffi, handle = (
        getattr(sf, "_snd", None),
        getattr(sf, "_ffi", None),
        getattr(f, "_file", None),
    )
    if snd is not None and ffi is not None and handle is not None:
        snd.sf_command(handle, _SFC_SET_ADD_PEAK_CHUNK, ffi.NULL, 0)


def iter_blocks(f: sf.SoundFile, start: int, stop: int, block: int = BLOCK_FRAMES) -> Iterator[Any]:
    """Frames ``[start, stop)`` of an open file as float32 ``(n, channels)`` blocks."""
    f.seek(start)
    pos = start
    while pos < stop:
        n = min(block, stop - pos)
        data = f.read(n, dtype="float32", always_2d=True)
        if len(data) == 0:
            raise VoiceError("corrupt_audio", f"{f.name} ended at frame {pos}, expected {stop}")
        pos += len(data)
        yield data
