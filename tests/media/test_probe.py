"""probe(): ffprobe's view as a MediaInfo, checked against plain ffprobe output."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric.media import MediaError, probe
from tests.media.conftest import Make, ffprobe_json, picture, run, stream


async def test_compliant_mp4(compliant_mp4: Path) -> None:
    info = await probe(compliant_mp4)
    raw = ffprobe_json(compliant_mp4)
    assert info.container == "mp4" and info.moov_first is True
    assert info.duration == pytest.approx(float(raw["format"]["duration"]))
    assert info.size == compliant_mp4.stat().st_size == int(raw["format"]["size"])
    assert (info.video_codec, info.video_tag, info.width, info.height) == ("h264", "avc1", 320, 180)
    assert info.fps == 25.0 and info.pix_fmt == "yuv420p" and info.rotation == 0
    assert info.video_bps == int(stream(raw, "video")["bit_rate"])
    assert (info.audio_codec, info.sample_rate, info.channels) == ("aac", 48000, 2)
    assert info.has_video and info.has_audio and info.video_decodable and info.audio_decodable
    assert info.aspect == pytest.approx(16 / 9) and not info.is_vertical
    assert info.as_data() == {
        "container": "mp4",
        "duration_s": round(info.duration, 3),
        "size": info.size,
        "video_codec": "h264",
        "width": 320,
        "height": 180,
        "fps": 25.0,
        "pix_fmt": "yuv420p",
        "audio_codec": "aac",
        "sample_rate": 48000,
        "channels": 2,
    }


async def test_matroska_and_moov_position(hevc_mkv: Path, moov_last_mp4: Path) -> None:
    mkv = await probe(hevc_mkv)
    assert mkv.container == "matroska" and mkv.moov_first is None
    assert mkv.video_codec == "hevc" and mkv.video_bps > 0  # derived: Matroska has no stream rate
    assert (await probe(moov_last_mp4)).moov_first is False


async def test_rotation_makes_a_landscape_frame_vertical(
    compliant_mp4: Path, tmp_path: Path
) -> None:
    rotated = tmp_path / "rotated.mp4"
    tag = ["-metadata:s:v:0", "rotate=90"]
    run(["ffmpeg", "-v", "error", "-i", str(compliant_mp4), "-c", "copy", *tag, str(rotated)])
    info = await probe(rotated)
    assert (info.width, info.height) == (320, 180)  # stored landscape
    assert info.rotation in (90, 270)
    assert (info.display_width, info.display_height) == (180, 320)  # shown portrait
    assert info.is_vertical


async def test_audio_only_and_cover_art_are_not_video(audio_only: Path, make: Make) -> None:
    info = await probe(audio_only)
    assert not info.has_video and info.has_audio and info.container == "mp4"
    cover = make("cover.png", *picture("64x64", 1), "-frames:v", "1")
    with_art = make(
        "with_art.m4a",
        "-i",
        str(audio_only),
        "-i",
        str(cover),
        "-map",
        "0",
        "-map",
        "1",
        "-c",
        "copy",
        "-disposition:v:0",
        "attached_pic",
    )
    art = await probe(with_art)
    assert not art.has_video and art.has_audio and art.extra_streams == 0
    still = await probe(cover)
    assert still.container == "image" and not still.has_video and still.width == 64


async def test_unreadable_files_are_corrupt(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video, just text\n" * 128)  # deterministic junk
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path, words in [
        (garbage, "not a readable media file"),
        (empty, "is empty"),
        (tmp_path / "missing.mp4", "cannot read missing.mp4"),
    ]:
        with pytest.raises(MediaError) as caught:
            await probe(path)
        assert caught.value.code == "corrupt"
        assert words in str(caught.value)


async def test_truncated_faststart_file_is_caught_by_the_box_walk(
    compliant_mp4: Path, tmp_path: Path
) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(compliant_mp4.read_bytes()[:-1000])
    assert run(["ffprobe", "-v", "error", str(cut)]).returncode == 0  # ffprobe alone: fine
    with pytest.raises(MediaError) as caught:
        await probe(cut)
    assert caught.value.code == "corrupt"
    assert "'mdat' box needs" in str(caught.value)
