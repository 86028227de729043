"""Make a video fit a platform profile with the smallest change, or say why it cannot.

Three steps, the middle one pure:

* ``check(info, profile)`` raises ``MediaError`` for what no processing can fix (too long for
  Reels, no video stream, a codec nothing can decode...). The consumer calls it (through
  ``prepare``) before any upload, so no quota is spent on a file the platform would refuse.
* ``decide(info, profile, loudness)`` picks, from ffprobe's description and the measured
  loudness, the cheapest of: pass through (same bytes, no copy), remux (streams copied into a
  new MP4), re-encode the audio only, re-encode the video, or scale/pad it to the target aspect.
  It does no I/O, so the whole table of cases is unit-tested without ffmpeg.
* ``prepare(path, profile, workdir)`` measures, decides, runs ffmpeg into the task's work dir
  and returns the output with its sha256, size and a fresh ffprobe of it.

Reading the input once matters on the passthrough path: that is the common case (the voice
pipeline already produces compliant MP4s) and files can be gigabytes. The file is read once in
large blocks; each block goes into sha256 and down a pipe to ffmpeg's EBU R128 meter, so
hashing and loudness measurement share one read (this needs the MP4 index in front, which every
profile asks for anyway).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import fcntl
import hashlib
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from fabric.media.errors import MediaError
from fabric.media.probe import FFMPEG, MediaInfo, probe, reap, run_tool, tail, tool_path
from fabric.media.profiles import Profile, load_profiles

__all__ = [
    "Action",
    "AudioPlan",
    "Decision",
    "Loudness",
    "Prepared",
    "Scan",
    "VideoPlan",
    "check",
    "decide",
    "ffmpeg_args",
    "is_short",
    "measure_loudness",
    "prepare",
    "profile_name_for",
    "scan_file",
    "shorts_reason",
]

CHUNK = 1 << 20  # read size: large enough that syscalls and hashing calls are negligible
MIN_VIDEO_BPS = 300_000  # below this a size-limited re-encode is not worth watching
SILENCE_LUFS = -69.0  # ebur128 reports -70 LUFS for digital silence: nothing to normalise
_F_SETPIPE_SZ = 1031  # Linux fcntl: grow the pipe to ffmpeg so each write moves a whole block

_EBUR128 = re.compile(
    r"Integrated loudness:\s+I:\s+(?P<i>\S+) LUFS\s+Threshold:\s+(?P<thr>\S+) LUFS"
    r"\s+Loudness range:\s+LRA:\s+(?P<lra>\S+) LU"
    r".*?True peak:\s+Peak:\s+(?P<tp>\S+) dBFS",
    re.S,
)


# -- loudness ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Loudness:
    """EBU R128 measurement: integrated loudness (LUFS), true peak (dBTP), range (LU)."""

    integrated: float
    true_peak: float
    lra: float
    threshold: float  # the relative gate of the integrated measurement (loudnorm's measured_thresh)

    @property
    def silent(self) -> bool:
        return self.integrated <= SILENCE_LUFS

    def as_data(self) -> dict[str, float | None]:
        def num(x: float) -> float | None:
            return round(x, 2) if x not in (float("inf"), float("-inf")) else None

        return {
            "integrated_lufs": num(self.integrated),
            "true_peak_dbtp": num(self.true_peak),
            "lra_lu": num(self.lra),
        }


def parse_ebur128(stderr: str) -> Loudness | None:
    """The summary ffmpeg's ebur128 filter prints at the end (the last one, if several)."""
    found = list(_EBUR128.finditer(stderr))
    if not found:
        return None
    m = found[-1]
    return Loudness(
        integrated=float(m["i"]),
        true_peak=float(m["tp"]),
        lra=float(m["lra"]),
        threshold=float(m["thr"]),
    )


def _meter_args(source: str, audio_index: int) -> list[str]:
    # framelog=verbose keeps the per-frame lines out of stderr at -v info: only the summary
    return [
        FFMPEG,
        "-hide_banner",
        "-nostats",
        "-v",
        "info",
        "-i",
        source,
        "-map",
        f"0:{audio_index}",
        "-af",
        "ebur128=peak=true:framelog=verbose",
        "-f",
        "null",
        "-",
    ]


async def measure_loudness(
    path: Path | str, audio_index: int = 0, *, timeout: float = 600.0
) -> Loudness:
    """Integrated loudness and true peak of one audio stream (ffmpeg ebur128, peak=true)."""
    rc, _, err = await run_tool(
        _meter_args(tool_path(path), audio_index),
        timeout=timeout,
        what=f"loudness measurement of {Path(path).name}",
        stdout=False,
    )
    text = err.decode("utf-8", "replace")
    result = parse_ebur128(text) if rc == 0 else None
    if result is None:
        raise MediaError("corrupt", f"cannot decode the audio of {Path(path).name}: {tail(err)}")
    return result


@dataclasses.dataclass(frozen=True, slots=True)
class Scan:
    """One read of a file: its sha256 and size, and its loudness if it was measured."""

    sha256: str
    size: int
    bytes_read: int
    loudness: Loudness | None


def _read_block(f: BinaryIO, digest: Any) -> bytes:
    block = f.read(CHUNK)
    if block:
        digest.update(block)  # in the worker thread: hashlib releases the GIL for big blocks
    return block


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    n = 0
    with open(path, "rb", buffering=0) as f:
        while block := _read_block(f, digest):
            n += len(block)
    return digest.hexdigest(), n


async def scan_file(
    path: Path | str, *, audio_index: int | None = None, timeout: float = 600.0
) -> Scan:
    """Hash ``path`` and, when ``audio_index`` is given, measure that stream's loudness, in one
    read: each block goes to sha256 and down a pipe into ffmpeg's ebur128 meter.

    ffmpeg reads an MP4 from a pipe only when the ``moov`` index comes first; callers pass
    ``audio_index`` only for such files (``MediaInfo.moov_first``).
    """
    path = Path(path)
    if audio_index is None:
        sha, n = await asyncio.to_thread(_hash_file, path)
        return Scan(sha, n, n, None)
    proc = await asyncio.create_subprocess_exec(
        *_meter_args("pipe:0", audio_index),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stderr is not None
    try:  # best effort: fewer wake-ups per MiB; the default 64 KiB pipe works too
        fcntl.fcntl(proc.stdin.get_extra_info("pipe").fileno(), _F_SETPIPE_SZ, CHUNK)
    except (OSError, AttributeError):
        pass
    errors = asyncio.ensure_future(proc.stderr.read())
    digest = hashlib.sha256()
    n = 0
    f = await asyncio.to_thread(open, path, "rb", buffering=0)
    try:
        async with asyncio.timeout(timeout):
            while block := await asyncio.to_thread(_read_block, f, digest):
                n += len(block)
                try:
                    proc.stdin.write(block)
                    await proc.stdin.drain()
                except (BrokenPipeError, ConnectionResetError):
                    break  # ffmpeg gave up: its stderr says why, and the scan fails below
            else:
                proc.stdin.close()
                try:
                    await proc.stdin.wait_closed()
                except (BrokenPipeError, ConnectionResetError):
                    pass
            err = await errors
            rc = await proc.wait()
    except TimeoutError:
        raise MediaError(
            "timeout", f"reading {path.name} ran past its {timeout:.0f} s limit", limit=timeout
        ) from None
    finally:
        f.close()
        await reap(proc)
        if not errors.done():
            errors.cancel()
    loudness = parse_ebur128(err.decode("utf-8", "replace")) if rc == 0 else None
    if loudness is None:
        raise MediaError("corrupt", f"cannot decode the audio of {path.name}: {tail(err)}")
    return Scan(digest.hexdigest(), n, n, loudness)


# -- the decision ------------------------------------------------------------------------------
class Action(enum.StrEnum):
    """What ``prepare`` does, cheapest first. Anything but PASSTHROUGH writes a new MP4."""

    PASSTHROUGH = "passthrough"  # the original file, untouched
    REMUX = "remux"  # new container, every stream copied
    AUDIO = "audio"  # audio re-encoded (codec, sample rate, channels, loudness); video copied
    REENCODE = "reencode"  # video re-encoded at the same geometry (codec, fps, bitrate...)
    SCALE_PAD = "scale_pad"  # video re-encoded to a new size, padded to the target aspect


@dataclasses.dataclass(frozen=True, slots=True)
class VideoPlan:
    """How to re-encode the video. ``pad`` is "blur", "color" or None (plain scale)."""

    encoder: str
    crf: int
    preset: str
    width: int
    height: int
    pad: str | None = None
    pad_color: str = "black"
    fps: float | None = None  # output frame rate when it must change
    maxrate: int = 0  # bit/s cap (VBV), 0 = CRF alone
    deinterlace: bool = False
    square_pixels: bool = False  # stretch non-square pixels first (SAR != 1)


@dataclasses.dataclass(frozen=True, slots=True)
class AudioPlan:
    """How to re-encode the audio. ``loudnorm`` holds the first-pass measurement when the
    level must change (two-pass loudnorm: the second pass applies a plain gain when it can)."""

    encoder: str
    bitrate: int
    sample_rate: int
    channels: int
    loudnorm: Loudness | None = None
    target_lufs: float = -14.0
    target_tp: float = -1.5
    target_lra: float = 20.0


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What to do to one file for one profile, and why (in words and as codes)."""

    profile: str
    actions: tuple[Action, ...]
    reasons: tuple[str, ...]  # machine-readable: "container", "loudness", "aspect"...
    reason: str  # for people: "container matroska, not mp4; loudness -4.9 LUFS ..."
    video: VideoPlan | None = None  # None: copy the video stream
    audio: AudioPlan | None = None  # None: copy the audio stream (or there is none)

    @property
    def mode(self) -> Action:
        """The most expensive action (what a dashboard shows)."""
        return max(self.actions, key=list(Action).index)

    @property
    def passthrough(self) -> bool:
        return self.actions == (Action.PASSTHROUGH,)

    def as_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": str(self.mode),
            "actions": [str(a) for a in self.actions],
            "reasons": list(self.reasons),
            "reason": self.reason,
        }
        if self.video is not None:
            v = self.video
            out["video"] = {
                "encoder": v.encoder,
                "crf": v.crf,
                "preset": v.preset,
                "width": v.width,
                "height": v.height,
                "pad": v.pad,
                "fps": v.fps,
                "maxrate": v.maxrate or None,
            }
        if self.audio is not None:
            a = self.audio
            out["audio"] = {
                "encoder": a.encoder,
                "bitrate": a.bitrate,
                "sample_rate": a.sample_rate,
                "channels": a.channels,
                "loudnorm": a.loudnorm is not None,
            }
        return out


def _num(x: float) -> str:
    return f"{x:g}"


def _allow(p: Profile) -> str:
    # "Instagram Reels allow", "YouTube allows"
    return f"{p.label} {'allow' if p.label.endswith('s') else 'allows'}"


def _even(x: float) -> int:
    return max(2, int(x / 2 + 0.5) * 2)  # half up (round() would go to even: 426.5 -> 426)


def _fit(w: float, h: float, p: Profile) -> tuple[int, int]:
    """Scale (w, h), aspect kept, into the target box (same orientation) and the profile's
    maximum; up to its minimum if smaller. Never upscales otherwise: a smaller frame is
    cheaper to encode and the platform scales for display anyway."""
    long_side, short_side = (
        max(p.target_width, p.target_height),
        min(p.target_width, p.target_height),
    )
    box_w, box_h = (long_side, short_side) if w >= h else (short_side, long_side)
    box_w, box_h = min(box_w, p.max_width), min(box_h, p.max_height)
    scale = min(1.0, box_w / w, box_h / h)
    scale = max(scale, p.min_width / w, p.min_height / h)
    return _even(w * scale), _even(h * scale)


def _canvas(w: int, h: int, p: Profile) -> tuple[int, int]:
    """The padded frame: the whole picture kept, bars added to reach the target aspect."""
    target = p.target_aspect
    if w / h > target:  # too wide (16:9 for a 9:16 target): bars above and below
        cw, ch = float(w), w / target
    else:  # too tall: bars left and right
        cw, ch = h * target, float(h)
    out_w, out_h = _fit(cw, ch, p)
    # keep the exact target aspect after rounding to even sizes
    out_h = _even(out_w / target)
    return out_w, out_h


def _standard_fps(fps: float, p: Profile) -> float:
    """A common frame rate inside the profile's range: the nearest one on the side we leave."""
    rates = (24.0, 25.0, 30.0, 50.0, 60.0)
    if fps > p.max_fps:
        inside = [r for r in rates if r <= p.max_fps]
        return inside[-1] if inside else p.max_fps
    inside = [r for r in rates if r >= p.min_fps]
    return inside[0] if inside else p.min_fps


def _size_budget_bps(info: MediaInfo, p: Profile) -> int:
    """Video bit/s that lands under the size limit (5 % for the container and the audio rate)."""
    audio = p.encode.audio_bps if info.has_audio else 0
    return int(p.max_size_bytes * 8 * 0.95 / max(info.duration, 0.001)) - audio


def check(info: MediaInfo, profile: Profile) -> None:
    """Raise ``MediaError`` for what cannot be fixed automatically; return if it can be.

    Messages name the platform limit and the measured value; the same numbers are on the error
    as ``limit``/``measured`` for the event.
    """
    p = profile
    name = info.path.name
    if info.container == "image":
        raise MediaError(
            "no_video_stream",
            f"{name} is a still image ({info.video_codec}), not a video",
            platform=p.name,
        )
    if not info.has_video:
        what = f"audio only ({info.audio_codec})" if info.has_audio else "no streams"
        raise MediaError("no_video_stream", f"{name} has no video stream: {what}", platform=p.name)
    if not info.video_decodable:
        # nothing can be verified, converted or thumbnailed without a decoder, even when the
        # platform might take the codec as it is
        tag = f" (codec tag {info.video_tag!r})" if info.video_tag else ""
        raise MediaError(
            "unsupported_codec",
            f"{name}: video codec {info.video_codec}{tag} cannot be decoded, so it cannot "
            f"be checked or converted; {p.label} accepts {', '.join(p.video_codecs)}",
            limit=",".join(p.video_codecs),
            measured=str(info.video_codec),
            platform=p.name,
        )
    if info.has_audio and not info.audio_decodable:
        raise MediaError(
            "unsupported_codec",
            f"{name}: audio codec {info.audio_codec} cannot be decoded, so it cannot be "
            f"checked or converted; {p.label} accepts {', '.join(p.audio_codecs)}",
            limit=",".join(p.audio_codecs),
            measured=str(info.audio_codec),
            platform=p.name,
        )
    if info.duration <= 0:
        raise MediaError("corrupt", f"{name}: the duration cannot be determined", platform=p.name)
    if info.duration > p.max_duration_s:
        raise MediaError(
            "too_long",
            f"{_allow(p)} at most {_num(p.max_duration_s)} s; this video is {info.duration:.1f} s",
            limit=p.max_duration_s,
            measured=round(info.duration, 3),
            platform=p.name,
        )
    if info.duration < p.min_duration_s:
        raise MediaError(
            "too_short",
            f"{p.label} need{'' if p.label.endswith('s') else 's'} at least "
            f"{_num(p.min_duration_s)} s; this video is {info.duration:.1f} s",
            limit=p.min_duration_s,
            measured=round(info.duration, 3),
            platform=p.name,
        )
    if info.size > p.max_size_bytes and _size_budget_bps(info, p) < MIN_VIDEO_BPS:
        raise MediaError(
            "too_large",
            f"{_allow(p)} at most {p.max_size_bytes / 1e6:.0f} MB; this video is "
            f"{info.size / 1e6:.1f} MB and {info.duration:.0f} s long, too long to fit at "
            f"{MIN_VIDEO_BPS // 1000} kbit/s or more",
            limit=p.max_size_bytes,
            measured=info.size,
            platform=p.name,
        )


def decide(info: MediaInfo, profile: Profile, loudness: Loudness | None = None) -> Decision:
    """The smallest change that makes ``info`` fit ``profile`` (pure; call ``check`` first).

    ``loudness`` is the measurement of the audio stream; ``None`` means "not measured" and
    leaves loudness out of the decision (``prepare`` always measures when there is audio).
    """
    p = profile
    codes: list[str] = []
    words: list[str] = []

    def why(code: str, text: str) -> None:
        codes.append(code)
        words.append(text)

    # -- video: geometry first (it forces a re-encode), then the other re-encode reasons
    dw, dh = info.display_width, info.display_height
    size: tuple[int, int] | None = None
    pad: str | None = None
    if not p.aspect_min <= info.aspect <= p.aspect_max:
        size, pad = _canvas(dw, dh, p), p.encode.pad
        why(
            "aspect",
            f"aspect {dw}x{dh} ({info.aspect:.3f}) outside {p.aspect_min:g}..{p.aspect_max:g}: "
            f"padded to {size[0]}x{size[1]} with {pad} bars",
        )
    elif dw > p.max_width or dh > p.max_height:
        size = _fit(dw, dh, p)
        why(
            "resolution_high",
            f"{dw}x{dh} above {p.max_width}x{p.max_height}: scaled to {size[0]}x{size[1]}",
        )
    elif dw < p.min_width or dh < p.min_height:
        size = _fit(dw, dh, p)
        why(
            "resolution_low",
            f"{dw}x{dh} below {p.min_width}x{p.min_height}: scaled to {size[0]}x{size[1]}",
        )
    reencode = bool(size)
    if info.video_codec not in p.video_codecs:
        reencode = True
        why("video_codec", f"video codec {info.video_codec}, not {'/'.join(p.video_codecs)}")
    if info.pix_fmt not in p.pix_fmts:
        reencode = True
        why("pix_fmt", f"pixel format {info.pix_fmt}, not {'/'.join(p.pix_fmts)}")
    if info.interlaced:
        reencode = True
        why("interlaced", "interlaced: deinterlaced")
    fps: float | None = None
    if info.fps and not p.min_fps - 0.01 <= info.fps <= p.max_fps + 0.01:
        reencode = True
        fps = _standard_fps(info.fps, p)
        code = "fps_high" if info.fps > p.max_fps else "fps_low"
        why(code, f"{info.fps:.3g} fps outside {p.min_fps:g}..{p.max_fps:g}: {fps:g} fps")
    if abs(info.sar - 1.0) > 0.01:
        reencode = True
        why("sar", f"non-square pixels (SAR {info.sar:.3f})")
    maxrate = p.max_video_bps
    if p.max_video_bps and info.video_bps > p.max_video_bps:
        reencode = True
        why(
            "video_bitrate",
            f"video {info.video_bps / 1e6:.1f} Mbit/s above {p.max_video_bps / 1e6:g} Mbit/s",
        )
    if info.size > p.max_size_bytes:
        reencode = True
        budget = _size_budget_bps(info, p)
        maxrate = min(maxrate, budget) if maxrate else budget
        why(
            "file_size",
            f"{info.size / 1e6:.1f} MB above {p.max_size_bytes / 1e6:.0f} MB: "
            f"re-encoded at <= {budget / 1e6:.2f} Mbit/s",
        )
    video: VideoPlan | None = None
    if reencode:
        w, h = size or (_even(dw), _even(dh))
        video = VideoPlan(
            encoder=p.encode.video_encoder,
            crf=p.encode.crf,
            preset=p.encode.preset,
            width=w,
            height=h,
            pad=pad,
            pad_color=p.encode.pad_color,
            fps=fps,
            maxrate=max(0, maxrate),
            deinterlace=info.interlaced,
            square_pixels=abs(info.sar - 1.0) > 0.01,
        )

    # -- audio
    audio: AudioPlan | None = None
    if info.has_audio:
        redo = False
        if info.audio_codec not in p.audio_codecs:
            redo = True
            why("audio_codec", f"audio codec {info.audio_codec}, not {'/'.join(p.audio_codecs)}")
        if info.sample_rate not in p.sample_rates:
            redo = True
            why(
                "sample_rate",
                f"{info.sample_rate} Hz not in {'/'.join(map(str, p.sample_rates))} Hz: "
                f"resampled to {p.target_sample_rate} Hz",
            )
        if info.channels > p.max_channels:
            redo = True
            why("channels", f"{info.channels} channels above {p.max_channels}: downmixed")
        level: Loudness | None = None
        spec = p.loudness
        if loudness is not None and spec.normalise and not loudness.silent:
            off = abs(loudness.integrated - spec.integrated) > spec.tolerance
            hot = loudness.true_peak > spec.true_peak
            if off:
                why(
                    "loudness",
                    f"loudness {loudness.integrated:.1f} LUFS outside "
                    f"{spec.integrated:g} +-{spec.tolerance:g} LU",
                )
            if hot:
                why(
                    "true_peak",
                    f"true peak {loudness.true_peak:.1f} dBTP above {spec.true_peak:g} dBTP",
                )
            if off or hot:
                redo, level = True, loudness
        if redo:
            rate = info.sample_rate if info.sample_rate in p.sample_rates else p.target_sample_rate
            audio = AudioPlan(
                encoder=p.encode.audio_encoder,
                bitrate=p.encode.audio_bps,
                sample_rate=rate,
                channels=info.channels
                if info.channels <= p.max_channels
                else min(2, p.max_channels),  # downmix to stereo (or mono)
                loudnorm=level,
                target_lufs=spec.integrated,
                target_tp=spec.true_peak - spec.headroom,
                target_lra=spec.lra,
            )

    # -- container and layout: fixed by a remux alone when the streams themselves fit
    rewrap: list[str] = []
    if info.container not in p.containers:
        rewrap.append("container")
        why("container", f"container {info.container}, not {'/'.join(p.containers)}")
    if p.faststart and info.moov_first is not True and "container" not in rewrap:
        rewrap.append("faststart")
        why("faststart", "MP4 index (moov) after the media data: moved to the front")
    if (
        info.video_codec == "hevc"
        and video is None
        and info.container in p.containers
        and info.video_tag != "hvc1"
    ):
        rewrap.append("codec_tag")
        why("codec_tag", f"HEVC tagged {info.video_tag!r}: retagged hvc1 (Apple/Instagram)")
    if info.extra_streams:
        rewrap.append("extra_streams")
        why("extra_streams", f"{info.extra_streams} extra stream(s) dropped")

    actions: list[Action] = []
    if video is not None:
        actions.append(Action.SCALE_PAD if size else Action.REENCODE)
    if audio is not None:
        actions.append(Action.AUDIO)
    if not actions and rewrap:
        actions.append(Action.REMUX)
    if not actions:
        return Decision(
            p.name, (Action.PASSTHROUGH,), ("compliant",), f"already fits {p.label}: untouched"
        )
    return Decision(p.name, tuple(actions), tuple(codes), "; ".join(words), video, audio)


# -- Shorts ------------------------------------------------------------------------------------
def is_short(info: MediaInfo, profiles: Mapping[str, Profile] | None = None) -> bool:
    """Vertical or square, and no longer than the Shorts limit → publish as a YouTube Short."""
    shorts = (profiles or load_profiles())["youtube_shorts"]
    return (
        info.has_video
        and (info.is_vertical or info.is_square)
        and info.duration <= shorts.max_duration_s
    )


def shorts_reason(info: MediaInfo, profiles: Mapping[str, Profile] | None = None) -> str:
    """Why ``is_short`` said what it said, for the task's log and the notification."""
    shorts = (profiles or load_profiles())["youtube_shorts"]
    shape = f"{info.display_width}x{info.display_height}"
    if not (info.is_vertical or info.is_square):
        return f"horizontal ({shape}): published as a normal video"
    if info.duration > shorts.max_duration_s:
        return (
            f"{info.duration:.1f} s is over the {_num(shorts.max_duration_s)} s Shorts limit: "
            "published as a normal video"
        )
    kind = "square" if info.is_square else "vertical"
    return (
        f"{kind} ({shape}) and {info.duration:.1f} s <= {_num(shorts.max_duration_s)} s: "
        "published as a Short"
    )


def profile_name_for(
    platform: str, info: MediaInfo, profiles: Mapping[str, Profile] | None = None
) -> str:
    """The profile for a publisher platform (``youtube``, ``instagram``, ``tiktok``)."""
    if platform == "youtube":
        return "youtube_shorts" if is_short(info, profiles) else "youtube"
    names = {"instagram": "instagram_reels", "tiktok": "tiktok"}
    try:
        return names[platform]
    except KeyError:
        raise ValueError(f"no media profile for platform {platform!r}") from None


# -- ffmpeg ------------------------------------------------------------------------------------
def _video_graph(v: VideoPlan, info: MediaInfo) -> str:
    """filter_complex for the video (ffmpeg has already applied the rotation)."""
    pre: list[str] = []
    if v.deinterlace:
        pre.append("bwdif=mode=send_frame")
    if v.square_pixels:
        pre.append("scale=trunc(iw*sar/2)*2:ih,setsar=1")
    if v.fps:
        pre.append(f"fps={v.fps:g}")
    head = f"[0:{info.video_index}]" + (",".join(pre) + "," if pre else "")
    w, h = v.width, v.height
    fit = f"scale={w}:{h}:force_original_aspect_ratio=decrease:force_divisible_by=2"
    if v.pad is None:
        return f"{head}scale={w}:{h},setsar=1,format=yuv420p[v]"
    if v.pad == "color":
        return (
            f"{head}{fit},pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color={v.pad_color},"
            "setsar=1,format=yuv420p[v]"
        )
    # blurred bars: blur a small copy (cheap; a blur is a low-pass anyway), scale it up to fill
    bw, bh = _even(w / 8), _even(h / 8)
    return (
        f"{head}split=2[fg][bg];"
        f"[bg]scale={bw}:{bh}:force_original_aspect_ratio=increase,crop={bw}:{bh},"
        f"gblur=sigma=3,scale={w}:{h},setsar=1[bars];"
        f"[fg]{fit},setsar=1[pic];"
        "[bars][pic]overlay=(W-w)/2:(H-h)/2,format=yuv420p[v]"
    )


def ffmpeg_args(decision: Decision, info: MediaInfo, output: Path | str) -> list[str]:
    """The ffmpeg command line for a decision (pure, so tests can read it)."""
    args = [FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-v", "error", "-y"]
    args += ["-i", tool_path(info.path)]
    v = decision.video
    if v is None:
        args += ["-map", f"0:{info.video_index}", "-c:v", "copy"]
        hevc = info.video_codec == "hevc"
    else:
        args += ["-filter_complex", _video_graph(v, info), "-map", "[v]"]
        args += ["-c:v", v.encoder, "-preset", v.preset, "-crf", str(v.crf)]
        if v.encoder == "libx264":
            args += ["-profile:v", "high"]
        else:
            args += ["-x265-params", "log-level=error"]
        if v.maxrate:
            args += ["-maxrate", str(v.maxrate), "-bufsize", str(2 * v.maxrate)]
        hevc = v.encoder == "libx265"
    if hevc:
        args += ["-tag:v", "hvc1"]
    if info.has_audio:
        args += ["-map", f"0:{info.audio_index}"]
        a = decision.audio
        if a is None:
            args += ["-c:a", "copy"]
        else:
            chain = []
            if a.loudnorm is not None:
                m = a.loudnorm
                # second pass of loudnorm with the first pass's numbers: linear (a plain gain)
                # when the peak allows it; it refuses linear mode for LRA 0, hence the floor
                chain.append(
                    f"loudnorm=I={a.target_lufs:g}:TP={a.target_tp:g}:LRA={a.target_lra:g}"
                    f":measured_I={m.integrated:.2f}:measured_TP={m.true_peak:.2f}"
                    f":measured_LRA={max(m.lra, 0.1):.2f}:measured_thresh={m.threshold:.2f}"
                    ":linear=true:print_format=none"
                )
            chain.append(f"aresample={a.sample_rate}")  # loudnorm's dynamic mode runs at 192 kHz
            args += ["-af", ",".join(chain), "-c:a", a.encoder, "-b:a", str(a.bitrate)]
            args += ["-ar", str(a.sample_rate), "-ac", str(a.channels)]
    args += ["-map_chapters", "-1", "-movflags", "+faststart", "-f", "mp4", tool_path(output)]
    return args


# -- prepare -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    """The file to upload for one profile: where it is, what it is, and what was done."""

    path: Path  # the original path on passthrough (no copy), else a file in the work dir
    profile: str
    decision: Decision
    info: MediaInfo  # ffprobe of ``path``
    sha256: str
    size: int
    loudness: Loudness | None  # of ``path``'s audio
    source_loudness: Loudness | None  # of the input's audio, before any change
    bytes_read: int  # bytes read from disk to hash ``path`` (== size: one read)
    elapsed_s: float
    verified: bool  # ``decide`` on the output finds nothing left to change
    unresolved: tuple[str, ...] = ()  # reason codes still found on the output, if any

    @property
    def passthrough(self) -> bool:
        return self.decision.passthrough

    def as_data(self) -> dict[str, Any]:
        """The ``media.prepared`` payload: the path plus sha256 and size, never the bytes."""
        return {
            "profile": self.profile,
            "path": str(self.path),
            "sha256": self.sha256,
            "size": self.size,
            "decision": self.decision.as_data(),
            "media": self.info.as_data(),
            "loudness": self.loudness.as_data() if self.loudness else None,
            "source_loudness": self.source_loudness.as_data() if self.source_loudness else None,
            "verified": self.verified,
            "unresolved": list(self.unresolved),
            "elapsed_s": round(self.elapsed_s, 3),
        }


def default_timeout(info: MediaInfo) -> float:
    """ffmpeg's time limit: generous (10x real time + a minute), it only catches a hang."""
    return 60.0 + 10.0 * max(info.duration, 1.0)


def _create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600; ffmpeg then truncates it and keeps the mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)  # in case it existed with other bits


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


async def prepare(
    path: Path | str,
    profile: Profile,
    workdir: Path | str,
    *,
    info: MediaInfo | None = None,
    name: str | None = None,
    timeout: float | None = None,
) -> Prepared:
    """Make ``path`` fit ``profile``: passthrough, or a new MP4 ``workdir/<name>``.

    Raises ``MediaError`` (from ``check``) before doing any work when the file cannot be made
    to fit. ``info`` skips the probe when the caller already has it. ``name`` defaults to
    ``<profile>.mp4``; it is written as ``<name>.part`` and renamed when complete, so a file
    with the final name is always whole.
    """
    started = time.monotonic()
    path = Path(path)
    if info is None:
        info = await probe(path)
    check(info, profile)
    limit = timeout if timeout is not None else default_timeout(info)
    measure = info.has_audio and info.audio_decodable and profile.loudness.normalise

    if decide(info, profile).passthrough:
        # a candidate: hash it and measure its loudness in the same single read (through a pipe,
        # which needs the MP4 index in front; only a profile with faststart = false lacks it)
        streamable = info.moov_first is True or info.container == "matroska"
        if measure and not streamable:
            scan = dataclasses.replace(
                await scan_file(info.path, timeout=limit),
                loudness=await measure_loudness(info.path, info.audio_index or 0, timeout=limit),
            )
        else:
            scan = await scan_file(
                info.path, audio_index=info.audio_index if measure else None, timeout=limit
            )
        decision = decide(info, profile, scan.loudness)
        if decision.passthrough:
            return Prepared(
                path=info.path,
                profile=profile.name,
                decision=decision,
                info=info,
                sha256=scan.sha256,
                size=scan.size,
                loudness=scan.loudness,
                source_loudness=scan.loudness,
                bytes_read=scan.bytes_read,
                elapsed_s=time.monotonic() - started,
                verified=True,
            )
        source_loudness = scan.loudness
    else:
        source_loudness = (
            await measure_loudness(info.path, info.audio_index or 0, timeout=limit)
            if measure
            else None
        )
        decision = decide(info, profile, source_loudness)

    out = Path(workdir) / (name or f"{profile.name}.mp4")
    part = out.with_name(out.name + ".part")
    await asyncio.to_thread(_create_private, part)
    try:
        rc, _, err = await run_tool(
            ffmpeg_args(decision, info, part),
            timeout=limit,
            what=f"ffmpeg ({decision.mode}) of {info.path.name}",
            stdout=False,
        )
        if rc != 0:
            text = tail(err)
            code = "corrupt" if "nvalid data" in text or "rror while decoding" in text else None
            raise MediaError(
                code or "ffmpeg_failed",
                f"ffmpeg could not {decision.mode} {info.path.name}: {text}",
                platform=profile.name,
            )
        await asyncio.to_thread(os.replace, part, out)
    except BaseException:
        await asyncio.to_thread(_remove, part)
        raise
    await asyncio.to_thread(os.chmod, out, 0o600)

    result = await probe(out)
    short = info.duration - result.duration
    if short > max(0.5, 0.02 * info.duration):
        raise MediaError(
            "corrupt",
            f"{info.path.name}: decoding stopped at {result.duration:.1f} s of "
            f"{info.duration:.1f} s (damaged media data)",
            measured=round(result.duration, 3),
            limit=round(info.duration, 3),
            platform=profile.name,
        )
    scan = await scan_file(
        out,
        audio_index=result.audio_index if result.has_audio else None,
        timeout=limit,
    )
    left = decide(result, profile, scan.loudness)
    if "file_size" in left.reasons:
        raise MediaError(
            "too_large",
            f"{_allow(profile)} at most {profile.max_size_bytes / 1e6:.0f} MB; the re-encoded "
            f"video is still {scan.size / 1e6:.1f} MB",
            limit=profile.max_size_bytes,
            measured=scan.size,
            platform=profile.name,
        )
    return Prepared(
        path=out,
        profile=profile.name,
        decision=decision,
        info=result,
        sha256=scan.sha256,
        size=scan.size,
        loudness=scan.loudness,
        source_loudness=source_loudness,
        bytes_read=scan.bytes_read,
        elapsed_s=time.monotonic() - started,
        verified=left.passthrough,
        unresolved=() if left.passthrough else left.reasons,
    )
