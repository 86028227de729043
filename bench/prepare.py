#!/usr/bin/env python3
"""Content-processor benchmark: the passthrough fast path and the cost of a transcode.

    python bench/prepare.py            # a table
    python bench/prepare.py --json     # one JSON object

Workloads (inputs generated once into a temp dir with ffmpeg, removed at the end):

* ``passthrough_ms``: ``prepare()`` for YouTube on a compliant ~100 MB MP4 (720p H.264 with
  noise so it really is 100 MB, AAC at -14 LUFS, index in front): probe, checks, one read that
  hashes the file and feeds ffmpeg's loudness meter, the decision "passthrough". Median of
  ``--repeat`` runs, page cache warm (the file was just written; dropping caches would disturb
  a shared machine). Read accounting, against ``passthrough_file_bytes``:
  ``passthrough_bytes_hashed`` is what the hashing loop read; ``passthrough_process_read_bytes``
  is every read() of this process's threads (rchar from /proc/self/task/*/io: the file, the
  box walk, the ffprobe JSON, ffmpeg's stderr); ``passthrough_reads_per_file`` is that over
  the file size (1.0 = the file was read once). ``passthrough_children_read_bytes`` is what
  ffprobe and ffmpeg read: ffmpeg reads the pipe we fill (one file's worth), never the file;
  ffprobe reads headers only.
* ``transcode_rtf``: wall seconds / media seconds of ``prepare()`` for YouTube on a 60 s 1080p
  16:9 clip in MPEG-4 Part 2 (a codec YouTube's profile does not take), so the video is fully
  re-encoded to H.264 with the profile's default CRF/preset (1920x1080 stays 1920x1080);
  includes the loudness pass, the probe of the output and its hash.
* ``scale_pad_rtf`` (unless ``--no-pad``): the same clip for Instagram Reels: re-encoded to
  1080x1920 with blurred bars, the heaviest common path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fabric.media import Action, prepare, profile  # noqa: E402

TONE = "aevalsrc=0.31*sin(2*PI*440*t)*(0.6+0.4*sin(2*PI*0.7*t)):s=48000:c=stereo"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-y", *args], check=True, timeout=3600)


def make_compliant(path: Path, megabytes: float, seconds: float) -> None:
    """~``megabytes`` of compliant MP4: noisy 720p at the bitrate that gives that size."""
    video_bps = int(megabytes * 8e6 / seconds) - 128_000
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size=1280x720:rate=30:duration={seconds},noise=alls=40:allf=t",
        "-f",
        "lavfi",
        "-i",
        f"{TONE}:d={seconds}",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-b:v",
        str(video_bps),
        "-maxrate",
        str(video_bps),
        "-bufsize",
        str(video_bps),
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-movflags",
        "+faststart",
        "-shortest",
        str(path),
    )


def make_1080p(path: Path, seconds: float) -> None:
    """A 1080p clip in MPEG-4 Part 2: quick to make, and every profile must re-encode it."""
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size=1920x1080:rate=30:duration={seconds}",
        "-f",
        "lavfi",
        "-i",
        f"{TONE}:d={seconds}",
        "-c:v",
        "mpeg4",
        "-q:v",
        "4",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-movflags",
        "+faststart",
        "-shortest",
        str(path),
    )


def _rchar(io_file: Path) -> int:
    try:
        for line in io_file.read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reads() -> tuple[dict[str, int], int]:
    """(bytes read per live thread of this process, bytes read by the process and its reaped
    children). rchar counts read()-like calls, page-cache hits included; Linux adds a reaped
    child's counts to its parent's /proc/self/io, so ffmpeg's reads of the pipe appear there
    and not in the per-thread figures."""
    threads = {t.name: _rchar(t / "io") for t in Path("/proc/self/task").iterdir()}
    return threads, _rchar(Path("/proc/self/io"))


async def main(args: argparse.Namespace) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    with tempfile.TemporaryDirectory(prefix="fabric-bench-") as tmp:
        base = Path(tmp)
        work = base / "work"
        work.mkdir(mode=0o700)
        youtube = profile("youtube")

        if not args.no_passthrough:
            src = base / "compliant.mp4"
            make_compliant(src, args.size_mb, args.passthrough_seconds)
            size = src.stat().st_size
            timings: list[float] = []
            own: list[int] = []
            children: list[int] = []
            hashed = 0
            for _ in range(args.repeat):
                threads_before, total_before = reads()
                t0 = time.perf_counter()
                result = await prepare(src, youtube, work)
                timings.append(time.perf_counter() - t0)
                threads_after, total_after = reads()
                mine = sum(n - threads_before.get(t, 0) for t, n in threads_after.items())
                own.append(mine)
                children.append(total_after - total_before - mine)
                assert result.decision.actions == (Action.PASSTHROUGH,), result.decision.reason
                assert result.path == src and not any(work.iterdir())
                hashed = result.bytes_read
            out["passthrough_ms"] = statistics.median(timings) * 1000
            out["passthrough_file_bytes"] = size
            out["passthrough_bytes_hashed"] = hashed
            out["passthrough_process_read_bytes"] = statistics.median(own)
            out["passthrough_reads_per_file"] = statistics.median(own) / size
            out["passthrough_children_read_bytes"] = statistics.median(children)

        if not args.no_transcode:
            clip = base / "clip1080.mp4"
            make_1080p(clip, args.seconds)
            t0 = time.perf_counter()
            result = await prepare(clip, youtube, work, name="yt.mp4")
            wall = time.perf_counter() - t0
            assert result.decision.mode is Action.REENCODE, result.decision.reason
            assert (result.info.display_width, result.info.display_height) == (1920, 1080)
            out["transcode_rtf"] = wall / result.info.duration
            out["transcode_wall_s"] = wall
            out["transcode_media_s"] = result.info.duration
            out["transcode_preset"] = youtube.encode.preset
            out["transcode_crf"] = youtube.encode.crf
            out["transcode_output_mbit_s"] = result.size * 8 / result.info.duration / 1e6
            if not args.no_pad:
                reels = profile("instagram_reels")
                t0 = time.perf_counter()
                result = await prepare(clip, reels, work, name="reels.mp4")
                wall = time.perf_counter() - t0
                assert result.decision.mode is Action.SCALE_PAD, result.decision.reason
                out["scale_pad_rtf"] = wall / result.info.duration
    out["cpus"] = os.cpu_count() or 0
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--size-mb", type=float, default=100.0, help="passthrough file size")
    ap.add_argument("--passthrough-seconds", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=60.0, help="transcode clip length")
    ap.add_argument("--repeat", type=int, default=5, help="passthrough runs (median)")
    ap.add_argument("--no-passthrough", action="store_true")
    ap.add_argument("--no-transcode", action="store_true")
    ap.add_argument("--no-pad", action="store_true", help="skip scale_pad_rtf")
    args = ap.parse_args()
    results = asyncio.run(main(args))
    if args.json:
        print(json.dumps(results))
    else:
        width = max(map(len, results))
        for key, value in results.items():
            shown = f"{value:>16,.3f}" if isinstance(value, float) else f"{value!s:>16}"
            print(f"{key.ljust(width)}  {shown}")
