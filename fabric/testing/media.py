"""Generated test and demo media (ffmpeg lavfi), so no video binaries live in git."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["make_video"]


def make_video(
    path: Path,
    seconds: float = 3.0,
    size: str = "320x240",
    rate: int = 25,
    tone_hz: int = 440,
    audio: bool = True,
) -> Path:
    """An H.264/AAC MP4 of a test pattern with a sine tone (cached: made once per path)."""
    path = Path(path)
    if path.exists() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part" + path.suffix)
    cmd = [
        "ffmpeg",
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={rate}:duration={seconds}",
    ]
    if audio:
        cmd += [
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency={tone_hz}:sample_rate=44100:duration={seconds}",
        ]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", str(rate)]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "96k", "-shortest"]
    cmd += ["-movflags", "+faststart", str(tmp)]
    subprocess.run(cmd, check=True, timeout=120)
    tmp.replace(path)
    return path
