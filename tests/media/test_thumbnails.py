"""Thumbnails within each platform's limits, read back with ffprobe."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fabric.media import MediaError, profile, thumbnail
from tests.media.conftest import Make, ffprobe_json, stream


def image_facts(path: Path) -> tuple[str, int, int]:
    video = stream(ffprobe_json(path), "video")
    return video["codec_name"], video["width"], video["height"]


async def test_frame_from_a_wide_video_for_youtube(wide_mp4: Path, tmp_path: Path) -> None:
    thumb = await thumbnail(wide_mp4, profile("youtube"), tmp_path)
    codec, w, h = image_facts(thumb.path)
    assert codec == "mjpeg" and thumb.format == "jpeg"
    assert (w, h) == (thumb.width, thumb.height) == (640, 360)  # scaled up to the 640 px minimum
    assert thumb.path.stat().st_size == thumb.size <= 2 * 1024**2
    assert thumb.time_s == pytest.approx(0.4)  # 10 % into the 4 s clip
    assert thumb.sha256 == hashlib.sha256(thumb.path.read_bytes()).hexdigest()
    assert oct(thumb.path.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["youtube.thumb.jpg"]  # no leftovers


async def test_vertical_frame_is_padded_into_youtubes_16_9_box(
    vertical_short: Path, tmp_path: Path
) -> None:
    thumb = await thumbnail(vertical_short, profile("youtube"), tmp_path, at=1.0)
    assert image_facts(thumb.path) == ("mjpeg", 1280, 720)
    assert thumb.time_s == 1.0


async def test_tiktok_gets_a_frame_time_not_an_upload(vertical_short: Path, tmp_path: Path) -> None:
    thumb = await thumbnail(vertical_short, profile("tiktok"), tmp_path, at=2.5)
    assert not thumb.upload and thumb.as_data()["time_ms"] == 2500
    codec, w, h = image_facts(thumb.path)
    assert codec == "mjpeg" and w >= 360 and w <= 1080 and h <= 1920


async def test_oversized_supplied_image_is_downsized_under_the_byte_limit(
    make: Make, tmp_path: Path
) -> None:
    noisy = make(
        "noisy.png",
        "-f",
        "lavfi",
        "-i",
        "color=gray:size=2400x1600,noise=alls=100:allf=t",
        "-frames:v",
        "1",
    )
    assert noisy.stat().st_size > 2 * 1024**2  # too many bytes and too many pixels
    thumb = await thumbnail(noisy, profile("youtube"), tmp_path, image=noisy)
    codec, w, h = image_facts(thumb.path)
    assert codec == "mjpeg" and (w, h) == (1080, 720)  # 3:2 kept inside 1280x720
    assert thumb.size <= 2 * 1024**2 and thumb.reencoded and thumb.source == "image"


async def test_supplied_image_that_fits_is_used_as_is(make: Make, tmp_path: Path) -> None:
    cover = make(
        "cover720.jpg", "-f", "lavfi", "-i", "testsrc=size=1280x720", "-frames:v", "1", "-q:v", "4"
    )
    thumb = await thumbnail(cover, profile("youtube"), tmp_path, image=cover)
    assert thumb.path == cover and not thumb.reencoded
    assert thumb.sha256 == hashlib.sha256(cover.read_bytes()).hexdigest()
    assert list(tmp_path.iterdir()) == []
    # Instagram takes JPEG only and a 9:16 box: the same file is re-encoded for Reels
    reels = await thumbnail(cover, profile("instagram_reels"), tmp_path, image=cover)
    assert reels.path != cover and image_facts(reels.path)[0] == "mjpeg"


async def test_unreadable_image_is_a_clear_error(compliant_mp4: Path, tmp_path: Path) -> None:
    junk = tmp_path / "cover.jpg"
    junk.write_bytes(b"\x00not a picture\n" * 128)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(MediaError) as caught:
        await thumbnail(compliant_mp4, profile("youtube"), work, image=junk)
    assert caught.value.code == "bad_thumbnail"
    assert "cover.jpg is not a readable image" in str(caught.value)
    with pytest.raises(MediaError) as caught:
        await thumbnail(compliant_mp4, profile("youtube"), work, image=compliant_mp4)
    assert caught.value.code == "bad_thumbnail" and "not an image (mp4)" in str(caught.value)
    assert list(work.iterdir()) == []  # nothing left behind
