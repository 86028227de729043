"""Thumbnails: a frame of the video, or a supplied image, made to fit a platform's limits.

Each platform has its own box and byte limit (YouTube: 1280x720, 2 MB, JPEG/PNG; Instagram:
JPEG, 8 MB). The image is scaled to fit the box (never cropped: a user's designed cover keeps
its edges); when the fitted picture would be narrower than the platform's minimum width (a
vertical frame in a 16:9 box), it is padded to the box with blurred bars, like the video. JPEG
quality is stepped down until the file is under the byte limit. A supplied image that already
fits is used as is: same file, no re-encode.

TikTok takes no image, only a frame time (``video_cover_timestamp_ms``): ``Thumbnail.time_s``
carries the time of the extracted frame for that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

from fabric.media.errors import MediaError
from fabric.media.probe import FFMPEG, MediaInfo, probe, run_tool, tail, tool_path
from fabric.media.profiles import Profile, ThumbnailSpec

__all__ = ["Thumbnail", "default_time", "thumbnail"]

_FORMAT_OF_CODEC = {"mjpeg": "jpeg", "png": "png"}
_JPEG_QUALITIES = (2, 3, 5, 7, 10, 14, 19, 25, 31)  # ffmpeg -q:v, best first


@dataclasses.dataclass(frozen=True, slots=True)
class Thumbnail:
    """A thumbnail ready for one platform."""

    path: Path
    profile: str
    width: int
    height: int
    size: int
    format: str  # "jpeg" | "png"
    sha256: str
    source: str  # "frame" (extracted from the video) | "image" (supplied)
    time_s: float | None  # the frame's time in the video, for "frame"
    reencoded: bool  # False: the supplied image was already within the limits, used as is
    upload: bool  # False where the platform takes a frame time instead of an image (TikTok)

    def as_data(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "size": self.size,
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "source": self.source,
            "time_ms": None if self.time_s is None else round(self.time_s * 1000),
            "upload": self.upload,
        }


def _even(x: float) -> int:
    return max(2, int(x / 2 + 0.5) * 2)  # half up (round() would go to even: 426.5 -> 426)


def _create_private(*paths: Path) -> None:
    """Create the files 0600 before ffmpeg writes them: it truncates and keeps the mode."""
    for path in paths:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        os.chmod(path, 0o600)


def _nonempty(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def default_time(info: MediaInfo) -> float:
    """10 % into the video: past black openings and fades, still representative."""
    return round(max(0.0, info.duration * 0.10), 3)


def _box(width: int, height: int, spec: ThumbnailSpec) -> tuple[int, int, bool]:
    """Output size for a width x height picture, and whether it needs padding to the box."""
    scale = min(1.0, spec.width / width, spec.height / height)
    if width * scale < spec.min_width:  # small picture: scale up, as far as the box allows
        scale = min(spec.min_width / width, spec.height / height)
    w, h = _even(width * scale), _even(height * scale)
    if w < spec.min_width:  # too narrow even at full box height: pad to the box
        return spec.width, spec.height, True
    return min(w, spec.width), min(h, spec.height), False


def _graph(stream: int, w: int, h: int, pad: bool) -> str:
    """filter_complex from input stream ``stream`` to the label ``[pic]``."""
    src = f"[0:{stream}]"
    fit = f"scale={w}:{h}:force_original_aspect_ratio=decrease:force_divisible_by=2"
    if not pad:
        return f"{src}scale={w}:{h},setsar=1[pic]"
    bw, bh = _even(w / 8), _even(h / 8)
    return (
        f"{src}split=2[fg][bg];[bg]scale={bw}:{bh}:force_original_aspect_ratio=increase,"
        f"crop={bw}:{bh},gblur=sigma=3,scale={w}:{h}[bars];[fg]{fit}[front];"
        "[bars][front]overlay=(W-w)/2:(H-h)/2,setsar=1[pic]"
    )


async def _ffmpeg(args: list[str], what: str, code: str, timeout: float) -> None:
    rc, _, err = await run_tool(
        [FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-y", *args],
        timeout=timeout,
        what=what,
        stdout=False,
    )
    if rc != 0:
        raise MediaError(code, f"{what} failed: {tail(err)}")


def _digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        data = f.read()
    h.update(data)
    return h.hexdigest(), len(data)


async def _encode(
    picture: Path, out: Path, spec: ThumbnailSpec, fmt: str, timeout: float
) -> tuple[str, int]:
    """Encode the fitted picture as ``fmt`` under the byte limit (JPEG quality stepped down)."""
    qualities: tuple[int | None, ...] = _JPEG_QUALITIES if fmt == "jpeg" else (None,)
    size = 0
    for q in qualities:
        codec = ["-c:v", "mjpeg", "-q:v", str(q)] if q is not None else ["-c:v", "png"]
        await _ffmpeg(
            ["-i", tool_path(picture), *codec, "-frames:v", "1", "-f", "image2", tool_path(out)],
            f"thumbnail encoding ({fmt})",
            "bad_thumbnail",
            timeout,
        )
        sha, size = await asyncio.to_thread(_digest, out)
        if size <= spec.max_bytes:
            return sha, size
    raise MediaError(
        "bad_thumbnail",
        f"the thumbnail stays above {spec.max_bytes / 1e6:.1f} MB ({size / 1e6:.1f} MB) "
        "even at the lowest quality",
        limit=spec.max_bytes,
        measured=size,
    )


async def thumbnail(
    video: MediaInfo | Path | str,
    profile: Profile,
    workdir: Path | str,
    *,
    at: float | None = None,
    image: Path | str | None = None,
    name: str | None = None,
    timeout: float = 120.0,
) -> Thumbnail:
    """A thumbnail for ``profile``: the supplied ``image``, else the frame at ``at`` seconds
    (default ``default_time``). Written as ``workdir/<name>`` (default ``<profile>.thumb.jpg``).

    An unreadable or non-image ``image`` → ``MediaError("bad_thumbnail")``.
    """
    spec = profile.thumbnail
    fmt = "jpeg" if "jpeg" in spec.formats else spec.formats[0]
    ext = "jpg" if fmt == "jpeg" else "png"
    out = Path(workdir) / (name or f"{profile.name}.thumb.{ext}")
    picture = out.with_name(out.name + ".fit.png")  # lossless intermediate, encoded once per q
    await asyncio.to_thread(_create_private, out, picture)
    try:
        if image is not None:
            result = await _from_image(Path(image), profile, out, picture, fmt, timeout)
        else:
            result = await _from_frame(video, profile, at, out, picture, fmt, timeout)
    except BaseException:
        await asyncio.to_thread(out.unlink, missing_ok=True)
        raise
    finally:
        await asyncio.to_thread(picture.unlink, missing_ok=True)
    if result.path != out:  # the supplied image was used as is
        await asyncio.to_thread(out.unlink, missing_ok=True)
    return result


async def _from_frame(
    video: MediaInfo | Path | str,
    profile: Profile,
    at: float | None,
    out: Path,
    picture: Path,
    fmt: str,
    timeout: float,
) -> Thumbnail:
    spec = profile.thumbnail
    info = video if isinstance(video, MediaInfo) else await probe(video)
    if not info.has_video:
        raise MediaError("no_video_stream", f"{info.path.name} has no video to take a frame from")
    t = default_time(info) if at is None else at
    t = min(max(0.0, t), max(0.0, info.duration - 0.1))
    w, h, pad = _box(info.display_width, info.display_height, spec)
    await _ffmpeg(
        [
            "-ss",
            f"{t:.3f}",
            "-i",
            tool_path(info.path),
            "-filter_complex",
            _graph(info.video_index or 0, w, h, pad),
            "-map",
            "[pic]",
            "-frames:v",
            "1",
            "-c:v",
            "png",
            "-f",
            "image2",
            tool_path(picture),
        ],
        f"frame extraction at {t:.2f} s from {info.path.name}",
        "corrupt",
        timeout,
    )
    if not await asyncio.to_thread(_nonempty, picture):
        raise MediaError("corrupt", f"no frame at {t:.2f} s in {info.path.name}")
    sha, size = await _encode(picture, out, spec, fmt, timeout)
    return Thumbnail(out, profile.name, w, h, size, fmt, sha, "frame", t, True, spec.upload)


async def _from_image(
    image: Path, profile: Profile, out: Path, picture: Path, fmt: str, timeout: float
) -> Thumbnail:
    spec = profile.thumbnail
    try:
        info = await probe(image)
    except MediaError as exc:
        raise MediaError(
            "bad_thumbnail", f"thumbnail {image.name} is not a readable image: {exc.message}"
        ) from None
    if info.container != "image":
        raise MediaError(
            "bad_thumbnail", f"thumbnail {image.name} is not an image ({info.container})"
        )
    if not info.width or not info.height:
        raise MediaError(
            "bad_thumbnail",
            f"thumbnail {image.name} is not a readable image: no picture size in it "
            f"({info.video_codec} data that does not decode)",
        )
    have = _FORMAT_OF_CODEC.get(str(info.video_codec))
    w, h = info.display_width, info.display_height
    fits = (
        have in spec.formats
        and w <= spec.width
        and h <= spec.height
        and w >= min(spec.min_width, spec.width)
        and info.size <= spec.max_bytes
    )
    if fits:
        assert have is not None
        sha, size = await asyncio.to_thread(_digest, image)
        return Thumbnail(
            image, profile.name, w, h, size, have, sha, "image", None, False, spec.upload
        )
    ow, oh, pad = _box(w, h, spec)
    await _ffmpeg(
        [
            "-i",
            tool_path(image),
            "-filter_complex",
            _graph(info.video_index or 0, ow, oh, pad),
            "-map",
            "[pic]",
            "-frames:v",
            "1",
            "-c:v",
            "png",
            "-f",
            "image2",
            tool_path(picture),
        ],
        f"resizing thumbnail {image.name}",
        "bad_thumbnail",
        timeout,
    )
    sha, size = await _encode(picture, out, spec, fmt, timeout)
    return Thumbnail(out, profile.name, ow, oh, size, fmt, sha, "image", None, True, spec.upload)
