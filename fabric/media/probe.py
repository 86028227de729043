"""What a media file is, from ffprobe: one frozen ``MediaInfo``, and the ffmpeg process runner.

ffprobe reads the container headers (and a few packets to be sure of the codec parameters),
never the whole file: probing a 4 GB upload costs milliseconds. The file is hashed later, by
``prepare``, in the one pass that also measures loudness.

For MP4/MOV files the top-level boxes are walked as well (a few 16-byte reads): that tells
whether the ``moov`` index is in front of the media data (Instagram and YouTube want it there,
and it is what lets ``prepare`` stream the file through ffmpeg while hashing it), and it catches
a truncated file whose index is intact but whose media data stops early, which ffprobe alone
reports as healthy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from fabric.media.errors import MediaError

__all__ = ["FFMPEG", "FFPROBE", "MediaInfo", "decoders", "probe", "run_tool"]

FFMPEG = os.environ.get("FABRIC_FFMPEG", "ffmpeg")
FFPROBE = os.environ.get("FABRIC_FFPROBE", "ffprobe")

_INTERLACED = frozenset({"tt", "bb", "tb", "bt"})
_MP4_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"


async def run_tool(
    args: Sequence[str], *, timeout: float, what: str, stdout: bool = True
) -> tuple[int, bytes, bytes]:
    """Run ffmpeg/ffprobe; return (exit status, stdout, stderr).

    The process is killed on timeout and on cancellation (a cancelled task must not leave an
    ffmpeg running on a CPU shared with other workers). Timeout → ``MediaError("timeout")``.
    """
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if stdout else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        raise MediaError(
            "timeout", f"{what} ran past its {timeout:.0f} s limit", limit=timeout
        ) from None
    finally:
        await reap(proc)
    assert proc.returncode is not None
    return proc.returncode, out or b"", err or b""


async def reap(proc: asyncio.subprocess.Process) -> None:
    """Kill ``proc`` if it still runs and wait for it (no zombies, no orphaned encoders)."""
    if proc.returncode is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
        await proc.wait()


def tail(stderr: bytes, limit: int = 600) -> str:
    """The end of ffmpeg's stderr, where the reason is, for error messages."""
    text = stderr.decode("utf-8", "replace").strip()
    return text[-limit:] if len(text) > limit else text


def tool_path(path: Path | str) -> str:
    """A path ffmpeg reads as a local file, never as a protocol (``x:y``) or option (``-x``)."""
    return "file:" + os.path.abspath(path)


_decoders: frozenset[str] | None = None


async def decoders() -> frozenset[str]:
    """Codec names this ffmpeg can decode (``ffprobe -codecs``), read once per process."""
    global _decoders
    if _decoders is None:
        rc, out, err = await run_tool(
            [FFPROBE, "-hide_banner", "-codecs"], timeout=30, what="ffprobe -codecs"
        )
        if rc != 0:
            raise MediaError("ffmpeg_failed", f"ffprobe -codecs failed: {tail(err)}")
        names = set()
        for line in out.decode("utf-8", "replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] == "D":
                names.add(parts[1])
        _decoders = frozenset(names)
    return _decoders


@dataclasses.dataclass(frozen=True, slots=True)
class MediaInfo:
    """ffprobe's view of one file: the first real video stream and the first audio stream.

    ``width``/``height`` are coded pixels; ``display_width``/``display_height``/``aspect`` are
    what a viewer sees after the rotation matrix and the sample aspect ratio, which is what
    "vertical" and "9:16" are about (a phone video is often stored 1920x1080 with rotation 90).
    A cover picture attached to an audio file is not a video stream.
    """

    path: Path
    format_names: tuple[str, ...]
    container: str  # "mp4", "mov", "matroska", "image", or ffprobe's first format name
    duration: float  # seconds
    size: int  # bytes
    bit_rate: int  # bit/s, whole file
    moov_first: bool | None  # MP4/MOV: index before media data; None for other containers
    video_index: int | None = None
    video_codec: str | None = None
    video_tag: str | None = None  # codec tag in the container: avc1, hvc1, hev1...
    width: int = 0
    height: int = 0
    rotation: int = 0  # 0, 90, 180, 270
    sar: float = 1.0  # sample (pixel) aspect ratio
    fps: float = 0.0
    pix_fmt: str | None = None
    interlaced: bool = False
    video_bps: int = 0
    video_decodable: bool = False
    audio_index: int | None = None
    audio_codec: str | None = None
    sample_rate: int = 0
    channels: int = 0
    audio_bps: int = 0
    audio_decodable: bool = False
    extra_streams: int = 0  # further audio/video/subtitle streams (dropped when we remux)

    @property
    def has_video(self) -> bool:
        return self.video_codec is not None and self.container != "image"

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None

    @property
    def display_width(self) -> int:
        w = round(self.width * self.sar)
        return self.height if self.rotation in (90, 270) else w

    @property
    def display_height(self) -> int:
        w = round(self.width * self.sar)
        return w if self.rotation in (90, 270) else self.height

    @property
    def aspect(self) -> float:
        """Display width / height (0.5625 for 9:16); 0.0 without video."""
        return self.display_width / self.display_height if self.display_height else 0.0

    @property
    def is_vertical(self) -> bool:
        return 0 < self.aspect < 1.0 and not self.is_square

    @property
    def is_square(self) -> bool:
        return abs(self.aspect - 1.0) < 0.01

    def as_data(self) -> dict[str, Any]:
        """The fields an event carries (``media.prepared``): no path, numbers rounded."""
        out: dict[str, Any] = {
            "container": self.container,
            "duration_s": round(self.duration, 3),
            "size": self.size,
        }
        if self.has_video:
            out.update(
                video_codec=self.video_codec,
                width=self.display_width,
                height=self.display_height,
                fps=round(self.fps, 3),
                pix_fmt=self.pix_fmt,
            )
        if self.has_audio:
            out.update(
                audio_codec=self.audio_codec,
                sample_rate=self.sample_rate,
                channels=self.channels,
            )
        return out


def _ratio(text: Any) -> float:
    try:
        num, _, den = str(text).partition("/")
        value = float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return 0.0
    return value if value > 0 else 0.0


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _rotation(stream: Mapping[str, Any]) -> int:
    angle: float = 0.0
    for side in stream.get("side_data_list") or ():
        if "rotation" in side:
            angle = _float(side["rotation"])
    tag = (stream.get("tags") or {}).get("rotate")
    if tag is not None and not angle:
        angle = _float(tag)
    return round(angle / 90) * 90 % 360


def _container(fmt: Mapping[str, Any]) -> str:
    names = str(fmt.get("format_name", ""))
    first = names.split(",")[0]
    if names == _MP4_FAMILY:
        brand = str((fmt.get("tags") or {}).get("major_brand", "")).strip().lower()
        if brand == "qt":
            return "mov"
        if brand.startswith("3g"):
            return "3gp"
        return "mp4"
    if first == "matroska":
        return "matroska"
    if first == "image2" or first.endswith("_pipe"):
        return "image"
    return first


def _mp4_layout(path: Path, size: int) -> tuple[bool | None, str | None]:
    """Walk the top-level MP4 boxes: (moov before mdat?, what is wrong if truncated)."""
    seen: list[bytes] = []
    pos = 0
    with open(path, "rb") as f:
        while pos < size and len(seen) < 10_000:
            f.seek(pos)
            head = f.read(16)
            if len(head) < 8:
                return None, f"the file ends inside a box header at byte {pos}"
            length, kind = struct.unpack(">I4s", head[:8])
            if length == 1:
                if len(head) < 16:
                    return None, f"the file ends inside a box header at byte {pos}"
                (length,) = struct.unpack(">Q", head[8:16])
            elif length == 0:
                length = size - pos
            if length < 8:
                return None, f"invalid box size {length} at byte {pos}"
            if pos + length > size:
                if kind in (b"moov", b"mdat", b"moof", b"ftyp") or not {b"moov", b"mdat"} <= set(
                    seen
                ):
                    name = kind.decode("latin-1")
                    return None, (
                        f"truncated: the {name!r} box needs {pos + length} bytes, "
                        f"the file has {size}"
                    )
                break  # trailing junk after a complete file: not our problem
            seen.append(kind)
            pos += length
    if b"moov" not in seen:
        return None, None  # fragmented or unusual layout: ffprobe decides
    moov = seen.index(b"moov")
    media = [i for i, k in enumerate(seen) if k in (b"mdat", b"moof")]
    return (not media or moov < media[0]), None


async def probe(path: Path | str, *, timeout: float = 60.0) -> MediaInfo:
    """Describe ``path``. Unreadable, truncated or not-media → ``MediaError("corrupt")``.

    Does not judge the file against a platform: an audio-only file probes fine and is rejected
    by ``prepare.check``.
    """
    path = Path(path)
    try:
        size = (await asyncio.to_thread(path.stat)).st_size
    except OSError as exc:
        raise MediaError("corrupt", f"cannot read {path.name}: {exc.strerror}") from None
    if size == 0:
        raise MediaError("corrupt", f"{path.name} is empty (0 bytes)", measured=0)
    rc, out, err = await run_tool(
        [
            FFPROBE,
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            tool_path(path),
        ],
        timeout=timeout,
        what=f"ffprobe of {path.name}",
    )
    if rc != 0:
        raise MediaError("corrupt", f"{path.name} is not a readable media file: {tail(err)}")
    try:
        data = orjson.loads(out)
    except orjson.JSONDecodeError:
        raise MediaError("corrupt", f"ffprobe gave no description of {path.name}") from None
    fmt: Mapping[str, Any] = data.get("format") or {}
    streams: list[Mapping[str, Any]] = data.get("streams") or []
    if not fmt or not streams:
        raise MediaError("corrupt", f"{path.name} has no readable streams")
    container = _container(fmt)
    moov_first: bool | None = None
    if container in ("mp4", "mov", "3gp"):
        moov_first, problem = await asyncio.to_thread(_mp4_layout, path, size)
        if problem:
            raise MediaError("corrupt", f"{path.name} is corrupt: {problem}")
    can_decode = await decoders()

    video = audio = None
    extra = 0
    for s in streams:
        kind = s.get("codec_type")
        attached = bool((s.get("disposition") or {}).get("attached_pic"))
        if kind == "video" and not attached and video is None:
            video = s
        elif kind == "audio" and audio is None:
            audio = s
        elif kind in ("video", "audio", "subtitle") and not attached:
            extra += 1

    duration = _float(fmt.get("duration"))
    if duration <= 0:
        duration = max((_float(s.get("duration")) for s in streams), default=0.0)
    bit_rate = _int(fmt.get("bit_rate"))
    fields: dict[str, Any] = {}
    if video is not None:
        codec = video.get("codec_name")
        fields.update(
            video_index=_int(video.get("index")),
            video_codec=str(codec) if codec else "unknown",
            video_tag=video.get("codec_tag_string"),
            width=_int(video.get("width")),
            height=_int(video.get("height")),
            rotation=_rotation(video),
            sar=_ratio(video.get("sample_aspect_ratio")) or 1.0,
            fps=_ratio(video.get("avg_frame_rate")) or _ratio(video.get("r_frame_rate")),
            pix_fmt=video.get("pix_fmt"),
            interlaced=video.get("field_order") in _INTERLACED,
            video_bps=_int(video.get("bit_rate")),
            video_decodable=bool(codec) and codec in can_decode,
        )
    if audio is not None:
        codec = audio.get("codec_name")
        fields.update(
            audio_index=_int(audio.get("index")),
            audio_codec=str(codec) if codec else "unknown",
            sample_rate=_int(audio.get("sample_rate")),
            channels=_int(audio.get("channels")),
            audio_bps=_int(audio.get("bit_rate")),
            audio_decodable=bool(codec) and codec in can_decode,
        )
    if video is not None and not fields["video_bps"] and bit_rate:
        # Matroska has no per-stream bit rate: the file's minus the audio's is close enough
        fields["video_bps"] = max(0, bit_rate - fields.get("audio_bps", 0))
    return MediaInfo(
        path=path,
        format_names=tuple(str(fmt.get("format_name", "")).split(",")),
        container=container,
        duration=duration,
        size=size,
        bit_rate=bit_rate,
        moov_first=moov_first,
        extra_streams=extra,
        **fields,
    )
