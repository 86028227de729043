"""TikTok through the Content Posting API v2 (direct post, FILE_UPLOAD).

The flow: ``creator_info/query`` (what this creator may post: privacy levels, the longest
video, whether comments/duets/stitches are off), ``video/init`` with the chunk plan
(``publish_id`` and an ``upload_url``), one PUT per chunk with ``Content-Range``, then
``status/fetch`` until ``PUBLISH_COMPLETE`` or ``FAILED``.

The chunk plan follows TikTok's rules exactly and lives in a pure function (``plan_chunks``):
chunks of 5-64 MB, ``total_chunk_count = floor(video_size / chunk_size)``, the last chunk
absorbs the remainder (up to 128 MB), files under 5 MB go whole, 1-1000 chunks. The rules are
a value (``ChunkRules``) so tests can shrink them and exercise multi-chunk uploads with
kilobytes; production uses ``TIKTOK_CHUNK_RULES``.

Progress is kept in the ``Intent``: the publish id, upload URL, the plan and the number of
chunks confirmed, so a redelivered job continues with the next chunk or goes straight to
polling, and a completed post is returned as ``recovered``.

Every TikTok answer carries ``{"error": {"code", "message", "log_id"}}``, also on HTTP 200:
``code != "ok"`` is an error whatever the status, classified by ``classify_tiktok_error``.

Tokens: access tokens live about a day; a refresh may rotate the refresh token. ``refresh``
saves the new access and refresh token together in one UPDATE (``AccountStore.save_tokens``)
the moment TikTok returns them, before anything else can fail, and a per-account lock keeps
two refreshes from racing (the loser's refresh token would already be dead).

Privacy: unaudited API clients can post only ``SELF_ONLY``. When ``creator_info`` offers only
``SELF_ONLY`` and the task asked for something more public, the publish fails with
``unaudited_app_private_only`` (PERMANENT) rather than quietly posting a private video the
user believes is public; ``allow_private_fallback`` (config or ``job.options``) posts it
private instead. Either way a private-only app is reported in ``PublishResult.details``
(``notice``: "unaudited app: posts are private (SELF_ONLY)").
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import orjson

from fabric.platforms._http import file_pieces, redact, transport_error
from fabric.platforms.base import (
    ErrorClass,
    Intent,
    IntentStore,
    InteractionJob,
    InteractionResult,
    PlatformError,
    Progress,
    PublishJob,
    PublishResult,
)
from fabric.store.accounts import AccountError, AccountStore, Credentials

__all__ = [
    "MB",
    "TIKTOK_CHUNK_RULES",
    "UNAUDITED_NOTICE",
    "ChunkPlan",
    "ChunkRules",
    "TikTokConfig",
    "TikTokPlatform",
    "classify_tiktok_error",
    "mp4_duration",
    "plan_chunks",
    "tiktok_caption",
    "tiktok_privacy",
]

log = logging.getLogger("fabric.platforms.tiktok")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], dt.datetime]

MB = 1024 * 1024
CAPTION_MAX = 2200
SELF_ONLY = "SELF_ONLY"
UNAUDITED_NOTICE = "unaudited app: posts are private (SELF_ONLY)"
PRIVACY_ALIASES = {
    "public": "PUBLIC_TO_EVERYONE",
    "everyone": "PUBLIC_TO_EVERYONE",
    "private": SELF_ONLY,
    "self": SELF_ONLY,
    "unlisted": SELF_ONLY,  # TikTok has no unlisted; the closest that is not public
    "friends": "MUTUAL_FOLLOW_FRIENDS",
    "mutual": "MUTUAL_FOLLOW_FRIENDS",
    "followers": "FOLLOWER_OF_CREATOR",
}
AUTH_CODES = frozenset(
    {
        "access_token_invalid",
        "scope_not_authorized",
        "scope_permission_missed",
        "token_not_authorized_for_specified_user",
        "auth_removed",
        "invalid_grant",
    }
)
RATE_CODES = frozenset({"rate_limit_exceeded"})
QUOTA_CODES = frozenset(
    {"spam_risk_too_many_posts", "spam_risk_too_many_pending_share", "reached_active_user_cap"}
)
TRANSIENT_CODES = frozenset({"internal_error", "internal", "server_error", "video_pull_failed"})
FINAL_OK = ("PUBLISH_COMPLETE", "SEND_TO_USER_INBOX")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- chunk math (pure) ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ChunkRules:
    """TikTok's FILE_UPLOAD limits, as a value so tests can scale them down."""

    min_chunk: int = 5 * MB
    max_chunk: int = 64 * MB
    max_last_chunk: int = 128 * MB
    max_chunks: int = 1000


TIKTOK_CHUNK_RULES = ChunkRules()


@dataclasses.dataclass(frozen=True, slots=True)
class ChunkPlan:
    """What ``video/init`` is told, and the byte ranges the PUTs send."""

    video_size: int
    chunk_size: int
    total_chunk_count: int

    def byte_range(self, index: int) -> tuple[int, int]:
        """Inclusive (first, last) byte of chunk ``index``; the last one takes the rest."""
        if not 0 <= index < self.total_chunk_count:
            raise IndexError(index)
        first = index * self.chunk_size
        last = (
            self.video_size - 1
            if index == self.total_chunk_count - 1
            else first + self.chunk_size - 1
        )
        return first, last

    def ranges(self) -> list[tuple[int, int]]:
        return [self.byte_range(i) for i in range(self.total_chunk_count)]


def plan_chunks(
    video_size: int, chunk_size: int = 10 * MB, rules: ChunkRules = TIKTOK_CHUNK_RULES
) -> ChunkPlan:
    """The chunk plan TikTok accepts for ``video_size`` bytes, near ``chunk_size``.

    - under ``min_chunk`` (5 MB): one chunk, ``chunk_size == video_size``;
    - otherwise ``chunk_size`` is clamped to 5-64 MB; a file no larger than that goes whole;
    - a file over 64 MB is always sent in at least two chunks (TikTok requires it);
    - ``total_chunk_count = video_size // chunk_size``: the remainder (less than one chunk)
      rides on the last chunk, which therefore stays under 2 x 64 = 128 MB;
    - more than ``max_chunks`` chunks: the chunk size grows until 1000 suffice.
    """
    if video_size <= 0:
        raise ValueError("video_size must be positive")
    if video_size < rules.min_chunk:
        return ChunkPlan(video_size, video_size, 1)
    size = min(max(chunk_size, rules.min_chunk), rules.max_chunk)
    if video_size <= size:
        return ChunkPlan(video_size, video_size, 1)
    if video_size > rules.max_chunk:  # "must be uploaded in multiple chunks": at least two
        size = min(size, video_size // 2)
    count = video_size // size
    if count > rules.max_chunks:
        size = -(-video_size // rules.max_chunks)
        if size > rules.max_chunk:
            raise ValueError(
                f"{video_size} bytes need chunks over {rules.max_chunk} bytes: too large"
            )
        count = video_size // size
    plan = ChunkPlan(video_size, size, count)
    first, last = plan.byte_range(count - 1)
    if last - first + 1 > rules.max_last_chunk:  # cannot happen with TikTok's numbers
        raise ValueError("the last chunk would exceed the largest allowed chunk")
    return plan


# -- other pure helpers ---------------------------------------------------------------------


def tiktok_caption(
    title: str, description: str = "", tags: tuple[str, ...] | list[str] = ()
) -> str:
    """TikTok's ``title`` is the whole caption (hashtags included), at most 2,200 chars."""
    hashtags = " ".join(f"#{''.join(str(t).lstrip('#').split())}" for t in tags if str(t).strip())
    text = "\n\n".join(p.strip() for p in (title, description) if p and p.strip())
    if hashtags and len(text) + len(hashtags) + 1 <= CAPTION_MAX:
        text = f"{text} {hashtags}".strip()
    return text[:CAPTION_MAX]


def tiktok_privacy(requested: str) -> str:
    """A task's privacy (``public``/``private``/``friends``/``followers``/``unlisted``, or a
    TikTok level as is) as a TikTok ``privacy_level``."""
    value = (requested or "private").strip()
    return PRIVACY_ALIASES.get(value.lower(), value.upper())


def mp4_duration(path: str) -> float | None:
    """Duration in seconds from the MP4/MOV ``moov/mvhd`` box, or None when not found.

    Just enough ISO-BMFF to check ``max_video_post_duration_sec`` without a media library.
    """
    try:
        with open(path, "rb") as fh:
            end = os.fstat(fh.fileno()).st_size
            return _find_mvhd(fh, 0, end, depth=0)
    except (OSError, struct.error):
        return None


def _find_mvhd(fh: Any, start: int, end: int, depth: int) -> float | None:
    pos = start
    while pos + 8 <= end and depth < 3:
        fh.seek(pos)
        size, kind = struct.unpack(">I4s", fh.read(8))
        header = 8
        if size == 1:
            size = struct.unpack(">Q", fh.read(8))[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            return None
        if kind == b"moov":
            return _find_mvhd(fh, pos + header, pos + size, depth + 1)
        if kind == b"mvhd":
            version = fh.read(1)[0]
            fh.read(3)
            if version == 1:
                _, _, scale, duration = struct.unpack(">QQIQ", fh.read(28))
            else:
                _, _, scale, duration = struct.unpack(">IIII", fh.read(16))
            return duration / scale if scale else None
        pos += size
    return None


def classify_tiktok_error(
    status: int,
    error: Mapping[str, Any] | None,
    *,
    now: dt.datetime | None = None,
    rate_limit_retry_s: float = 60.0,
) -> PlatformError:
    """Map TikTok's ``error`` object (``{"code", "message", "log_id"}``) to an error class.

    Token problems are ``AUTH``; ``rate_limit_exceeded`` is ``RATE_LIMIT``; the daily post
    caps (``spam_risk_too_many_posts`` and friends) are ``QUOTA`` for 24 h (TikTok does not
    say when they reset); internal errors and 5xx are ``TRANSIENT``; the rest is
    ``PERMANENT`` with TikTok's message and log id.
    """
    error = error or {}
    code = str(error.get("code") or (f"http_{status}" if status >= 400 else "unknown_error"))
    text = str(error.get("message") or error.get("error_description") or f"HTTP {status}")
    log_id = error.get("log_id")
    message = f"{text} (log_id {log_id})" if log_id else text
    if code in AUTH_CODES or status == 401:
        return PlatformError(ErrorClass.AUTH, code, message, status=status)
    if code in RATE_CODES or status == 429:
        return PlatformError(
            ErrorClass.RATE_LIMIT, code, message, retry_after=rate_limit_retry_s, status=status
        )
    if code in QUOTA_CODES:
        reset = (now or _utcnow()) + dt.timedelta(hours=24)
        return PlatformError(ErrorClass.QUOTA, code, message, reset_at=reset, status=status)
    if code == "unaudited_client_can_only_post_to_private_accounts":
        return PlatformError(
            ErrorClass.PERMANENT, code, f"{UNAUDITED_NOTICE}: {message}", status=status
        )
    if code in TRANSIENT_CODES or status >= 500:
        return PlatformError(ErrorClass.TRANSIENT, code, message, status=status)
    return PlatformError(ErrorClass.PERMANENT, code, message, status=status)


@dataclasses.dataclass(frozen=True, slots=True)
class TikTokConfig:
    """Where TikTok's open API lives and how the adapter paces itself."""

    api_url: str = "https://open.tiktokapis.com"
    chunk_size: int = 10 * MB
    chunk_rules: ChunkRules = TIKTOK_CHUNK_RULES
    poll_initial_s: float = 3.0
    poll_max_s: float = 30.0
    poll_factor: float = 1.5
    max_polls: int = 100
    refresh_margin: dt.timedelta = dt.timedelta(minutes=10)
    allow_private_fallback: bool = False
    rate_limit_retry_s: float = 60.0
    request_timeout_s: float = 60.0
    chunk_timeout_s: float = 1800.0

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> TikTokConfig:
        """Build from a flat settings mapping (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in settings.items() if k in names}
        if isinstance(values.get("refresh_margin"), int | float):
            values["refresh_margin"] = dt.timedelta(seconds=values["refresh_margin"])
        if isinstance(values.get("chunk_rules"), Mapping):
            values["chunk_rules"] = ChunkRules(**values["chunk_rules"])
        return cls(**values)


class TikTokPlatform:
    """Direct posts to the TikTok accounts in the account store.

    Per account: ``client_id`` is the app's client key, ``client_secret`` its secret, the
    access and refresh tokens are the user's, ``external_id`` the open id. TikTok has no
    API for comments or likes, so ``interact`` fails with ``unsupported_interaction``.
    """

    name = "tiktok"

    def __init__(
        self,
        accounts: AccountStore,
        config: TikTokConfig | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = _utcnow,
    ) -> None:
        self.accounts = accounts
        self.config = config or TikTokConfig()
        self._session = session
        self._own_session = session is None
        self._sleep = sleep
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    # -- tokens ----------------------------------------------------------------------------------
    async def _credentials(self, account: str) -> Credentials:
        try:
            await self.accounts.require("tiktok", account)
            return await self.accounts.credentials("tiktok", account)
        except AccountError as exc:
            raise PlatformError(ErrorClass.PERMANENT, exc.code, str(exc)) from None

    async def refresh(self, account: str, *, stale_token: str | None = None) -> Credentials:
        """Exchange the refresh token for a new pair and store both at once.

        ``stale_token``: the access token a caller found rejected. If another task refreshed
        meanwhile (the stored token differs), that newer pair is returned instead of
        rotating again.
        """
        lock = self._locks.setdefault(account, asyncio.Lock())
        async with lock:
            creds = await self._credentials(account)
            if stale_token is not None and creds.access_token and creds.access_token != stale_token:
                return creds
            if not creds.refresh_token or not creds.client_id or not creds.client_secret:
                raise PlatformError(
                    ErrorClass.AUTH,
                    "no_refresh_token",
                    f"tiktok account {account!r} cannot be refreshed: reconnect it",
                )
            form = {
                "client_key": creds.client_id,
                "client_secret": creds.client_secret,
                "grant_type": "refresh_token",
                "refresh_token": creds.refresh_token,
            }
            secrets = (creds.refresh_token, creds.client_secret, creds.access_token)
            url = f"{self.config.api_url.rstrip('/')}/v2/oauth/token/"
            timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_s)
            try:
                async with self._http().post(url, data=form, timeout=timeout) as resp:
                    status = resp.status
                    body = await _json_body(resp)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise transport_error(exc, *secrets) from None
            error = body.get("error")
            if isinstance(error, str) and error:  # the OAuth endpoint's own error shape
                text = redact(str(body.get("error_description") or error), *secrets)
                if error == "invalid_grant":
                    raise PlatformError(
                        ErrorClass.AUTH,
                        "refresh_token_invalid",
                        f"TikTok refused the refresh token of {account!r} ({text}):"
                        " reconnect the account",
                        status=status,
                    )
                raise classify_tiktok_error(
                    status,
                    {"code": error, "message": text, "log_id": body.get("log_id")},
                    now=self._clock(),
                )
            if isinstance(error, Mapping) and error.get("code") not in (None, "ok"):
                raise classify_tiktok_error(status, error, now=self._clock())
            nested = body.get("data")
            data: Mapping[str, Any] = nested if isinstance(nested, Mapping) else body
            access = data.get("access_token")
            if status >= 400 or not access:
                raise classify_tiktok_error(
                    status, {"code": f"http_{status}", "message": "no access token returned"}
                )
            expires = self._clock() + dt.timedelta(seconds=float(data.get("expires_in") or 86400))
            # one UPDATE: the new access and refresh token replace the old pair together
            await self.accounts.save_tokens(
                "tiktok",
                account,
                access_token=str(access),
                expires_at=expires,
                refresh_token=str(data.get("refresh_token") or "") or None,
            )
            log.info(
                "tiktok token refreshed",
                extra={"account": account, "rotated": bool(data.get("refresh_token"))},
            )
            return await self._credentials(account)

    async def refresh_token_if_due(
        self, account: str, *, margin: dt.timedelta | None = None
    ) -> bool:
        """Refresh when the access token expires within ``margin`` (default
        ``config.refresh_margin``) or its expiry is unknown; True when refreshed."""
        margin = self.config.refresh_margin if margin is None else margin
        creds = await self._credentials(account)
        if creds.access_token and creds.expires_at is not None:
            if creds.expires_at - self._clock() > margin:
                return False
        await self.refresh(account)
        return True

    async def _token(self, account: str) -> str:
        creds = await self._credentials(account)
        due = creds.expires_at is not None and creds.expires_at - self._clock() <= (
            self.config.refresh_margin
        )
        if not creds.access_token or due:
            creds = await self.refresh(account, stale_token=creds.access_token)
        assert creds.access_token is not None
        return creds.access_token

    # -- API calls -------------------------------------------------------------------------------
    async def _api(self, account: str, path: str, payload: Mapping[str, Any] | None) -> Any:
        """POST to the open API with the account's token; one refresh-and-retry on a rejected
        token (the pair may have been rotated by another process)."""
        token = await self._token(account)
        for attempt in (1, 2):
            try:
                return await self._post(path, token, payload)
            except PlatformError as exc:
                if exc.kind is not ErrorClass.AUTH or attempt == 2:
                    raise
                if exc.code != "access_token_invalid":
                    raise
                log.info("tiktok token rejected: refreshing", extra={"account": account})
                creds = await self.refresh(account, stale_token=token)
                assert creds.access_token is not None
                token = creds.access_token
        raise AssertionError("unreachable")

    async def _post(self, path: str, token: str, payload: Mapping[str, Any] | None) -> Any:
        url = f"{self.config.api_url.rstrip('/')}{path}"
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json; charset=UTF-8",
        }
        body_bytes = orjson.dumps(payload) if payload is not None else b"{}"
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_s)
        try:
            async with self._http().post(
                url, data=body_bytes, headers=headers, timeout=timeout
            ) as resp:
                status = resp.status
                body = await _json_body(resp)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc, token) from None
        error = body.get("error")
        if isinstance(error, Mapping) and str(error.get("code", "ok")) != "ok":
            raise classify_tiktok_error(
                status, error, now=self._clock(), rate_limit_retry_s=self.config.rate_limit_retry_s
            )
        if status >= 400:
            raise classify_tiktok_error(
                status, None, now=self._clock(), rate_limit_retry_s=self.config.rate_limit_retry_s
            )
        return body.get("data") or {}

    # -- publish -------------------------------------------------------------------------------
    async def publish(
        self, job: PublishJob, intent: Intent, intents: IntentStore, progress: Progress
    ) -> PublishResult:
        state = intent.state
        if state.get("status") in FINAL_OK:
            return self._result(state, recovered=True)
        size = await asyncio.to_thread(os.path.getsize, job.video_path)
        resumed = bool(state.get("publish_id")) and state.get("video_size") == size
        if state.get("publish_id") and not resumed:
            self._forget_upload(state)  # the file changed: that upload is of no use
        if not resumed:
            await self._start(job, size, intent, intents)
        sent = 0
        if not state.get("uploaded"):
            sent = await self._upload_chunks(job, intent, intents, progress)
        await self._await_publish(job, intent, intents)
        return self._result(state, resumed=resumed, bytes_sent=sent)

    async def _start(
        self, job: PublishJob, size: int, intent: Intent, intents: IntentStore
    ) -> None:
        """creator_info, the checks it allows, then video/init with the chunk plan."""
        state = intent.state
        info = await self._api(job.account, "/v2/post/publish/creator_info/query/", None)
        options = [str(o) for o in info.get("privacy_level_options") or []]
        wanted = tiktok_privacy(str(job.options.get("tiktok_privacy") or job.privacy))
        fallback = bool(
            job.options.get("allow_private_fallback", self.config.allow_private_fallback)
        )
        notice = UNAUDITED_NOTICE if options == [SELF_ONLY] else None
        if wanted not in options:
            if notice and fallback:
                wanted = SELF_ONLY
            elif notice:
                raise PlatformError(
                    ErrorClass.PERMANENT,
                    "unaudited_app_private_only",
                    f"{UNAUDITED_NOTICE}; the task asked for {wanted}. Have the TikTok app"
                    " audited, publish as private, or allow the private fallback",
                )
            else:
                raise PlatformError(
                    ErrorClass.PERMANENT,
                    "privacy_level_not_allowed",
                    f"TikTok does not allow privacy level {wanted} for this creator;"
                    f" allowed: {', '.join(options) or 'none'}",
                )
        limit = info.get("max_video_post_duration_sec")
        duration = job.options.get("duration_s")
        if duration is None:
            duration = await asyncio.to_thread(mp4_duration, job.video_path)
        if limit is not None and duration is not None and float(duration) > float(limit):
            raise PlatformError(
                ErrorClass.PERMANENT,
                "video_too_long",
                f"the video lasts {float(duration):.1f} s; this TikTok creator may post at most"
                f" {int(limit)} s",
            )
        plan = plan_chunks(size, self.config.chunk_size, self.config.chunk_rules)
        post_info: dict[str, Any] = {
            "title": tiktok_caption(job.title, job.description, job.tags),
            "privacy_level": wanted,
            "disable_comment": bool(
                info.get("comment_disabled") or job.options.get("disable_comment")
            ),
            "disable_duet": bool(info.get("duet_disabled") or job.options.get("disable_duet")),
            "disable_stitch": bool(
                info.get("stitch_disabled") or job.options.get("disable_stitch")
            ),
        }
        if job.options.get("cover_timestamp_ms") is not None:
            post_info["video_cover_timestamp_ms"] = int(job.options["cover_timestamp_ms"])
        source_info = {
            "source": "FILE_UPLOAD",
            "video_size": plan.video_size,
            "chunk_size": plan.chunk_size,
            "total_chunk_count": plan.total_chunk_count,
        }
        data = await self._api(
            job.account,
            "/v2/post/publish/video/init/",
            {"post_info": post_info, "source_info": source_info},
        )
        if not data.get("publish_id") or not data.get("upload_url"):
            raise PlatformError(
                ErrorClass.TRANSIENT, "no_publish_id", "video/init returned no publish id"
            )
        state.update(
            publish_id=str(data["publish_id"]),
            upload_url=str(data["upload_url"]),
            video_size=plan.video_size,
            chunk_size=plan.chunk_size,
            total_chunk_count=plan.total_chunk_count,
            chunks_done=0,
            uploaded=False,
            privacy_level=wanted,
            creator_username=info.get("creator_username"),
            notice=notice,
            status=None,
        )
        await intents.save(intent)
        log.info(
            "tiktok upload initialised",
            extra={
                "task_id": job.task_id,
                "publish_id": state["publish_id"],
                "chunks": plan.total_chunk_count,
            },
        )

    @staticmethod
    def _forget_upload(state: dict[str, Any]) -> None:
        for key in ("publish_id", "upload_url", "chunks_done", "uploaded", "status"):
            state.pop(key, None)

    async def _upload_chunks(
        self, job: PublishJob, intent: Intent, intents: IntentStore, progress: Progress
    ) -> int:
        """PUT the chunks not yet confirmed, in order, saving the count after each."""
        state = intent.state
        plan = ChunkPlan(
            int(state["video_size"]), int(state["chunk_size"]), int(state["total_chunk_count"])
        )
        url = str(state["upload_url"])
        sent = 0
        for index in range(int(state.get("chunks_done", 0)), plan.total_chunk_count):
            first, last = plan.byte_range(index)
            length = last - first + 1
            headers = {
                "Content-Range": f"bytes {first}-{last}/{plan.video_size}",
                "Content-Type": "video/mp4",
                "Content-Length": str(length),
            }
            done = first

            async def sent_piece(n: int) -> None:
                nonlocal done
                done += n
                await progress(done, plan.video_size)

            timeout = aiohttp.ClientTimeout(total=self.config.chunk_timeout_s)
            pieces = file_pieces(job.video_path, first, length, sent_piece)
            try:
                async with self._http().put(
                    url, data=pieces, headers=headers, timeout=timeout
                ) as resp:
                    status = resp.status
                    body = await _json_body(resp)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise transport_error(exc) from None
            finally:
                await pieces.aclose()
            if status in (403, 404, 410):
                self._forget_upload(state)  # the upload URL is gone (they last an hour)
                await intents.save(intent)
                raise PlatformError(
                    ErrorClass.TRANSIENT,
                    "upload_session_lost",
                    f"TikTok's upload URL answered HTTP {status}; the upload starts over",
                    status=status,
                )
            if status not in (200, 201, 206):
                error = body.get("error") if isinstance(body.get("error"), Mapping) else None
                raise classify_tiktok_error(status, error, now=self._clock())
            sent += length
            state["chunks_done"] = index + 1
            state["uploaded"] = index + 1 == plan.total_chunk_count
            await intents.save(intent)
        state["uploaded"] = True
        await intents.save(intent)
        return sent

    async def _await_publish(self, job: PublishJob, intent: Intent, intents: IntentStore) -> None:
        state = intent.state
        delay = self.config.poll_initial_s
        for _ in range(self.config.max_polls):
            data = await self._api(
                job.account, "/v2/post/publish/status/fetch/", {"publish_id": state["publish_id"]}
            )
            status = str(data.get("status") or "")
            if status in FINAL_OK:
                ids = data.get("publicaly_available_post_id") or []
                state.update(status=status, post_id=str(ids[0]) if ids else None)
                await intents.save(intent)
                log.info(
                    "tiktok post %s",
                    status.lower(),
                    extra={"task_id": job.task_id, "publish_id": state["publish_id"]},
                )
                return
            if status == "FAILED":
                reason = str(data.get("fail_reason") or "unknown")
                self._forget_upload(state)
                state["last_fail_reason"] = reason
                await intents.save(intent)
                raise classify_tiktok_error(
                    200,
                    {"code": reason, "message": f"TikTok could not publish the video: {reason}"},
                    now=self._clock(),
                )
            await self._sleep(delay)
            delay = min(delay * self.config.poll_factor, self.config.poll_max_s)
        raise PlatformError(
            ErrorClass.TRANSIENT,
            "publish_not_complete",
            f"publish {state['publish_id']} still processing after {self.config.max_polls} polls",
            retry_after=self.config.poll_max_s,
        )

    def _result(
        self,
        state: Mapping[str, Any],
        *,
        recovered: bool = False,
        resumed: bool = False,
        bytes_sent: int = 0,
    ) -> PublishResult:
        post = state.get("post_id")
        user = state.get("creator_username")
        url = f"https://www.tiktok.com/@{user}/video/{post}" if post and user else ""
        details: dict[str, Any] = {
            "publish_id": state.get("publish_id"),
            "privacy_level": state.get("privacy_level"),
            "status": state.get("status"),
            "chunks": state.get("total_chunk_count"),
        }
        if state.get("notice"):
            details["notice"] = state["notice"]
        if not post:
            details["note"] = "TikTok gives no public post id for private or inbox posts"
        return PublishResult(
            video_id=str(post or state.get("publish_id")),
            url=url,
            upload_id=state.get("publish_id"),
            resumed=resumed,
            recovered=recovered,
            bytes_sent=bytes_sent,
            details=details,
        )

    async def interact(
        self, job: InteractionJob, intent: Intent, intents: IntentStore
    ) -> InteractionResult:
        """The Content Posting API cannot comment or like: say so, clearly and permanently."""
        raise PlatformError(
            ErrorClass.PERMANENT,
            "unsupported_interaction",
            f"TikTok's API offers no way to {job.kind!r} a video",
        )


async def _json_body(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    raw = await resp.read()
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}
