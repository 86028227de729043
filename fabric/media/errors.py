"""Errors of the content processor, each with a machine-readable ``code``.

A ``MediaError`` is what the consumer turns into ``task.rejected`` / ``publish.failed`` *before*
any upload: the file cannot be made to fit the platform automatically (too long, no video,
corrupt, undecodable codec). Its message names the platform limit and the measured value, so a
user reading the notification knows what to change without opening a log ("Instagram Reels
allow at most 900 s; this video is 1203.4 s"); ``limit``/``measured`` carry the same numbers for
machines.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CODES", "MediaError", "ProfileError"]

CODES = frozenset(
    {
        "too_long",  # longer than the platform's maximum duration (we never cut a video)
        "too_short",  # shorter than the platform's minimum duration
        "too_large",  # cannot fit the size limit at a watchable bitrate
        "no_video_stream",  # audio-only file, or a still image
        "corrupt",  # unreadable, truncated, or decoding stopped early
        "unsupported_codec",  # no decoder for the codec, so it cannot be re-encoded either
        "bad_thumbnail",  # the supplied thumbnail image is unreadable or cannot be made to fit
        "ffmpeg_failed",  # ffmpeg/ffprobe failed for a reason that is not the file's fault
        "timeout",  # ffmpeg ran past its time limit
    }
)


class MediaError(Exception):
    """A file that cannot be published as is and cannot be fixed automatically.

    ``limit`` and ``measured`` are in the unit the message uses (seconds, bytes, pixels).
    ``platform`` is the profile name (``instagram_reels``...) when the error is about a limit.
    """

    def __init__(
        self,
        code: str,
        message: str,
        limit: float | str | None = None,
        measured: float | str | None = None,
        platform: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.limit = limit
        self.measured = measured
        self.platform = platform

    def as_data(self) -> dict[str, Any]:
        """For events (``task.rejected``/``publish.failed``): code, message and the numbers."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.limit is not None:
            out["limit"] = self.limit
        if self.measured is not None:
            out["measured"] = self.measured
        if self.platform is not None:
            out["platform"] = self.platform
        return out

    def __repr__(self) -> str:
        return f"MediaError({self.code!r}, {self.message!r})"


class ProfileError(ValueError):
    """A profile file or a per-account override that does not validate (unknown key, bad type).

    A configuration mistake, not a property of a video: raised when the override is applied,
    so a typo in an account's settings fails loudly instead of silently using the default.
    """

    code = "bad_profile"
