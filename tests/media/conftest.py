"""Generated media for the content-processor tests: ffmpeg lavfi testsrc + tones, small and fast.

Nothing binary lives in git: each clip is made once per session with ffmpeg (tiny frames, a few
seconds, x264/x265 ultrafast), and the assertions read the outputs back with plain
ffprobe/ffmpeg (``ffprobe_json``, ``ebur128``, ``packets_md5``), not with the code under test.

Audio: an amplitude-modulated 440 Hz tone (a pure tone has a loudness range of 0 LU, which is
not what real programme material looks like). Amplitude 0.31 measures about -14 LUFS with a true
peak near -10 dBTP: compliant everywhere; amplitude 0.9 measures about -5 LUFS / -0.8 dBTP: loud.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from fabric.media.profiles import Profile, profile

FAST = {"encode": {"preset": "ultrafast"}}  # per-account override: fast encodes in tests
Make = Callable[..., Path]


def run(args: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(args), check=True, capture_output=True, timeout=120)


def ffprobe_json(path: Path) -> dict[str, Any]:
    out = run(
        [
            "ffprobe",
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            str(path),
        ]
    ).stdout
    data: dict[str, Any] = json.loads(out)
    return data


def stream(data: dict[str, Any], kind: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [s for s in data["streams"] if s["codec_type"] == kind]
    (only,) = found
    return only


def ebur128(path: Path) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) of the first audio stream, by ffmpeg's own meter."""
    meter = ["-af", "ebur128=peak=true:framelog=verbose", "-f", "null", "-"]
    err = run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-map", "0:a:0", *meter])
    text = err.stderr.decode()
    i = re.findall(r"I:\s+(\S+) LUFS", text)[-1]
    tp = re.findall(r"Peak:\s+(\S+) dBFS", text)[-1]
    return float(i), float(tp)


def packets_md5(path: Path, which: str) -> str:
    """MD5 of a stream's packets, copied out: equal before and after means "stream copied"."""
    copy = ["-map", f"0:{which}:0", "-c", "copy", "-f", "md5", "-"]
    out = run(["ffmpeg", "-v", "error", "-i", str(path), *copy]).stdout.decode()
    return out.strip()


def tone(amplitude: float, seconds: float, rate: int = 48000) -> list[str]:
    expr = f"{amplitude}*sin(2*PI*440*t)*(0.6+0.4*sin(2*PI*0.7*t))"
    return ["-f", "lavfi", "-i", f"aevalsrc={expr}:s={rate}:c=stereo:d={seconds}"]


def picture(size: str, seconds: float, fps: int = 25) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={fps}:duration={seconds}"]


H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
AAC = ["-c:a", "aac", "-b:a", "128k"]


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def make(media_dir: Path) -> Make:
    """``make(name, *ffmpeg_args)`` → the file, generated once per session."""

    def build(name: str, *args: str) -> Path:
        out = media_dir / name
        if not out.exists():
            run(["ffmpeg", "-hide_banner", "-v", "error", "-y", *args, str(out)])
        return out

    return build


@pytest.fixture(scope="session")
def compliant_mp4(make: Make) -> Path:
    """16:9 H.264 + AAC 48 kHz at -14 LUFS, moov in front: fits YouTube as is."""
    return make(
        "compliant.mp4",
        *picture("320x180", 3),
        *tone(0.31, 3),
        *H264,
        *AAC,
        "-movflags",
        "+faststart",
        "-shortest",
    )


@pytest.fixture(scope="session")
def loud_mp4(make: Make) -> Path:
    """Like compliant_mp4 but about -5 LUFS with a true peak above -1 dBTP."""
    return make(
        "loud.mp4",
        *picture("320x180", 4),
        *tone(0.9, 4),
        *H264,
        *AAC,
        "-movflags",
        "+faststart",
        "-shortest",
    )


@pytest.fixture(scope="session")
def wide_mp4(make: Make) -> Path:
    """16:9, 4 s (Reels need 3 s), compliant audio: only the picture needs work for Reels."""
    return make(
        "wide.mp4",
        *picture("480x270", 4),
        *tone(0.31, 4),
        *H264,
        *AAC,
        "-movflags",
        "+faststart",
        "-shortest",
    )


@pytest.fixture(scope="session")
def hevc_mkv(make: Make) -> Path:
    """HEVC + AAC in Matroska: the streams fit, the container does not."""
    return make(
        "hevc.mkv",
        *picture("320x180", 2),
        *tone(0.31, 2),
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=error",
        "-pix_fmt",
        "yuv420p",
        *AAC,
        "-shortest",
    )


@pytest.fixture(scope="session")
def vertical_short(make: Make) -> Path:
    return make(
        "vertical.mp4",
        *picture("180x320", 3),
        *tone(0.31, 3),
        *H264,
        *AAC,
        "-movflags",
        "+faststart",
        "-shortest",
    )


@pytest.fixture(scope="session")
def vertical_181s(make: Make) -> Path:
    """Vertical, one second over the Shorts limit (tiny and 1 fps: quick to make)."""
    return make("vertical181.mp4", *picture("72x128", 181, fps=1), *H264, "-movflags", "+faststart")


@pytest.fixture(scope="session")
def vertical_901s(make: Make) -> Path:
    """Vertical, one second over the Reels limit."""
    return make("vertical901.mp4", *picture("72x128", 901, fps=1), *H264, "-movflags", "+faststart")


@pytest.fixture(scope="session")
def audio_only(make: Make) -> Path:
    return make("voice.m4a", *tone(0.31, 2), *AAC)


@pytest.fixture(scope="session")
def moov_last_mp4(make: Make) -> Path:
    """A plain ffmpeg MP4: the index (moov) is written at the end."""
    return make("moovlast.mp4", *picture("320x180", 2), *tone(0.31, 2), *H264, *AAC, "-shortest")


@pytest.fixture
def reels() -> Profile:
    return profile("instagram_reels", FAST)


@pytest.fixture
def youtube() -> Profile:
    return profile("youtube", FAST)
