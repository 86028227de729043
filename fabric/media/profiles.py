"""Platform profiles: ``profiles.toml`` loaded into frozen dataclasses, with per-account overrides.

The limits are data, not code, so that a platform changing a limit (Shorts went from 60 s to
3 min) is a one-line change with its source next to it, and so that an account can differ from
the default (an unverified YouTube channel is limited to 15 minutes, a TikTok creator may be
limited to 3 minutes by ``creator_info``). Overrides are validated strictly: an unknown key or a
wrong type raises ``ProfileError`` instead of being ignored, because a silently ignored typo
would publish with the default limit.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from fabric.media.errors import ProfileError

__all__ = [
    "DEFAULT_PROFILES",
    "PLATFORM_PROFILES",
    "EncodeSpec",
    "LoudnessSpec",
    "Profile",
    "ThumbnailSpec",
    "apply_overrides",
    "load_profiles",
    "profile",
]

DEFAULT_PROFILES = Path(__file__).with_name("profiles.toml")

PLATFORM_PROFILES: Mapping[str, tuple[str, ...]] = types.MappingProxyType(
    {
        "youtube": ("youtube", "youtube_shorts"),
        "instagram": ("instagram_reels",),
        "tiktok": ("tiktok",),
    }
)
"""Which profiles a publisher platform may use (YouTube picks one per video, see ``is_short``)."""

VIDEO_ENCODERS = frozenset({"libx264", "libx265"})
X26X_PRESETS = frozenset(
    {
        "ultrafast",
        "superfast",
        "veryfast",
        "faster",
        "fast",
        "medium",
        "slow",
        "slower",
        "veryslow",
    }
)
_COLOR = re.compile(r"[A-Za-z]{1,32}|#[0-9A-Fa-f]{6}")  # goes into a filter graph: no syntax
PAD_MODES = frozenset({"blur", "color"})
THUMBNAIL_FORMATS = frozenset({"jpeg", "png"})


@dataclasses.dataclass(frozen=True, slots=True)
class LoudnessSpec:
    """Target integrated loudness (LUFS), accepted deviation (LU) and true-peak ceiling (dBTP)."""

    integrated: float
    tolerance: float
    true_peak: float
    lra: float
    headroom: float
    normalise: bool


@dataclasses.dataclass(frozen=True, slots=True)
class EncodeSpec:
    """How to encode when a re-encode is unavoidable."""

    video_encoder: str
    crf: int
    preset: str
    audio_encoder: str
    audio_bps: int
    pad: str
    pad_color: str


@dataclasses.dataclass(frozen=True, slots=True)
class ThumbnailSpec:
    """Thumbnail box (fit inside width x height), minimum width, byte limit, formats.

    ``upload`` is false where the platform takes no image (TikTok picks a frame by timestamp):
    the consumer then sends the thumbnail's time instead of the file.
    """

    width: int
    height: int
    min_width: int
    max_bytes: int
    formats: tuple[str, ...]
    upload: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    """What one publishing target accepts. See ``profiles.toml`` for each value's source."""

    name: str
    label: str
    containers: tuple[str, ...]
    video_codecs: tuple[str, ...]
    audio_codecs: tuple[str, ...]
    pix_fmts: tuple[str, ...]
    faststart: bool
    min_width: int
    min_height: int
    max_width: int
    max_height: int
    aspect_min: float
    aspect_max: float
    target_width: int
    target_height: int
    min_fps: float
    max_fps: float
    max_video_bps: int
    max_size_bytes: int
    min_duration_s: float
    max_duration_s: float
    sample_rates: tuple[int, ...]
    target_sample_rate: int
    max_channels: int
    loudness: LoudnessSpec
    encode: EncodeSpec
    thumbnail: ThumbnailSpec

    @property
    def target_aspect(self) -> float:
        return self.target_width / self.target_height


_Spec = TypeVar("_Spec", LoudnessSpec, EncodeSpec, ThumbnailSpec, Profile)
_NESTED: dict[str, type[Any]] = {
    "loudness": LoudnessSpec,
    "encode": EncodeSpec,
    "thumbnail": ThumbnailSpec,
}


def _coerce(where: str, hint: Any, value: Any) -> Any:
    """Check one TOML value against the dataclass field type; tuples for lists (hashable)."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if not isinstance(value, list | tuple):
            raise ProfileError(f"{where}: expected a list, got {type(value).__name__}")
        return tuple(_coerce(f"{where}[]", item, v) for v in value)
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, hint)
    if not ok:
        raise ProfileError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _build(cls: type[_Spec], where: str, table: Mapping[str, Any], **given: Any) -> _Spec:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - names)
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(unknown)}")
    missing = sorted(names - set(table) - set(given))
    if missing:
        raise ProfileError(f"{where}: missing key(s) {', '.join(missing)}")
    values: dict[str, Any] = dict(given)
    for key, value in table.items():
        if key in _NESTED:
            if not isinstance(value, Mapping):
                raise ProfileError(f"{where}.{key}: expected a table")
            values[key] = _build(_NESTED[key], f"{where}.{key}", value)
        else:
            values[key] = _coerce(f"{where}.{key}", hints[key], value)
    return cls(**values)


def _validate(p: Profile) -> Profile:
    """Cross-field checks: the things a per-account override most plausibly gets wrong."""
    where = f"profile {p.name}"
    problems = []
    if p.min_width > p.max_width or p.min_height > p.max_height:
        problems.append("min_width/min_height above max_width/max_height")
    if not 0 < p.aspect_min <= p.aspect_max:
        problems.append("need 0 < aspect_min <= aspect_max")
    if not p.aspect_min <= p.target_aspect <= p.aspect_max:
        problems.append("target_width/target_height outside aspect_min..aspect_max")
    if p.target_width % 2 or p.target_height % 2 or p.target_width <= 0:
        problems.append("target_width/target_height must be positive and even (4:2:0)")
    if not 0 < p.min_fps <= p.max_fps:
        problems.append("need 0 < min_fps <= max_fps")
    if not 0 <= p.min_duration_s < p.max_duration_s:
        problems.append("need 0 <= min_duration_s < max_duration_s")
    if p.max_size_bytes <= 0 or p.max_video_bps < 0:
        problems.append("max_size_bytes must be > 0 and max_video_bps >= 0")
    if p.target_sample_rate not in p.sample_rates:
        problems.append("target_sample_rate not in sample_rates")
    if p.max_channels < 1:
        problems.append("max_channels must be >= 1")
    if p.encode.video_encoder not in VIDEO_ENCODERS:
        problems.append(f"encode.video_encoder must be one of {sorted(VIDEO_ENCODERS)}")
    if p.encode.preset not in X26X_PRESETS:
        problems.append(f"encode.preset must be one of {sorted(X26X_PRESETS)}")
    if not 0 <= p.encode.crf <= 51:
        problems.append("encode.crf must be 0..51")
    if p.encode.pad not in PAD_MODES:
        problems.append(f"encode.pad must be one of {sorted(PAD_MODES)}")
    if not _COLOR.fullmatch(p.encode.pad_color):
        problems.append("encode.pad_color must be a colour name or #RRGGBB")
    if p.encode.audio_encoder != "aac":
        problems.append("encode.audio_encoder must be aac")
    if not set(p.thumbnail.formats) <= THUMBNAIL_FORMATS or not p.thumbnail.formats:
        problems.append(
            f"thumbnail.formats must be a non-empty subset of {sorted(THUMBNAIL_FORMATS)}"
        )
    if p.thumbnail.min_width > p.thumbnail.width:
        problems.append("thumbnail.min_width above thumbnail.width")
    if not -70 < p.loudness.integrated < 0 or p.loudness.tolerance <= 0:
        problems.append("loudness.integrated must be in -70..0 LUFS and tolerance > 0")
    if not 1 <= p.loudness.lra <= 20:
        problems.append("loudness.lra must be 1..20 LU (ffmpeg loudnorm's range)")
    if problems:
        raise ProfileError(f"{where}: " + "; ".join(problems))
    return p


def _profile_from(name: str, table: Mapping[str, Any]) -> Profile:
    return _validate(_build(Profile, f"profile {name}", table, name=name))


def load_profiles(path: Path | str | None = None) -> Mapping[str, Profile]:
    """All profiles of a TOML file (default: the shipped ``profiles.toml``), read-only."""
    if path is None:
        return _defaults()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"cannot read profiles {path}: {exc}") from None
    return types.MappingProxyType({n: _profile_from(n, t) for n, t in data.items()})


@functools.cache
def _defaults() -> Mapping[str, Profile]:
    return load_profiles(DEFAULT_PROFILES)


def _merge(where: str, base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if key not in base:
            raise ProfileError(f"{where}: unknown key {key!r}")
        if isinstance(base[key], Mapping):
            if not isinstance(value, Mapping):
                raise ProfileError(f"{where}.{key}: expected a table")
            out[key] = _merge(f"{where}.{key}", base[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(base: Profile, overrides: Mapping[str, Any] | None) -> Profile:
    """``base`` with ``overrides`` (a possibly nested dict, e.g. from an account's settings)
    merged over it, validated as strictly as the file itself."""
    if not overrides:
        return base
    if "name" in overrides:
        raise ProfileError(f"profile {base.name}: 'name' cannot be overridden")
    table = dataclasses.asdict(base)
    table.pop("name")
    merged = _merge(f"override of {base.name}", table, overrides)
    return _profile_from(base.name, merged)


def profile(
    name: str,
    overrides: Mapping[str, Any] | None = None,
    profiles: Mapping[str, Profile] | None = None,
) -> Profile:
    """One profile by name (``youtube``, ``youtube_shorts``, ``instagram_reels``, ``tiktok``)."""
    table = _defaults() if profiles is None else profiles
    try:
        base = table[name]
    except KeyError:
        raise ProfileError(f"unknown profile {name!r}; known: {', '.join(sorted(table))}") from None
    return apply_overrides(base, overrides)
