"""Content processor: per-platform profiles, checks and the smallest fix before an upload.

The consumer that emits ``media.prepared`` (per task and platform) does, for each platform:

    info = await probe(path)
    name = profile_name_for("youtube", info)            # youtube_shorts when is_short(info)
    prof = profile(name, account_overrides)
    with workdirs.scope(task_id) as work:               # 0700, removed however the task ends
        prepared = await prepare(path, prof, work, info=info)   # MediaError → task.rejected
        thumb = await thumbnail(prepared.info, prof, work)
        ... emit media.prepared with prepared.as_data(), upload, then leave the scope

Everything here is real ffmpeg/ffprobe (Debian's build: libx264, libx265, aac, ebur128,
loudnorm); nothing is hashed or decoded twice on the passthrough path.
"""

from fabric.media.errors import CODES, MediaError, ProfileError
from fabric.media.prepare import (
    Action,
    AudioPlan,
    Decision,
    Loudness,
    Prepared,
    Scan,
    VideoPlan,
    check,
    decide,
    ffmpeg_args,
    is_short,
    measure_loudness,
    prepare,
    profile_name_for,
    scan_file,
    shorts_reason,
)
from fabric.media.probe import MediaInfo, probe
from fabric.media.profiles import (
    PLATFORM_PROFILES,
    EncodeSpec,
    LoudnessSpec,
    Profile,
    ThumbnailSpec,
    apply_overrides,
    load_profiles,
    profile,
)
from fabric.media.thumbnails import Thumbnail, default_time, thumbnail
from fabric.media.workdir import CleanupStats, WorkDirs

__all__ = [
    "CODES",
    "PLATFORM_PROFILES",
    "Action",
    "AudioPlan",
    "CleanupStats",
    "Decision",
    "EncodeSpec",
    "Loudness",
    "LoudnessSpec",
    "MediaError",
    "MediaInfo",
    "Prepared",
    "Profile",
    "ProfileError",
    "Scan",
    "Thumbnail",
    "ThumbnailSpec",
    "VideoPlan",
    "WorkDirs",
    "apply_overrides",
    "check",
    "decide",
    "default_time",
    "ffmpeg_args",
    "is_short",
    "load_profiles",
    "measure_loudness",
    "prepare",
    "probe",
    "profile",
    "profile_name_for",
    "scan_file",
    "shorts_reason",
    "thumbnail",
]
