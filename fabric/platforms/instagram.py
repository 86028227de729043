"""Instagram Reels through the Instagram Graph API (business and creator accounts).

Publishing a Reel is three steps with a long wait in the middle: create a media container
(``POST /{ig-user-id}/media`` with ``media_type=REELS``), wait until Instagram has fetched or
received and processed the video (poll the container's ``status_code``), then
``POST /{ig-user-id}/media_publish``. Each step is guarded by the ``Intent``:

- the container id is saved *before* any polling, so a crash or a redelivery resumes polling
  the same container instead of creating a second one;
- a ``publishing`` flag is saved before ``media_publish`` and the media id right after it, so
  a redelivered job never publishes twice: a recorded media id is returned as ``recovered``,
  and a container found ``PUBLISHED`` without a recorded media id is matched back to its
  media by caption instead of being published again;
- a container that ends ``ERROR`` or ``EXPIRED`` is recreated once (the count lives in the
  intent, so a crash does not reset it), then the job fails with Instagram's message.

The publishing limit (``content_publishing_limit``) is read before every publish and used up
means ``QUOTA`` with a reset time, never a hard-coded number. The app rate limit is tracked
per account from the ``X-App-Usage`` / ``X-Business-Use-Case-Usage`` headers: above a
threshold the adapter waits before its next call (through the injectable ``sleep``, so tests
observe the delay without waiting for it), and at 100 % it raises ``RATE_LIMIT`` without
calling at all.

Tokens never travel in URLs except for ``refresh_access_token`` (the endpoint wants a query
parameter); every message built from a transport error is redacted, so no token reaches a
log line, an exception or an event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

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
from fabric.store.accounts import AccountError, AccountStore

__all__ = [
    "InstagramConfig",
    "InstagramPlatform",
    "Usage",
    "classify_graph_error",
    "parse_usage",
    "reel_caption",
]

log = logging.getLogger("fabric.platforms.instagram")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], dt.datetime]

CAPTION_MAX = 2200  # Instagram's caption limit (characters)
HASHTAGS_MAX = 30  # more hashtags than this and Instagram rejects the caption
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80002})
NOT_READY_CODE = 9007
NOT_READY_SUBCODE = 2207027
UNSUPPORTED_FORMAT_SUBCODE = 2207026
PUBLISH_LIMIT_SUBCODE = 2207042  # "reached the maximum number of posts" at media_publish
TERMINAL_STATUSES = ("FINISHED", "ERROR", "EXPIRED", "PUBLISHED")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class InstagramConfig:
    """Where the Graph API lives and how patient the adapter is.

    ``public_base_url`` switches the upload mode: when set, Instagram fetches the video from
    ``{public_base_url}/{file name}`` (``video_url``); when not, the bytes go to Instagram's
    upload host with ``upload_type=resumable``. ``upload_url`` rewrites the scheme and host
    of the upload ``uri`` Instagram returns (for proxies and fakes); ``None`` uses it as is.
    """

    graph_url: str = "https://graph.instagram.com"
    api_version: str = "v21.0"
    upload_url: str | None = None
    public_base_url: str | None = None
    poll_initial_s: float = 3.0
    poll_max_s: float = 30.0
    poll_factor: float = 1.5
    max_polls: int = 60  # ~25 min with the defaults; then TRANSIENT and the next try resumes
    max_not_ready_publishes: int = 5  # media_publish answered 9007: wait and try again
    recreate_limit: int = 1  # ERROR/EXPIRED containers recreated at most this many times
    usage_threshold_pct: float = 75.0  # slow down above this app/BUC usage percentage
    usage_max_delay_s: float = 120.0  # delay before a call at 100 % (linear from threshold)
    usage_ttl_s: float = 3600.0  # a usage reading older than this is ignored
    rate_limit_retry_s: float = 300.0  # retry_after when Instagram does not say
    token_life: dt.timedelta = dt.timedelta(days=60)
    token_min_age: dt.timedelta = dt.timedelta(hours=24)  # Instagram refuses younger tokens
    refresh_margin: dt.timedelta = dt.timedelta(days=10)
    request_timeout_s: float = 60.0
    upload_timeout_s: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> InstagramConfig:
        """Build from a flat settings mapping (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in settings.items() if k in names}
        for key in ("token_life", "token_min_age", "refresh_margin"):
            if isinstance(values.get(key), int | float):
                values[key] = dt.timedelta(seconds=values[key])
        return cls(**values)


# -- pure helpers ---------------------------------------------------------------------------


def reel_caption(title: str, description: str = "", tags: tuple[str, ...] | list[str] = ()) -> str:
    """Title, description and hashtags as one caption within Instagram's limits.

    Hashtags are normalised (no ``#``, no spaces), de-duplicated and capped at 30; the
    caption is cut to 2,200 characters, keeping the title and as many hashtags as fit.
    """
    seen: list[str] = []
    for tag in tags:
        clean = "".join(str(tag).lstrip("#").split())
        if clean and clean.lower() not in (s.lower() for s in seen):
            seen.append(clean)
    hashtags = " ".join(f"#{t}" for t in seen[:HASHTAGS_MAX])
    body = "\n\n".join(p.strip() for p in (title, description) if p and p.strip())
    if hashtags:
        room = CAPTION_MAX - len(hashtags) - 2
        if room < len(title.strip()):
            hashtags = ""
        else:
            body = body[:room]
    caption = f"{body}\n\n{hashtags}" if hashtags and body else body or hashtags
    return caption[:CAPTION_MAX]


@dataclasses.dataclass(frozen=True, slots=True)
class Usage:
    """The highest usage percentage Instagram reported, and when access returns if blocked."""

    percent: float
    regain_s: float = 0.0


def parse_usage(headers: Mapping[str, str]) -> Usage | None:
    """Read ``X-App-Usage`` and ``X-Business-Use-Case-Usage`` (percentages of the limits).

    ``X-App-Usage`` is ``{"call_count", "total_time", "total_cputime"}``;
    ``X-Business-Use-Case-Usage`` maps a business id to a list of the same, plus
    ``estimated_time_to_regain_access`` in minutes. The worst number wins.
    """
    percents: list[float] = []
    regain = 0.0

    def take(entry: Any) -> None:
        nonlocal regain
        if not isinstance(entry, Mapping):
            return
        for key in ("call_count", "total_time", "total_cputime"):
            value = entry.get(key)
            if isinstance(value, int | float):
                percents.append(float(value))
        minutes = entry.get("estimated_time_to_regain_access")
        if isinstance(minutes, int | float):
            regain = max(regain, float(minutes) * 60.0)

    for name in ("X-App-Usage", "X-Business-Use-Case-Usage"):
        raw = headers.get(name)
        if not raw:
            continue
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if name == "X-App-Usage":
            take(parsed)
        elif isinstance(parsed, Mapping):
            for entries in parsed.values():
                for entry in entries if isinstance(entries, list) else [entries]:
                    take(entry)
    if not percents and not regain:
        return None
    return Usage(max(percents, default=0.0), regain)


def classify_graph_error(
    status: int,
    error: Mapping[str, Any] | None,
    *,
    retry_after: float = 300.0,
    now: dt.datetime | None = None,
) -> PlatformError:
    """Map a Graph API error body (``{"error": {...}}``'s inner object) to an error class.

    190 means the token is invalid or expired (``AUTH``: the account needs reconnecting);
    4/17/32/613 (and 80002, Instagram's own) are rate limits; 9007 or subcode 2207027 is
    "media not ready" (``TRANSIENT`` with code ``media_not_ready``: the adapter keeps
    polling); 2207026 is an unsupported video format (``PERMANENT``); 2207042 is the
    publishing limit (``QUOTA``); ``is_transient`` or a 5xx is ``TRANSIENT``; the rest is
    ``PERMANENT`` with Instagram's message. Codes read ``graph_{code}[_{subcode}]``.
    """
    error = error or {}
    code = _int(error.get("code"))
    sub = _int(error.get("error_subcode"))
    text = str(error.get("error_user_msg") or error.get("message") or f"HTTP {status}")
    trace = error.get("fbtrace_id")
    message = f"{text} (fbtrace_id {trace})" if trace else text
    name = "graph" + (f"_{code}" if code is not None else f"_http_{status}")
    name += f"_{sub}" if sub is not None else ""
    if code == 190:
        return PlatformError(
            ErrorClass.AUTH, name, f"access token invalid or expired: {message}", status=status
        )
    if code in RATE_LIMIT_CODES:
        return PlatformError(
            ErrorClass.RATE_LIMIT, name, message, retry_after=retry_after, status=status
        )
    if code == NOT_READY_CODE or sub == NOT_READY_SUBCODE:
        return PlatformError(ErrorClass.TRANSIENT, "media_not_ready", message, status=status)
    if sub == UNSUPPORTED_FORMAT_SUBCODE or code == UNSUPPORTED_FORMAT_SUBCODE:
        return PlatformError(
            ErrorClass.PERMANENT, name, f"unsupported video format: {message}", status=status
        )
    if sub == PUBLISH_LIMIT_SUBCODE:
        return PlatformError(
            ErrorClass.QUOTA,
            name,
            message,
            reset_at=(now or _utcnow()) + dt.timedelta(hours=24),
            status=status,
        )
    if error.get("is_transient") or code in (1, 2) or status >= 500:
        return PlatformError(
            ErrorClass.TRANSIENT, name, message, retry_after=retry_after / 10, status=status
        )
    return PlatformError(ErrorClass.PERMANENT, name, message, status=status)


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


@dataclasses.dataclass(slots=True)
class _UsageSeen:
    usage: Usage
    at: dt.datetime


# -- the adapter ----------------------------------------------------------------------------


class InstagramPlatform:
    """Publishes Reels and posts comments for the Instagram accounts in the account store.

    An account's ``external_id`` (or ``settings["ig_user_id"]``) is the IG user id; its
    access token is the long-lived Instagram user token. ``sleep`` and ``clock`` are
    injectable so tests drive polling, backoff and token age without real waiting.
    """

    name = "instagram"

    def __init__(
        self,
        accounts: AccountStore,
        config: InstagramConfig | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = _utcnow,
    ) -> None:
        self.accounts = accounts
        self.config = config or InstagramConfig()
        self._session = session
        self._own_session = session is None
        self._sleep = sleep
        self._clock = clock
        self._usage: dict[str, _UsageSeen] = {}
        self._blocked_until: dict[str, dt.datetime] = {}

    # -- plumbing ------------------------------------------------------------------------------
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    def usage(self, account: str) -> Usage | None:
        """The last usage Instagram reported for ``account`` (None when unknown or stale)."""
        seen = self._usage.get(account)
        if seen is None or (self._clock() - seen.at).total_seconds() > self.config.usage_ttl_s:
            return None
        return seen.usage

    def _track(self, account: str, headers: Mapping[str, str]) -> None:
        usage = parse_usage(headers)
        if usage is None:
            return
        now = self._clock()
        self._usage[account] = _UsageSeen(usage, now)
        if usage.percent >= 100.0:
            wait = usage.regain_s or self.config.rate_limit_retry_s
            self._blocked_until[account] = now + dt.timedelta(seconds=wait)
        else:
            self._blocked_until.pop(account, None)

    def _retry_after(self, account: str) -> float:
        usage = self.usage(account)
        if usage is not None and usage.regain_s > 0:
            return usage.regain_s
        return self.config.rate_limit_retry_s

    async def _throttle(self, account: str) -> None:
        """Slow down before the limit, not after: the delay grows linearly with usage above
        the threshold; at 100 % the call is not made at all (RATE_LIMIT until regained)."""
        now = self._clock()
        until = self._blocked_until.get(account)
        if until is not None and now < until:
            raise PlatformError(
                ErrorClass.RATE_LIMIT,
                "app_usage_exhausted",
                f"Instagram API usage for {account!r} is at 100%; waiting for it to recover",
                retry_after=(until - now).total_seconds(),
            )
        usage = self.usage(account)
        threshold = self.config.usage_threshold_pct
        if usage is None or usage.percent < threshold:
            return
        share = min(1.0, (usage.percent - threshold) / max(1e-9, 100.0 - threshold))
        delay = max(1.0, self.config.usage_max_delay_s * share)
        log.info(
            "instagram usage high: slowing down",
            extra={"account": account, "usage_pct": usage.percent, "delay_s": delay},
        )
        await self._sleep(delay)

    async def _graph(
        self,
        method: str,
        path: str,
        *,
        account: str,
        token: str,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        await self._throttle(account)
        url = f"{self.config.graph_url.rstrip('/')}/{self.config.api_version}/{path.lstrip('/')}"
        headers = {"Authorization": f"OAuth {token}"}
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_s)
        try:
            async with self._http().request(
                method, url, params=params, data=data, headers=headers, timeout=timeout
            ) as resp:
                self._track(account, resp.headers)
                status = resp.status
                body = await _json_body(resp)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc, token) from None
        error = body.get("error")
        if status >= 400 or isinstance(error, Mapping):
            raise classify_graph_error(
                status,
                error if isinstance(error, Mapping) else None,
                retry_after=self._retry_after(account),
                now=self._clock(),
            )
        return body

    async def _account(self, account: str) -> tuple[str, str]:
        """(IG user id, access token) of an enabled account with a usable token."""
        try:
            acct = await self.accounts.require("instagram", account)
            creds = await self.accounts.credentials("instagram", account)
        except AccountError as exc:
            raise PlatformError(ErrorClass.PERMANENT, exc.code, str(exc)) from None
        ig_user = acct.external_id or acct.settings.get("ig_user_id")
        if not ig_user:
            raise PlatformError(
                ErrorClass.PERMANENT,
                "missing_ig_user_id",
                f"instagram account {account!r} has no IG user id (external_id)",
            )
        if not creds.access_token:
            raise PlatformError(
                ErrorClass.AUTH, "no_token", f"instagram account {account!r} is not connected"
            )
        if creds.expires_at is not None and creds.expires_at <= self._clock():
            raise PlatformError(
                ErrorClass.AUTH,
                "token_expired",
                f"the Instagram token of {account!r} expired on"
                f" {creds.expires_at.isoformat()}: reconnect the account",
            )
        return str(ig_user), creds.access_token

    # -- token refresh ---------------------------------------------------------------------------
    async def refresh_token_if_due(
        self, account: str, *, margin: dt.timedelta | None = None
    ) -> bool:
        """Refresh the long-lived token when it is due; True when it was refreshed.

        Instagram only refreshes a token that is at least 24 h old and not yet expired, so
        "due" means: older than ``token_min_age`` and expiring within ``margin`` (default
        ``config.refresh_margin``) of its 60-day life. An expired token cannot be refreshed:
        that is ``AUTH`` (the account needs reconnecting).
        """
        margin = self.config.refresh_margin if margin is None else margin
        creds = await self.accounts.credentials("instagram", account)
        token = creds.access_token
        if not token:
            raise PlatformError(
                ErrorClass.AUTH, "no_token", f"instagram account {account!r} is not connected"
            )
        now = self._clock()
        issued = creds.issued_at
        expires = creds.expires_at or (issued + self.config.token_life if issued else None)
        if expires is not None and expires <= now:
            raise PlatformError(
                ErrorClass.AUTH,
                "token_expired",
                f"the Instagram token of {account!r} expired: reconnect the account",
            )
        if issued is not None and now - issued < self.config.token_min_age:
            return False
        if expires is not None and expires - now > margin:
            return False
        await self._throttle(account)
        url = f"{self.config.graph_url.rstrip('/')}/refresh_access_token"
        params = {"grant_type": "ig_refresh_token", "access_token": token}
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_s)
        try:
            async with self._http().get(url, params=params, timeout=timeout) as resp:
                self._track(account, resp.headers)
                status = resp.status
                body = await _json_body(resp)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc, token) from None
        error = body.get("error")
        if status >= 400 or isinstance(error, Mapping) or not body.get("access_token"):
            raise classify_graph_error(
                status,
                error if isinstance(error, Mapping) else {"message": "no token in the answer"},
                retry_after=self._retry_after(account),
            )
        expires_in = float(body.get("expires_in") or self.config.token_life.total_seconds())
        await self.accounts.save_tokens(
            "instagram",
            account,
            access_token=str(body["access_token"]),
            expires_at=now + dt.timedelta(seconds=expires_in),
        )
        log.info("instagram token refreshed", extra={"account": account, "expires_in": expires_in})
        return True

    # -- publish -------------------------------------------------------------------------------
    async def publish(
        self, job: PublishJob, intent: Intent, intents: IntentStore, progress: Progress
    ) -> PublishResult:
        state = intent.state
        if state.get("media_id"):
            return self._result(state, recovered=True)
        ig_user, token = await self._account(job.account)
        call = _Caller(self, job.account, token)
        resumed = bool(state.get("container_id"))
        if state.get("publishing") and state.get("container_id"):
            status, _ = await self._status_once(call, state["container_id"])
            if status == "PUBLISHED":
                return await self._recover_published(call, ig_user, intent, intents)
        await self._check_limit(call, ig_user, job.account)
        sent = 0
        while True:
            if not state.get("container_id"):
                await self._create_container(call, ig_user, job, intent, intents)
            if not state.get("uploaded"):
                sent += await self._upload(call, job, intent, intents, progress)
            status, message = await self._await_container(call, state["container_id"])
            if status in ("FINISHED", "PUBLISHED"):
                break
            created = int(state.get("containers_created", 1))
            log.warning(
                "instagram container ended %s",
                status,
                extra={"task_id": job.task_id, "container_id": state["container_id"]},
            )
            if created > self.config.recreate_limit:
                # forget the dead containers: a manual `task retry` starts afresh
                state.update(
                    container_id=None,
                    uploaded=False,
                    publishing=False,
                    containers_created=0,
                    last_container_status=status,
                    last_error=message,
                )
                await intents.save(intent)
                raise PlatformError(
                    ErrorClass.PERMANENT,
                    f"container_{status.lower()}",
                    message or f"the media container ended {status}",
                )
            state.update(
                container_id=None, uploaded=False, publishing=False, last_container_status=status
            )
            await intents.save(intent)
        if sent == 0:  # video_url mode, or the bytes went up in an earlier attempt
            await progress(job.video_size, job.video_size)
        if status == "PUBLISHED":
            return await self._recover_published(call, ig_user, intent, intents)
        await self._media_publish(call, ig_user, job, intent, intents)
        return self._result(state, resumed=resumed, bytes_sent=sent)

    def _result(
        self,
        state: Mapping[str, Any],
        *,
        recovered: bool = False,
        resumed: bool = False,
        bytes_sent: int = 0,
    ) -> PublishResult:
        return PublishResult(
            video_id=str(state["media_id"]),
            url=str(state.get("permalink") or ""),
            upload_id=state.get("container_id"),
            resumed=resumed,
            recovered=recovered,
            bytes_sent=bytes_sent,
            details={
                "container_id": state.get("container_id"),
                "containers_created": int(state.get("containers_created", 0)),
                "upload_mode": state.get("upload_mode"),
            },
        )

    async def _check_limit(self, call: _Caller, ig_user: str, account: str) -> None:
        """Defer (QUOTA) when the rolling 24 h publishing limit is used up.

        The limit comes from Instagram (``config.quota_total``), never from here. The window
        is rolling and the API does not say when the oldest post leaves it, so ``reset_at``
        is the safe upper bound: now plus ``quota_duration``.
        """
        body = await call(
            "GET", f"{ig_user}/content_publishing_limit", params={"fields": "quota_usage,config"}
        )
        rows = body.get("data") or [{}]
        row = rows[0] if isinstance(rows, list) and rows else {}
        usage = _int(row.get("quota_usage"))
        config = row.get("config") or {}
        total = _int(config.get("quota_total"))
        if usage is None or total is None:
            return
        if usage >= total:
            window = float(config.get("quota_duration") or 86400)
            reset = self._clock() + dt.timedelta(seconds=window)
            raise PlatformError(
                ErrorClass.QUOTA,
                "publishing_limit_reached",
                f"Instagram account {account!r} used {usage} of its {total} posts"
                f" per {window / 3600:g} h",
                reset_at=reset,
            )

    async def _create_container(
        self, call: _Caller, ig_user: str, job: PublishJob, intent: Intent, intents: IntentStore
    ) -> None:
        caption = reel_caption(job.title, job.description, job.tags)
        data: dict[str, str] = {"media_type": "REELS", "caption": caption}
        share = job.options.get("share_to_feed")
        if share is not None:
            data["share_to_feed"] = "true" if share else "false"
        if job.options.get("thumb_offset_ms") is not None:
            data["thumb_offset"] = str(int(job.options["thumb_offset_ms"]))
        if self.config.public_base_url:
            mode = "video_url"
            name = quote(Path(job.video_path).name)
            data["video_url"] = f"{self.config.public_base_url.rstrip('/')}/{name}"
        else:
            mode = "resumable"
            data["upload_type"] = "resumable"
        body = await call("POST", f"{ig_user}/media", data=data)
        container = body.get("id")
        if not container:
            raise PlatformError(
                ErrorClass.TRANSIENT, "no_container_id", "Instagram returned no container id"
            )
        state = intent.state
        state.update(
            container_id=str(container),
            upload_uri=body.get("uri"),
            upload_mode=mode,
            uploaded=mode == "video_url",
            caption=caption,
            containers_created=int(state.get("containers_created", 0)) + 1,
            container_created_at=self._clock().isoformat(),
            publishing=False,
        )
        await intents.save(intent)  # before any polling: a crash resumes this container
        log.info(
            "instagram container created",
            extra={"task_id": job.task_id, "container_id": container, "mode": mode},
        )

    async def _upload(
        self,
        call: _Caller,
        job: PublishJob,
        intent: Intent,
        intents: IntentStore,
        progress: Progress,
    ) -> int:
        """POST the whole file to the container's upload ``uri`` (offset 0: a retry after a
        broken upload starts the file again, which Instagram's upload host accepts)."""
        state = intent.state
        uri = state.get("upload_uri")
        if not uri:
            raise PlatformError(
                ErrorClass.TRANSIENT, "no_upload_uri", "Instagram returned no upload uri"
            )
        if self.config.upload_url:
            base = urlsplit(self.config.upload_url)
            parts = urlsplit(uri)
            uri = urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))
        size = await asyncio.to_thread(os.path.getsize, job.video_path)
        done = 0

        async def sent(n: int) -> None:
            nonlocal done
            done += n
            await progress(done, size)

        headers = {
            "Authorization": f"OAuth {call.token}",
            "offset": "0",
            "file_size": str(size),
            "Content-Length": str(size),
            "Content-Type": "application/octet-stream",
        }
        await self._throttle(job.account)
        timeout = aiohttp.ClientTimeout(total=self.config.upload_timeout_s)
        pieces = file_pieces(job.video_path, 0, size, sent)
        try:
            async with self._http().post(
                uri,
                data=pieces,
                headers=headers,
                timeout=timeout,
            ) as resp:
                self._track(job.account, resp.headers)
                status = resp.status
                body = await _json_body(resp)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc, call.token) from None
        finally:
            await pieces.aclose()
        if status >= 400 or body.get("error") or body.get("debug_info"):
            if isinstance(body.get("error"), Mapping):
                raise classify_graph_error(status, body["error"])
            info = body.get("debug_info") or {}
            kind = (
                ErrorClass.TRANSIENT
                if info.get("retriable", status >= 500)
                else ErrorClass.PERMANENT
            )
            raise PlatformError(
                kind,
                f"upload_{info.get('type') or status}",
                redact(str(info.get("message") or f"upload failed: HTTP {status}"), call.token),
                status=status,
            )
        state["uploaded"] = True
        await intents.save(intent)
        return size

    async def _status_once(self, call: _Caller, container: str) -> tuple[str, str]:
        try:
            body = await call("GET", container, params={"fields": "status_code,status"})
        except PlatformError as exc:
            if exc.code == "media_not_ready":
                return "IN_PROGRESS", exc.message
            raise
        return str(body.get("status_code") or "IN_PROGRESS"), str(body.get("status") or "")

    async def _await_container(self, call: _Caller, container: str) -> tuple[str, str]:
        """Poll with growing delays until the container leaves IN_PROGRESS, at most
        ``max_polls`` times; then TRANSIENT (the container id stays in the intent, so the
        next attempt resumes polling it)."""
        delay = self.config.poll_initial_s
        for _ in range(self.config.max_polls):
            status, message = await self._status_once(call, container)
            if status in TERMINAL_STATUSES:
                return status, message
            await self._sleep(delay)
            delay = min(delay * self.config.poll_factor, self.config.poll_max_s)
        raise PlatformError(
            ErrorClass.TRANSIENT,
            "container_not_ready",
            f"container {container} still processing after {self.config.max_polls} polls",
            retry_after=self.config.poll_max_s,
        )

    async def _media_publish(
        self, call: _Caller, ig_user: str, job: PublishJob, intent: Intent, intents: IntentStore
    ) -> None:
        state = intent.state
        container = state["container_id"]
        state["publishing"] = True
        await intents.save(intent)  # a crash from here on recovers, never publishes again
        delay = self.config.poll_initial_s
        for attempt in range(self.config.max_not_ready_publishes):
            try:
                body = await call(
                    "POST", f"{ig_user}/media_publish", params={"creation_id": container}
                )
                break
            except PlatformError as exc:
                if exc.code != "media_not_ready" or attempt + 1 >= (
                    self.config.max_not_ready_publishes
                ):
                    raise
            await self._sleep(delay)
            delay = min(delay * self.config.poll_factor, self.config.poll_max_s)
            await self._await_container(call, container)
        media = body.get("id")
        if not media:
            raise PlatformError(
                ErrorClass.TRANSIENT, "no_media_id", "media_publish returned no media id"
            )
        state["media_id"] = str(media)
        await intents.save(intent)
        log.info(
            "instagram reel published",
            extra={"task_id": job.task_id, "media_id": media, "container_id": container},
        )
        state["permalink"] = await self._permalink(call, str(media))
        await intents.save(intent)

    async def _permalink(self, call: _Caller, media: str) -> str:
        """Best effort: the Reel exists even when its permalink cannot be read now."""
        try:
            body = await call("GET", media, params={"fields": "permalink"})
        except PlatformError as exc:
            log.warning(
                "instagram permalink unavailable", extra={"media_id": media, "error": exc.as_data()}
            )
            return ""
        return str(body.get("permalink") or "")

    async def _recover_published(
        self, call: _Caller, ig_user: str, intent: Intent, intents: IntentStore
    ) -> PublishResult:
        """The container was published but the media id was never recorded (a crash right
        after ``media_publish``): find the media by its caption instead of publishing again."""
        state = intent.state
        body = await call(
            "GET",
            f"{ig_user}/media",
            params={"fields": "id,caption,permalink,timestamp", "limit": "25"},
        )
        since = state.get("container_created_at")
        for item in body.get("data") or []:
            if item.get("caption") != state.get("caption"):
                continue
            stamp = _parse_time(item.get("timestamp"))
            if (
                since
                and stamp is not None
                and stamp < dt.datetime.fromisoformat(since) - (dt.timedelta(minutes=5))
            ):
                continue
            state.update(media_id=str(item["id"]), permalink=item.get("permalink") or "")
            await intents.save(intent)
            return self._result(state, recovered=True)
        raise PlatformError(
            ErrorClass.PERMANENT,
            "published_unrecorded",
            f"container {state.get('container_id')} was published but its media could not be"
            " found; check the account before retrying (not publishing again)",
        )

    # -- interactions ----------------------------------------------------------------------------
    async def interact(
        self, job: InteractionJob, intent: Intent, intents: IntentStore
    ) -> InteractionResult:
        """Comment on a published Reel, at most once per intent.

        ``comment_attempted`` is saved before the POST; a redelivery that finds it set but no
        comment id looks for an identical comment by this account before posting again.
        Likes: the Graph API has no endpoint to like media, so ``unsupported_interaction``.
        """
        if job.kind != "comment":
            raise PlatformError(
                ErrorClass.PERMANENT,
                "unsupported_interaction",
                f"Instagram's Graph API cannot {job.kind!r} media; only comments are supported",
            )
        state = intent.state
        if state.get("comment_id"):
            return InteractionResult(str(state["comment_id"]), recovered=True)
        if not job.content.strip():
            raise PlatformError(ErrorClass.PERMANENT, "empty_comment", "the comment is empty")
        ig_user, token = await self._account(job.account)
        call = _Caller(self, job.account, token)
        if state.get("comment_attempted"):
            found = await self._find_comment(call, ig_user, job.video_id, job.content)
            if found:
                state["comment_id"] = found
                await intents.save(intent)
                return InteractionResult(found, recovered=True)
        state["comment_attempted"] = True
        await intents.save(intent)
        body = await call("POST", f"{job.video_id}/comments", params={"message": job.content})
        comment = body.get("id")
        if not comment:
            raise PlatformError(
                ErrorClass.TRANSIENT, "no_comment_id", "Instagram returned no comment id"
            )
        state["comment_id"] = str(comment)
        await intents.save(intent)
        return InteractionResult(str(comment))

    async def _find_comment(self, call: _Caller, ig_user: str, media: str, text: str) -> str | None:
        body = await call(
            "GET", f"{media}/comments", params={"fields": "id,text,from", "limit": "50"}
        )
        for item in body.get("data") or []:
            author = (item.get("from") or {}).get("id")
            if item.get("text") == text and (author is None or str(author) == ig_user):
                return str(item["id"])
        return None


class _Caller:
    """A Graph call bound to one account and token, so the flow code stays readable."""

    __slots__ = ("account", "platform", "token")

    def __init__(self, platform: InstagramPlatform, account: str, token: str) -> None:
        self.platform = platform
        self.account = account
        self.token = token

    def __repr__(self) -> str:  # never show the token
        return f"_Caller(account={self.account!r})"

    async def __call__(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        return await self.platform._graph(
            method, path, account=self.account, token=self.token, params=params, data=data
        )


async def _json_body(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    raw = await resp.read()
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"error": {"message": f"HTTP {resp.status}: not JSON"}} if resp.status >= 400 else {}
    return body if isinstance(body, dict) else {"data": body}


def _parse_time(value: Any) -> dt.datetime | None:
    """Graph timestamps look like ``2024-05-01T10:00:00+0000``."""
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
