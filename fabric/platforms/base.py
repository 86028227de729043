"""The Platform seam: what every publisher adapter (local, YouTube, Instagram, TikTok) offers.

An adapter turns one ``PublishJob`` into a published video and posts interactions on it. It
never decides retries itself: failures are raised as ``PlatformError`` with a class
(``ErrorClass``) and the publisher turns that into events (retry with backoff, defer to the
quota reset, fail, or ask for re-authentication).

Outside side effects are guarded by an ``Intent``: a small persisted record per (task,
platform, account) that the adapter updates as it goes (resumable session URI and confirmed
bytes, container id, publish id, the final external id). A redelivered job reads the intent
first and resumes, polls or returns the recorded result, so a video is never uploaded twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "ErrorClass",
    "Intent",
    "IntentStore",
    "InteractionJob",
    "InteractionResult",
    "Platform",
    "PlatformError",
    "Progress",
    "PublishJob",
    "PublishResult",
]


class ErrorClass(enum.StrEnum):
    AUTH = "auth"  # token invalid/revoked: refreshed once, then the account needs reconnecting
    QUOTA = "quota"  # daily quota or publishing limit: defer until ``reset_at``
    RATE_LIMIT = "rate_limit"  # slow down: retry after ``retry_after`` seconds (with backoff)
    TRANSIENT = "transient"  # 5xx, connection reset, timeout: retry with backoff
    PERMANENT = "permanent"  # invalid title, unsupported format...: fail with the message


class PlatformError(Exception):
    """A failure of a platform call, classified. ``code`` is the platform's reason."""

    def __init__(
        self,
        kind: ErrorClass,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        reset_at: dt.datetime | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.reset_at = reset_at
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.kind in (ErrorClass.TRANSIENT, ErrorClass.RATE_LIMIT)

    def as_data(self) -> dict[str, Any]:
        """For events: no secrets, just the class, code and message."""
        out: dict[str, Any] = {"class": str(self.kind), "code": self.code, "message": self.message}
        if self.retry_after is not None:
            out["retry_after_s"] = self.retry_after
        if self.reset_at is not None:
            out["reset_at"] = self.reset_at.astimezone(dt.UTC).isoformat()
        if self.status is not None:
            out["http_status"] = self.status
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class PublishJob:
    task_id: str
    platform: str
    account: str
    video_path: str
    video_sha256: str
    video_size: int
    title: str
    description: str = ""
    tags: tuple[str, ...] = ()
    privacy: str = "private"
    attempt: int = 1
    thumbnail_path: str | None = None
    playlist_id: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # e.g. shorts, category


@dataclasses.dataclass(frozen=True, slots=True)
class PublishResult:
    video_id: str
    url: str
    upload_id: str | None = None  # the platform's upload/session/container/publish id
    resumed: bool = False  # continued an earlier, interrupted upload
    recovered: bool = False  # the video already existed: nothing was uploaded this time
    bytes_sent: int = 0
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class InteractionJob:
    task_id: str
    platform: str
    account: str
    video_id: str
    kind: str  # "comment" | "like"
    content: str = ""
    interaction_id: str = ""  # deterministic: the intent key


@dataclasses.dataclass(frozen=True, slots=True)
class InteractionResult:
    external_id: str | None
    recovered: bool = False


@dataclasses.dataclass
class Intent:
    """Persisted progress of one outside side effect. ``state`` is free-form per adapter."""

    key: str
    state: dict[str, Any]

    def get(self, name: str, default: Any = None) -> Any:
        return self.state.get(name, default)


class IntentStore(Protocol):
    async def load(self, key: str) -> Intent: ...

    async def save(self, intent: Intent) -> None:
        """Durable before it returns: a crash right after must find this state."""
        ...


Progress = Callable[[int, int], Awaitable[None]]
"""``await progress(bytes_done, bytes_total)``: called as the upload advances."""


@runtime_checkable
class Platform(Protocol):
    name: str

    async def publish(
        self, job: PublishJob, intent: Intent, intents: IntentStore, progress: Progress
    ) -> PublishResult:
        """Upload and publish the video, or resume/recover via ``intent``."""
        ...

    async def interact(
        self, job: InteractionJob, intent: Intent, intents: IntentStore
    ) -> InteractionResult:
        """Post a comment or a like on a published video, at most once per intent."""
        ...

    async def close(self) -> None: ...
