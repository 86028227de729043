"""decide() and check() as a table of cases: pure functions, no ffmpeg, milliseconds."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from fabric.media import (
    Action,
    Loudness,
    MediaError,
    MediaInfo,
    check,
    decide,
    ffmpeg_args,
    is_short,
    profile,
)

QUIET_OK = Loudness(integrated=-14.2, true_peak=-3.0, lra=6.0, threshold=-24.2)


def media(**changes: Any) -> MediaInfo:
    """A 30 s 1080x1920 H.264/AAC MP4 that fits every vertical profile; override fields."""
    base: dict[str, Any] = dict(
        path=Path("/media/in.mp4"),
        format_names=("mov", "mp4", "m4a", "3gp", "3g2", "mj2"),
        container="mp4",
        duration=30.0,
        size=12_000_000,
        bit_rate=3_200_000,
        moov_first=True,
        video_index=0,
        video_codec="h264",
        video_tag="avc1",
        width=1080,
        height=1920,
        fps=30.0,
        pix_fmt="yuv420p",
        video_bps=3_000_000,
        video_decodable=True,
        audio_index=1,
        audio_codec="aac",
        sample_rate=48000,
        channels=2,
        audio_bps=128_000,
        audio_decodable=True,
    )
    base.update(changes)
    return MediaInfo(**base)


REELS = profile("instagram_reels")
YOUTUBE = profile("youtube")


@pytest.mark.parametrize(
    ("changes", "loudness", "actions", "reasons"),
    [
        ({}, QUIET_OK, (Action.PASSTHROUGH,), ("compliant",)),
        ({}, None, (Action.PASSTHROUGH,), ("compliant",)),  # not measured: not judged
        ({"container": "matroska", "moov_first": None}, QUIET_OK, (Action.REMUX,), ("container",)),
        ({"moov_first": False}, QUIET_OK, (Action.REMUX,), ("faststart",)),
        ({"video_codec": "hevc", "video_tag": "hev1"}, QUIET_OK, (Action.REMUX,), ("codec_tag",)),
        (
            {"video_codec": "hevc", "video_tag": "hvc1"},
            QUIET_OK,
            (Action.PASSTHROUGH,),
            ("compliant",),
        ),
        ({"extra_streams": 1}, QUIET_OK, (Action.REMUX,), ("extra_streams",)),
        ({"sample_rate": 96000}, QUIET_OK, (Action.AUDIO,), ("sample_rate",)),
        ({"sample_rate": 44100}, QUIET_OK, (Action.PASSTHROUGH,), ("compliant",)),
        ({"channels": 6}, QUIET_OK, (Action.AUDIO,), ("channels",)),
        ({"audio_codec": "opus"}, QUIET_OK, (Action.AUDIO,), ("audio_codec",)),
        ({}, Loudness(-20.0, -8.0, 6.0, -30.0), (Action.AUDIO,), ("loudness",)),
        ({}, Loudness(-14.9, -3.0, 6.0, -25.0), (Action.PASSTHROUGH,), ("compliant",)),
        ({}, Loudness(-14.0, -0.4, 6.0, -24.0), (Action.AUDIO,), ("true_peak",)),
        ({}, Loudness(-70.0, float("-inf"), 0.0, -70.0), (Action.PASSTHROUGH,), ("compliant",)),
        ({"fps": 120.0}, QUIET_OK, (Action.REENCODE,), ("fps_high",)),
        ({"fps": 15.0}, QUIET_OK, (Action.REENCODE,), ("fps_low",)),
        ({"pix_fmt": "yuv422p"}, QUIET_OK, (Action.REENCODE,), ("pix_fmt",)),
        ({"interlaced": True}, QUIET_OK, (Action.REENCODE,), ("interlaced",)),
        ({"video_bps": 40_000_000}, QUIET_OK, (Action.REENCODE,), ("video_bitrate",)),
        ({"size": 400_000_000}, QUIET_OK, (Action.REENCODE,), ("file_size",)),
        ({"width": 2160, "height": 3840}, QUIET_OK, (Action.SCALE_PAD,), ("resolution_high",)),
        ({"width": 1920, "height": 1080}, QUIET_OK, (Action.SCALE_PAD,), ("aspect",)),
        (
            {"width": 1920, "height": 1080, "rotation": 90},
            QUIET_OK,
            (Action.PASSTHROUGH,),
            ("compliant",),
        ),
        (
            {"width": 1920, "height": 1080, "container": "matroska", "audio_codec": "opus"},
            Loudness(-9.0, -0.2, 6.0, -19.0),
            (Action.SCALE_PAD, Action.AUDIO),
            ("aspect", "audio_codec", "loudness", "true_peak", "container"),
        ),
    ],
)
def test_reels_decision_table(
    changes: dict[str, Any],
    loudness: Loudness | None,
    actions: tuple[Action, ...],
    reasons: tuple[str, ...],
) -> None:
    decision = decide(media(**changes), REELS, loudness)
    assert decision.actions == actions
    assert decision.reasons == reasons
    assert decision.reason  # always a sentence for people
    assert decision.mode is max(actions, key=list(Action).index)


def test_pad_plan_for_16_9_full_hd_is_1080x1920_blurred() -> None:
    plan = decide(media(width=1920, height=1080), REELS, QUIET_OK).video
    assert plan is not None
    assert (plan.width, plan.height, plan.pad) == (1080, 1920, "blur")
    assert plan.maxrate == 25_000_000  # Reels' bitrate cap applies to every re-encode
    assert plan.crf == REELS.encode.crf and plan.preset == REELS.encode.preset


def test_square_for_reels_gets_side_bars_at_its_own_height() -> None:
    plan = decide(media(width=720, height=720), REELS, QUIET_OK).video
    assert plan is not None and plan.pad == "blur"
    assert plan.width / plan.height == pytest.approx(9 / 16, rel=0.01)
    assert plan.width == 720  # bars above and below: the picture keeps its full width


def test_fps_and_bitrate_plans() -> None:
    fast = decide(media(fps=120.0), REELS).video
    slow = decide(media(fps=15.0), REELS).video
    assert fast is not None and fast.fps == 60.0
    assert slow is not None and slow.fps == 24.0  # the first common rate >= Reels' 23 fps
    big = decide(media(size=400_000_000, duration=600.0), REELS).video
    assert big is not None
    budget = 314_572_800 * 8 * 0.95 / 600 - 128_000
    assert big.maxrate == pytest.approx(budget, rel=0.001)


def test_small_video_is_scaled_up_to_tiktoks_minimum() -> None:
    decision = decide(media(width=320, height=568), profile("tiktok"), QUIET_OK)
    assert decision.reasons == ("resolution_low",)
    assert decision.video is not None
    assert (decision.video.width, decision.video.height) == (360, 640)


def test_anamorphic_pixels_are_made_square() -> None:
    dvd = media(width=720, height=480, sar=32 / 27)
    assert dvd.display_width == 853 and dvd.aspect == pytest.approx(16 / 9, rel=0.01)
    decision = decide(dvd, YOUTUBE, QUIET_OK)
    assert decision.reasons == ("sar",)
    assert decision.video is not None and decision.video.square_pixels
    assert (decision.video.width, decision.video.height) == (854, 480)


def test_youtube_takes_horizontal_and_vertical_as_they_are() -> None:
    assert decide(media(width=1920, height=1080), YOUTUBE, QUIET_OK).passthrough
    assert decide(media(), YOUTUBE, QUIET_OK).passthrough
    assert decide(media(sample_rate=96000, channels=6), YOUTUBE, QUIET_OK).passthrough


def test_loudnorm_plan_carries_the_first_pass_and_the_ceiling_with_headroom() -> None:
    loud = Loudness(integrated=-6.0, true_peak=0.3, lra=0.0, threshold=-16.0)
    decision = decide(media(), REELS, loud)
    assert decision.audio is not None and decision.audio.loudnorm == loud
    assert decision.audio.target_lufs == -14.0 and decision.audio.target_tp == -1.5
    args = " ".join(ffmpeg_args(decision, media(), "/work/out.mp4"))
    assert "-c:v copy" in args
    assert "loudnorm=I=-14:TP=-1.5:LRA=20:measured_I=-6.00:measured_TP=0.30" in args
    assert "measured_LRA=0.10" in args  # loudnorm refuses linear mode for an LRA of 0
    assert "linear=true" in args and "aresample=48000" in args
    assert args.endswith("-movflags +faststart -f mp4 file:/work/out.mp4")


def test_hevc_copy_is_tagged_hvc1_and_pad_graph_is_used() -> None:
    hevc = media(video_codec="hevc", video_tag="hev1")
    assert "-tag:v hvc1" in " ".join(ffmpeg_args(decide(hevc, REELS), hevc, "/o.mp4"))
    wide = media(width=1920, height=1080)
    args = ffmpeg_args(decide(wide, REELS), wide, "/o.mp4")
    graph = args[args.index("-filter_complex") + 1]
    assert "gblur" in graph and "overlay" in graph and graph.endswith("[v]")
    solid = profile("instagram_reels", {"encode": {"pad": "color", "pad_color": "#101010"}})
    args = ffmpeg_args(decide(wide, solid), wide, "/o.mp4")
    assert "pad=1080:1920:(ow-iw)/2:(oh-ih)/2:color=#101010" in " ".join(args)


@pytest.mark.parametrize(
    ("changes", "name", "code", "message"),
    [
        (
            {"duration": 901.0},
            "instagram_reels",
            "too_long",
            "Instagram Reels allow at most 900 s; this video is 901.0 s",
        ),
        (
            {"duration": 181.0},
            "youtube_shorts",
            "too_long",
            "YouTube Shorts allow at most 180 s; this video is 181.0 s",
        ),
        (
            {"duration": 600.5},
            "tiktok",
            "too_long",
            "TikTok allows at most 600 s; this video is 600.5 s",
        ),
        (
            {"duration": 2.0},
            "tiktok",
            "too_short",
            "TikTok needs at least 3 s; this video is 2.0 s",
        ),
        (
            {"video_codec": None, "video_index": None},
            "youtube",
            "no_video_stream",
            "in.mp4 has no video stream: audio only (aac)",
        ),
        (
            {"container": "image", "video_codec": "png"},
            "youtube",
            "no_video_stream",
            "in.mp4 is a still image (png), not a video",
        ),
        ({"duration": 0.0}, "youtube", "corrupt", "in.mp4: the duration cannot be determined"),
    ],
)
def test_check_rejects_what_cannot_be_fixed(
    changes: dict[str, Any], name: str, code: str, message: str
) -> None:
    with pytest.raises(MediaError) as caught:
        check(media(**changes), profile(name))
    assert caught.value.code == code
    assert str(caught.value) == message


def test_check_rejects_a_size_that_no_bitrate_can_reach() -> None:
    tiny = profile("instagram_reels", {"max_size_bytes": 10_000_000})
    with pytest.raises(MediaError) as caught:
        check(media(size=20_000_000, duration=600.0), tiny)
    assert caught.value.code == "too_large"
    assert caught.value.limit == 10_000_000 and caught.value.measured == 20_000_000
    check(media(size=400_000_000, duration=600.0), REELS)  # fixable: re-encode at ~4 Mbit/s
    assert decide(media(size=400_000_000, duration=600.0), REELS).mode is Action.REENCODE


@pytest.mark.parametrize(
    "changes",
    [
        {"video_codec": "vp9", "video_tag": "vp09", "video_decodable": False},
        {"video_codec": "h264", "video_decodable": False},  # even a codec the platform takes
        {"audio_codec": "unknown", "audio_decodable": False},
    ],
)
def test_undecodable_streams_are_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(MediaError) as caught:
        check(media(**changes), REELS)
    assert caught.value.code == "unsupported_codec"
    assert caught.value.measured in ("vp9", "h264", "unknown")
    assert "cannot be decoded" in str(caught.value)


def test_is_short_uses_the_shorts_profile_limit() -> None:
    assert is_short(media(duration=180.0))
    assert not is_short(media(duration=180.5))
    assert is_short(media(width=1080, height=1080))  # square counts
    assert not is_short(media(width=1920, height=1080))
    assert is_short(media(width=1920, height=1080, rotation=270))  # stored sideways
    longer = {
        "youtube_shorts": dataclasses.replace(profile("youtube_shorts"), max_duration_s=240.0)
    }
    assert is_short(media(duration=200.0), longer)


def test_decision_as_data_is_event_ready() -> None:
    data = decide(media(width=1920, height=1080), REELS, QUIET_OK).as_data()
    assert data["mode"] == "scale_pad" and data["actions"] == ["scale_pad"]
    assert data["reasons"] == ["aspect"]
    assert data["video"]["width"] == 1080 and data["video"]["pad"] == "blur"
    assert "aspect 1920x1080 (1.778) outside 0.55..0.575" in data["reason"]
