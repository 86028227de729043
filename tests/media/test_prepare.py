"""prepare() end to end on generated clips; every outcome read back with ffprobe/ffmpeg."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from fabric.media import (
    Action,
    MediaError,
    WorkDirs,
    check,
    is_short,
    prepare,
    probe,
    profile,
    profile_name_for,
    shorts_reason,
)
from fabric.media.profiles import Profile
from tests.conftest import eventually
from tests.media.conftest import FAST, ebur128, ffprobe_json, packets_md5, run, stream


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_compliant_mp4_passes_through_byte_identical(
    compliant_mp4: Path, youtube: Profile, tmp_path: Path
) -> None:
    before = sha256(compliant_mp4)
    result = await prepare(compliant_mp4, youtube, tmp_path)

    assert result.decision.actions == (Action.PASSTHROUGH,)
    assert result.decision.reasons == ("compliant",)
    assert result.path == compliant_mp4  # the original, not a copy
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert result.sha256 == before == sha256(compliant_mp4)
    assert result.size == compliant_mp4.stat().st_size
    assert result.bytes_read == result.size  # hashed and loudness-measured in one read
    assert result.loudness is not None and abs(result.loudness.integrated + 14) <= 1
    assert result.verified and result.as_data()["decision"]["mode"] == "passthrough"


async def test_wide_video_for_reels_is_padded_to_9_16_with_audio_kept(
    wide_mp4: Path, reels: Profile, tmp_path: Path
) -> None:
    result = await prepare(wide_mp4, reels, tmp_path)

    assert result.decision.actions == (Action.SCALE_PAD,)
    assert "aspect" in result.decision.reasons
    data = ffprobe_json(result.path)
    video, audio = stream(data, "video"), stream(data, "audio")
    assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
    assert video["width"] / video["height"] == pytest.approx(9 / 16, rel=0.01)
    assert video["width"] == 480  # the picture's own width: no needless upscale
    assert audio["codec_name"] == "aac" and int(audio["sample_rate"]) == 48000
    assert packets_md5(result.path, "a") == packets_md5(wide_mp4, "a")  # audio copied
    source = ffprobe_json(wide_mp4)
    assert float(data["format"]["duration"]) == pytest.approx(
        float(source["format"]["duration"]), abs=0.1
    )
    assert result.sha256 == sha256(result.path) and result.size == result.path.stat().st_size
    assert result.bytes_read == result.size
    assert result.verified, result.unresolved
    assert oct(result.path.stat().st_mode & 0o777) == "0o600"


def top_band_luma(path: Path, width: int, height: int) -> float:
    """Mean luma of the top 10 % of the frame at 1 s (where the bars are)."""
    gray = ["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    raw = run(["ffmpeg", "-v", "error", "-ss", "1", "-i", str(path), *gray]).stdout
    frame = np.frombuffer(raw, np.uint8).reshape(height, width)
    return float(frame[: height // 10].mean())


async def test_pad_with_solid_colour_is_an_option(wide_mp4: Path, tmp_path: Path) -> None:
    blurred = await prepare(wide_mp4, profile("instagram_reels", FAST), tmp_path, name="b.mp4")
    solid = await prepare(
        wide_mp4,
        profile("instagram_reels", {"encode": {"preset": "ultrafast", "pad": "color"}}),
        tmp_path,
        name="s.mp4",
    )
    w, h = solid.info.display_width, solid.info.display_height
    assert (w, h) == (blurred.info.display_width, blurred.info.display_height)
    assert top_band_luma(solid.path, w, h) < 20  # black bars (limited-range black is 16)
    assert top_band_luma(blurred.path, w, h) > 40  # the blurred, colourful test picture


async def test_loud_48k_audio_is_normalised_and_video_copied(
    loud_mp4: Path, youtube: Profile, tmp_path: Path
) -> None:
    before_i, before_tp = ebur128(loud_mp4)
    assert before_i > -8 and before_tp > -1  # the fixture really is loud

    result = await prepare(loud_mp4, youtube, tmp_path)

    assert result.decision.actions == (Action.AUDIO,)
    assert set(result.decision.reasons) == {"loudness", "true_peak"}
    integrated, true_peak = ebur128(result.path)
    assert integrated == pytest.approx(-14.0, abs=1.0)
    assert true_peak <= -1.0 + 0.2
    data = ffprobe_json(result.path)
    assert int(stream(data, "audio")["sample_rate"]) == 48000
    assert stream(data, "audio")["codec_name"] == "aac"
    assert packets_md5(result.path, "v") == packets_md5(loud_mp4, "v")  # video untouched
    assert result.source_loudness is not None and result.source_loudness.integrated > -8
    assert result.loudness is not None
    assert result.loudness.integrated == pytest.approx(integrated, abs=0.1)


async def test_hevc_in_mkv_is_remuxed_to_mp4(
    hevc_mkv: Path, youtube: Profile, tmp_path: Path
) -> None:
    result = await prepare(hevc_mkv, youtube, tmp_path)

    assert result.decision.actions == (Action.REMUX,)
    assert "container" in result.decision.reasons
    data = ffprobe_json(result.path)
    assert "mp4" in data["format"]["format_name"]
    assert data["format"]["tags"]["major_brand"] != "qt  "
    video = stream(data, "video")
    assert video["codec_name"] == "hevc" and video["codec_tag_string"] == "hvc1"
    assert stream(data, "audio")["codec_name"] == "aac"
    assert packets_md5(result.path, "v") == packets_md5(hevc_mkv, "v")  # copied, not re-encoded
    assert result.info.moov_first is True
    assert result.verified


async def test_hevc_is_reencoded_where_the_profile_takes_only_h264(
    hevc_mkv: Path, tmp_path: Path
) -> None:
    h264_only = profile("youtube", {"video_codecs": ["h264"], **FAST})
    result = await prepare(hevc_mkv, h264_only, tmp_path)

    assert result.decision.actions == (Action.REENCODE,)
    assert set(result.decision.reasons) == {"video_codec", "container"}
    data = ffprobe_json(result.path)
    assert stream(data, "video")["codec_name"] == "h264"
    assert stream(data, "audio")["codec_name"] == "aac"
    assert "mp4" in data["format"]["format_name"]


async def test_moov_at_the_end_is_remuxed_with_faststart(
    moov_last_mp4: Path, youtube: Profile, tmp_path: Path
) -> None:
    result = await prepare(moov_last_mp4, youtube, tmp_path)
    assert result.decision.actions == (Action.REMUX,)
    assert result.decision.reasons == ("faststart",)
    before, after = moov_last_mp4.read_bytes(), result.path.read_bytes()
    assert before.find(b"moov") > before.find(b"mdat")
    assert 0 < after.find(b"moov") < after.find(b"mdat")
    assert packets_md5(result.path, "v") == packets_md5(moov_last_mp4, "v")


async def test_shorts_detection(
    vertical_short: Path, vertical_181s: Path, compliant_mp4: Path
) -> None:
    short = await probe(vertical_short)
    long = await probe(vertical_181s)
    wide = await probe(compliant_mp4)

    assert short.is_vertical and is_short(short)
    assert profile_name_for("youtube", short) == "youtube_shorts"
    assert "published as a Short" in shorts_reason(short)

    assert long.is_vertical and long.duration > 180
    assert not is_short(long)
    assert profile_name_for("youtube", long) == "youtube"  # a normal video
    assert "over the 180 s Shorts limit" in shorts_reason(long)

    assert not is_short(wide) and profile_name_for("youtube", wide) == "youtube"
    assert profile_name_for("instagram", wide) == "instagram_reels"


async def test_too_long_for_reels_is_rejected_naming_limit_and_length(
    vertical_901s: Path, reels: Profile, tmp_path: Path
) -> None:
    with pytest.raises(MediaError) as caught:
        await prepare(vertical_901s, reels, tmp_path)
    err = caught.value
    assert err.code == "too_long" and err.platform == "instagram_reels"
    assert err.limit == 900.0
    assert err.measured == pytest.approx(901.0, abs=0.1)
    assert str(err) == "Instagram Reels allow at most 900 s; this video is 901.0 s"
    assert err.as_data()["limit"] == 900.0
    assert list(tmp_path.iterdir()) == []  # rejected before any work


async def test_audio_only_file_is_rejected(
    audio_only: Path, youtube: Profile, tmp_path: Path
) -> None:
    with pytest.raises(MediaError) as caught:
        await prepare(audio_only, youtube, tmp_path)
    assert caught.value.code == "no_video_stream"
    assert "audio only (aac)" in str(caught.value)


@pytest.mark.parametrize("source", ["moov_last_mp4", "compliant_mp4"])
async def test_truncated_file_is_rejected_as_corrupt(
    source: str, request: pytest.FixtureRequest, youtube: Profile, tmp_path: Path
) -> None:
    whole: Path = request.getfixturevalue(source)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(MediaError) as caught:
        await prepare(cut, youtube, tmp_path)
    assert caught.value.code == "corrupt"
    assert "cut.mp4" in str(caught.value)


async def test_undecodable_codec_is_rejected(
    compliant_mp4: Path, youtube: Profile, tmp_path: Path
) -> None:
    data = compliant_mp4.read_bytes()
    stsd = data.index(b"stsd")
    at = data.index(b"avc1", stsd)
    broken = tmp_path / "unknown.mp4"
    broken.write_bytes(data[:at] + b"xxxx" + data[at + 4 :])  # a codec tag nothing decodes

    info = await probe(broken)
    assert not info.video_decodable
    with pytest.raises(MediaError) as caught:
        check(info, youtube)
    assert caught.value.code == "unsupported_codec"
    assert "'xxxx'" in str(caught.value) and "h264, hevc" in str(caught.value)


async def test_too_short_for_reels_names_the_minimum(hevc_mkv: Path, reels: Profile) -> None:
    info = await probe(hevc_mkv)
    with pytest.raises(MediaError) as caught:
        check(info, reels)
    assert caught.value.code == "too_short" and caught.value.limit == 3.0
    assert str(caught.value).startswith("Instagram Reels need at least 3 s; this video is 2.0 s")


def ffmpeg_processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"ffmpeg" in cmdline and text.encode() in cmdline:
            found.append(int(entry))
    return found


async def test_cancelling_prepare_kills_ffmpeg_and_removes_the_work_dir(
    vertical_181s: Path, tmp_path: Path
) -> None:
    dirs = WorkDirs(tmp_path / "work")
    # 181 s at 1 fps made 24 fps with the slowest preset: ffmpeg runs for a while
    slow = profile("youtube", {"min_fps": 24.0, "encode": {"preset": "veryslow"}})
    seen: list[Path] = []

    async def job() -> None:
        with dirs.scope("task-cancel") as work:
            seen.append(work)
            await prepare(vertical_181s, slow, work)

    task = asyncio.create_task(job())
    await eventually(
        lambda: bool(seen) and bool(ffmpeg_processes_mentioning(str(seen[0]))),
        timeout=30,
        what="ffmpeg to start",
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ffmpeg_processes_mentioning(str(seen[0])) == []  # killed and reaped, not orphaned
    assert not seen[0].exists()
    assert dirs.stats.removed == 1 and dirs.stats.failed == 0
