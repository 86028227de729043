"""profiles.toml: the platform limits as data, documented, and strictly validated overrides."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from fabric.media import PLATFORM_PROFILES, ProfileError, load_profiles, profile
from fabric.media.profiles import DEFAULT_PROFILES


def test_the_four_targets_with_their_published_limits() -> None:
    profiles = load_profiles()
    assert set(profiles) == {"youtube", "youtube_shorts", "instagram_reels", "tiktok"}
    assert {n for names in PLATFORM_PROFILES.values() for n in names} == set(profiles)
    reels, shorts, tiktok = (
        profiles["instagram_reels"],
        profiles["youtube_shorts"],
        profiles["tiktok"],
    )
    assert reels.max_duration_s == 900 and reels.min_duration_s == 3
    assert reels.max_width == 1920 and reels.max_video_bps == 25_000_000
    assert (reels.min_fps, reels.max_fps) == (23, 60)
    assert shorts.max_duration_s == 180 and shorts.aspect_max == 1.0
    assert tiktok.max_duration_s == 600 and tiktok.max_size_bytes == 4 * 1024**3
    assert tiktok.thumbnail.upload is False  # TikTok takes a cover timestamp, not an image
    assert profiles["youtube"].thumbnail.max_bytes == 2 * 1024**2
    for p in profiles.values():
        assert p.containers == ("mp4",)
        assert set(p.video_codecs) == {"h264", "hevc"} and p.audio_codecs == ("aac",)
        assert p.loudness.integrated == -14.0 and p.loudness.true_peak == -1.0
        assert p.target_sample_rate == 48000 and p.faststart


def test_every_value_in_the_file_says_where_it_comes_from() -> None:
    undocumented = [
        line
        for line in DEFAULT_PROFILES.read_text().splitlines()
        if re.match(r"^\w+\s*=", line) and "#" not in line and not line.startswith("label")
    ]
    assert undocumented == []


def test_override_is_merged_and_the_default_is_untouched() -> None:
    unverified = profile("youtube", {"max_duration_s": 900, "encode": {"preset": "medium"}})
    assert unverified.max_duration_s == 900.0 and isinstance(unverified.max_duration_s, float)
    assert unverified.encode.preset == "medium"
    assert unverified.encode.crf == 20  # the rest of the nested table is kept
    assert profile("youtube").max_duration_s == 43200.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        unverified.max_duration_s = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"max_duration": 900}, "unknown key 'max_duration'"),
        ({"encode": {"presett": "fast"}}, "unknown key 'presett'"),
        ({"encode": "fast"}, "expected a table"),
        ({"max_duration_s": "15 min"}, "expected float"),
        ({"max_channels": 2.5}, "expected int"),
        ({"faststart": 1}, "expected bool"),
        ({"video_codecs": "h264"}, "expected a list"),
        ({"aspect_min": 0.6, "aspect_max": 0.5}, "aspect_min <= aspect_max"),
        ({"target_sample_rate": 32000}, "target_sample_rate not in sample_rates"),
        ({"encode": {"preset": "ludicrous"}}, "encode.preset must be one of"),
        ({"encode": {"pad_color": "black,drawtext=text=x"}}, "pad_color"),
        ({"encode": {"video_encoder": "h264_nvenc"}}, "encode.video_encoder"),
        ({"name": "tiktok"}, "'name' cannot be overridden"),
    ],
)
def test_bad_override_is_an_error(override: dict[str, object], message: str) -> None:
    with pytest.raises(ProfileError) as caught:
        profile("instagram_reels", override)
    assert message in str(caught.value)
    assert caught.value.code == "bad_profile"


def test_unknown_profile_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="unknown profile 'vimeo'"):
        profile("vimeo")
    bad = tmp_path / "p.toml"
    bad.write_text("[youtube\n")
    with pytest.raises(ProfileError, match="cannot read profiles"):
        load_profiles(bad)
    partial = tmp_path / "q.toml"
    partial.write_text('[x]\nlabel = "X"\n')
    with pytest.raises(ProfileError, match="missing key"):
        load_profiles(partial)


def test_a_custom_file_loads_like_the_shipped_one(tmp_path: Path) -> None:
    copy = tmp_path / "profiles.toml"
    copy.write_text(
        DEFAULT_PROFILES.read_text().replace("max_duration_s = 900.0", "max_duration_s = 600.0")
    )
    assert load_profiles(copy)["instagram_reels"].max_duration_s == 600.0
