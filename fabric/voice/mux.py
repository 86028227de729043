"""Put converted audio back into the video with ffmpeg (ARCHITECTURE.md section 5).

The video stream is copied bit for bit (``-c:v copy``: no re-encode, no quality loss, and it
takes seconds for an hour of video); only the audio is encoded, as AAC by default, which
YouTube, Instagram and TikTok all take. Container metadata and chapters come from the
original. The file is written under a temporary name in the destination folder and renamed,
so the publisher never picks up a half-written video.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from fabric.voice.audio import probe, run_tool, stderr_tail, temp_path
from fabric.voice.errors import VoiceError

__all__ = ["mux_audio"]

_FASTSTART = (".mp4", ".m4a", ".mov", ".m4v")


def mux_audio(
    video: str | os.PathLike[str],
    audio: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    codec: str = "aac",
    bitrate: str = "192k",
    sample_rate: int | None = None,
) -> Path:
    """Write ``out_path``: every video stream of ``video`` copied, plus ``audio`` encoded.

    ``sample_rate`` None keeps the audio's own rate. A ``video`` without a video stream gives
    an audio-only file. Raises ``VoiceError``: ``not_found``/``corrupt_audio`` for unreadable
    inputs, ``mux_failed`` when ffmpeg fails (the destination is then left untouched).
    """
    probe(video)  # clear errors for a missing or unreadable input before ffmpeg runs
    probe(audio)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out)
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y"]
    cmd += ["-i", str(video), "-i", str(audio)]
    cmd += ["-map", "0:v?", "-map", "1:a:0", "-map_metadata", "0", "-map_chapters", "0"]
    cmd += ["-c:v", "copy", "-c:a", codec, "-b:a", bitrate]
    if sample_rate is not None:
        cmd += ["-ar", str(int(sample_rate))]
    if out.suffix.lower() in _FASTSTART:
        cmd += ["-movflags", "+faststart"]
    cmd.append(str(tmp))
    try:
        proc = run_tool(cmd)
        if proc.returncode != 0:
            raise VoiceError(
                "mux_failed", f"ffmpeg could not write {out.name}: {stderr_tail(proc.stderr)}"
            )
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return out
