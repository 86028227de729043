"""YouTube adapter: resumable uploads that survive crashes, comments, likes, quota, OAuth refresh.

It drives the real ``googleapiclient`` (synchronous, so every call runs in a worker thread)
built from the packaged discovery document, with three decisions taken away from the library
and made here instead:

* **Retries.** Every call runs with ``num_retries=0`` and every failure is classified into a
  ``PlatformError`` (see ``classify``); the publisher decides about retries. The HTTP layer
  does not silently re-send either: httplib2 re-sends a request whose connection closed
  before a response, which for ``commentThreads.insert`` would post the comment twice, so
  our connections turn that case into an error (``_NoResendHTTPConnection``).
* **Authorization.** The bearer token is added per request from the account store's tokens;
  the token is refreshed ahead of expiry (``refresh_margin_s``) and, on a 401, refreshed once
  and the call tried once more, then ``AUTH``. No ``AuthorizedHttp`` with its own hidden
  refresh loop, and no token ever goes into a log record, exception or result.
* **Upload progress.** The session URI is saved in the ``Intent`` the moment the server
  hands it out (from inside the worker thread, before the first chunk is sent), and the
  confirmed offset after every chunk, before the next one. A later attempt, in this process
  or another one after ``kill -9``, queries the session (``Content-Range: bytes */TOTAL``)
  and continues from what the server has; a gone session (404/410) starts a new upload; a
  finished one yields its video id without sending a byte; a recorded video id returns at
  once. A video is therefore never uploaded twice.

Quota is checked with ``fabric.quota`` before each metered call (so work is deferred to the
reset instead of burning a call that must fail) and recorded after it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import hashlib
import http.client
import io
import json
import logging
import mimetypes
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import googleapiclient
import httplib2
from google.auth import exceptions as gauth_exceptions
from google.oauth2.credentials import Credentials as GoogleCredentials
from google_auth_httplib2 import Request as GoogleAuthRequest
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest, MediaIoBaseUpload, build_http

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
from fabric.quota import QuotaTracker
from fabric.store.accounts import Account, AccountError, AccountStore, Credentials

__all__ = [
    "SCOPES",
    "YouTubeConfig",
    "YouTubePlatform",
    "classify",
    "validate_metadata",
]

log = logging.getLogger("fabric.platforms.youtube")

PLATFORM = "youtube"
SCOPES = (
    "https://www.googleapis.com/auth/youtube.upload",
    "https://www.googleapis.com/auth/youtube.force-ssl",
)
CHUNK_UNIT = 256 * 1024
DISCOVERY = (
    Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "youtube.v3.json"
)
FORCED_PRIVATE_NOTICE = (
    "YouTube made this upload private: videos uploaded through an unverified (unaudited) "
    "API project are locked to private. Ask Google for an API audit, or publish it by hand."
)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class YouTubeConfig:
    """Adapter settings. The defaults are the real endpoints; tests point them at the fake."""

    root_url: str = "https://youtube.googleapis.com/"
    token_uri: str = "https://oauth2.googleapis.com/token"
    chunk_multiple: int = 32  # chunk = 32 x 256 KiB = 8 MiB
    refresh_margin_s: float = 300.0  # refresh when the access token expires within this
    http_timeout_s: float = 120.0
    category_id: str = "22"  # People & Blogs
    rate_limit_retry_after_s: float = 60.0  # when a rate limit carries no Retry-After
    upload_limit_retry_after_s: float | None = None  # None: the next quota reset
    unverified_project: bool = False  # request private uploads and say why in the result
    quota_scope: str = "account"  # "account", or "project": accounts sharing a client id
    comment_scan_pages: int = 5  # pages of 100 threads searched for an earlier comment
    validate_metadata: bool = True  # reject bad titles locally: invalid calls cost quota too

    @property
    def chunksize(self) -> int:
        if self.chunk_multiple < 1:
            raise ValueError("chunk_multiple must be >= 1")
        return self.chunk_multiple * CHUNK_UNIT


@functools.cache
def _discovery_text() -> str:
    return DISCOVERY.read_text()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- error classification -----------------------------------------------------------------
_QUOTA_REASONS = {"quotaExceeded", "dailyLimitExceeded", "uploadLimitExceeded"}
_RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "servingLimitExceeded"}
_AUTH_REASONS = {"authError", "insufficientPermissions", "unauthorized"}


def _error_parts(content: bytes | str | None) -> tuple[str | None, str]:
    """(reason, message) from Google's JSON error body, tolerating anything else."""
    try:
        body = json.loads(content or b"{}")
        error = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        error = None
    if not isinstance(error, dict):
        return None, ""
    errors = error.get("errors") or [{}]
    reason = errors[0].get("reason") if isinstance(errors[0], dict) else None
    return reason, str(error.get("message") or "")


def classify(
    status: int,
    content: bytes | str | None,
    *,
    retry_after: str | None = None,
    reset_at: dt.datetime,
    rate_limit_retry_after: float = 60.0,
    upload_limit_retry_after: float | None = None,
    now: dt.datetime | None = None,
) -> PlatformError:
    """Map an API error response to a ``PlatformError``.

    ``reset_at`` is the next quota reset (midnight Pacific), used for the quota class.
    """
    reason, message = _error_parts(content)
    code = reason or f"http_{status}"
    message = message or f"YouTube answered HTTP {status}"
    if reason == "uploadLimitExceeded" and upload_limit_retry_after is not None:
        reset_at = (now or _now()) + dt.timedelta(seconds=upload_limit_retry_after)
    if reason in _QUOTA_REASONS or status == 429:
        return PlatformError(ErrorClass.QUOTA, code, message, reset_at=reset_at, status=status)
    if reason in _RATE_REASONS:
        after = rate_limit_retry_after
        if retry_after and retry_after.strip().isdigit():
            after = float(retry_after)
        return PlatformError(ErrorClass.RATE_LIMIT, code, message, retry_after=after, status=status)
    if status >= 500 or status == 408:
        return PlatformError(ErrorClass.TRANSIENT, code, message, status=status)
    if status == 401 or reason in _AUTH_REASONS:
        return PlatformError(ErrorClass.AUTH, code, message, status=status)
    return PlatformError(ErrorClass.PERMANENT, code, message, status=status)


def _transport_error(exc: BaseException) -> PlatformError:
    """A request that got no HTTP answer: always worth another try later."""
    if isinstance(exc, TimeoutError | socket.timeout):
        code = "timeout"
    elif isinstance(exc, ConnectionError | http.client.HTTPException):
        code = "connection_reset"
    elif isinstance(exc, httplib2.ServerNotFoundError):
        code = "server_not_found"
    else:
        code = "network_error"
    return PlatformError(ErrorClass.TRANSIENT, code, f"{type(exc).__name__}: {exc}")


_TRANSPORT_ERRORS = (OSError, httplib2.HttpLib2Error, http.client.HTTPException)


def validate_metadata(title: str, description: str, tags: tuple[str, ...] | list[str]) -> None:
    """YouTube's documented hard limits, checked before a call that would fail anyway
    (and cost quota: the API charges invalid requests too)."""
    if not title.strip() or len(title) > 100 or "<" in title or ">" in title:
        raise PlatformError(
            ErrorClass.PERMANENT,
            "invalidTitle",
            "The title must be 1-100 characters without '<' or '>'.",
        )
    if len(description.encode()) > 5000 or "<" in description or ">" in description:
        raise PlatformError(
            ErrorClass.PERMANENT,
            "invalidDescription",
            "The description must be at most 5000 bytes without '<' or '>'.",
        )
    # a tag with a space counts with its quotes; commas between tags count too
    if sum(len(t) + (2 if " " in t else 0) for t in tags) + max(len(tags) - 1, 0) > 500:
        raise PlatformError(
            ErrorClass.PERMANENT, "invalidTags", "The tags add up to more than 500 characters."
        )


# -- HTTP layer ---------------------------------------------------------------------------
class _NoResendHTTPConnection(httplib2.HTTPConnectionWithTimeout):  # type: ignore[misc]
    """httplib2 re-sends a request whose connection closed before the status line arrived
    (it assumes a stale keep-alive). The server may have acted on it already, so for us
    that is an ambiguous failure to classify, not something to repeat blindly."""

    def getresponse(self) -> http.client.HTTPResponse:  # type: ignore[override]
        try:
            response: http.client.HTTPResponse = super().getresponse()
            return response
        except (http.client.BadStatusLine, http.client.ResponseNotReady) as exc:
            raise ConnectionResetError(f"connection closed before a response ({exc!r})") from None


class _NoResendHTTPSConnection(httplib2.HTTPSConnectionWithTimeout):  # type: ignore[misc]
    __doc__ = _NoResendHTTPConnection.__doc__

    def getresponse(self) -> http.client.HTTPResponse:  # type: ignore[override]
        try:
            response: http.client.HTTPResponse = super().getresponse()
            return response
        except (http.client.BadStatusLine, http.client.ResponseNotReady) as exc:
            raise ConnectionResetError(f"connection closed before a response ({exc!r})") from None


class _Token:
    """The current access token of one connection. Its repr never shows the token."""

    __slots__ = ("expires_at", "value")

    def __init__(self, value: str, expires_at: dt.datetime | None) -> None:
        self.value = value
        self.expires_at = expires_at

    def __repr__(self) -> str:
        return f"<access token expiring {self.expires_at}>"


class _Http:
    """What googleapiclient calls ``http``: httplib2 plus the bearer header, no re-sends,
    byte counting, and a hook that sees the upload session URI as soon as it exists."""

    def __init__(self, token: _Token, timeout: float) -> None:
        self.token = token
        self._http = build_http()  # without 308 in redirect_codes (RECIPES.md)
        self._http.timeout = timeout
        self.bytes_sent = 0
        self.on_session: Callable[[str], None] | None = None

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        redirections: int = httplib2.DEFAULT_MAX_REDIRECTS,
        connection_type: Any = None,
    ) -> tuple[httplib2.Response, bytes]:
        out = dict(headers or {})
        out["authorization"] = f"Bearer {self.token.value}"
        if body is not None and hasattr(body, "read"):
            # googleapiclient passes a chunk as a stream slice; as bytes it goes out in one
            # sendall and can be sent again intact
            body = body.read()
        conn = _NoResendHTTPSConnection if uri.startswith("https:") else _NoResendHTTPConnection
        resp, content = self._http.request(
            uri, method, body=body, headers=out, redirections=redirections, connection_type=conn
        )
        if method == "PUT" and body:
            self.bytes_sent += len(body)
        if (
            self.on_session is not None
            and method == "POST"
            and "uploadType=resumable" in uri
            and resp.status == 200
            and "location" in resp
        ):
            self.on_session(resp["location"])
        return resp, content

    def close(self) -> None:
        self._http.close()


@dataclasses.dataclass
class _Conn:
    """One account's API client for one operation (httplib2 is not thread-safe)."""

    account: Account
    creds: Credentials = dataclasses.field(repr=False)
    token: _Token
    http: _Http
    service: Any

    def close(self) -> None:
        self.http.close()


class _SessionGone(Exception):
    """The stored upload session no longer exists (404/410): start a new upload."""


# -- the adapter --------------------------------------------------------------------------
class YouTubePlatform:
    """``Platform`` for YouTube. One instance serves all accounts of a process.

    ``accounts`` holds the OAuth tokens (read and refreshed here), ``quota`` the per-day
    usage. Everything blocking runs in worker threads; the instance is safe to use from
    many concurrent tasks (each call builds its own HTTP connection).
    """

    name = PLATFORM

    def __init__(
        self,
        accounts: AccountStore,
        quota: QuotaTracker,
        config: YouTubeConfig | None = None,
    ) -> None:
        self.accounts = accounts
        self.quota = quota
        self.config = config or YouTubeConfig()
        self.config.chunksize  # noqa: B018 - validates chunk_multiple early
        doc = json.loads(_discovery_text())
        doc["rootUrl"] = self.config.root_url
        self._doc = json.dumps(doc)
        self._locks: dict[str, asyncio.Lock] = {}

    async def close(self) -> None:
        """Nothing is held between calls."""

    # -- accounts and tokens ----------------------------------------------------------------
    async def _account(self, name: str) -> Account:
        try:
            return await self.accounts.require(PLATFORM, name)
        except AccountError as exc:
            raise PlatformError(ErrorClass.PERMANENT, exc.code, str(exc)) from None

    def _quota_key(self, conn: _Conn) -> str:
        if self.config.quota_scope == "project" and conn.creds.client_id:
            return f"project:{conn.creds.client_id}"
        return conn.account.name

    async def refresh(self, account: str, *, force: bool = False) -> dt.datetime | None:
        """Make sure ``account`` has an access token valid beyond the margin (``force``:
        get a new one regardless). Returns its expiry. For the token refresher consumer.

        Raises ``PlatformError(AUTH, "invalid_grant")`` when the refresh token was revoked
        or expired (the account must be reconnected), ``TRANSIENT`` when the token endpoint
        could not be reached.
        """
        await self._account(account)
        creds = await self._fresh_credentials(account, force=force)
        return creds.expires_at

    async def _fresh_credentials(
        self, name: str, *, force: bool = False, stale: str | None = None
    ) -> Credentials:
        """Stored credentials whose access token is valid beyond the margin.

        One refresh at a time per account (in this process): callers queued behind a
        refresh re-read the store and find the new token. ``stale`` is a token the API just
        refused: refresh unless the stored one is already a different (newer) token.
        """
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            creds = await self.accounts.credentials(PLATFORM, name)
            margin = dt.timedelta(seconds=self.config.refresh_margin_s)
            if stale is not None and creds.access_token and creds.access_token != stale:
                return creds
            if (
                not force
                and stale is None
                and creds.access_token
                and creds.expires_at is not None
                and creds.expires_at - _now() > margin
            ):
                return creds
            if not (creds.refresh_token and creds.client_id and creds.client_secret):
                raise PlatformError(
                    ErrorClass.AUTH,
                    "no_refresh_token",
                    f"youtube account {name!r} has no refresh token: reconnect it",
                )
            token, expires_at, refresh_token = await asyncio.to_thread(self._refresh_grant, creds)
            await self.accounts.save_tokens(
                PLATFORM,
                name,
                access_token=token,
                expires_at=expires_at,
                # Google normally sends none: keep the stored one (save_tokens does)
                refresh_token=refresh_token if refresh_token != creds.refresh_token else None,
            )
            log.info(
                "youtube token refreshed",
                extra={
                    "account": name,
                    "expires_at": expires_at.isoformat() if expires_at else None,
                },
            )
            return await self.accounts.credentials(PLATFORM, name)

    def _refresh_grant(self, creds: Credentials) -> tuple[str, dt.datetime | None, str | None]:
        """The refresh_token grant through google-auth (worker thread)."""
        google = GoogleCredentials(  # type: ignore[no-untyped-call]
            token=None,
            refresh_token=creds.refresh_token,
            token_uri=self.config.token_uri,
            client_id=creds.client_id,
            client_secret=creds.client_secret,
        )
        http = build_http()
        http.timeout = self.config.http_timeout_s
        try:
            google.refresh(GoogleAuthRequest(http))  # type: ignore[no-untyped-call]
        except gauth_exceptions.RefreshError as exc:
            data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
            error = str(data.get("error") or "refresh_failed")
            if getattr(exc, "retryable", False):
                raise PlatformError(
                    ErrorClass.TRANSIENT, "token_endpoint", f"token refresh failed: {error}"
                ) from None
            raise PlatformError(
                ErrorClass.AUTH,
                error,
                f"the refresh token was refused ({error}): the account must be reconnected",
            ) from None
        except gauth_exceptions.TransportError as exc:
            raise PlatformError(
                ErrorClass.TRANSIENT, "token_endpoint", f"token endpoint unreachable: {exc}"
            ) from None
        finally:
            http.close()
        expiry = google.expiry.replace(tzinfo=dt.UTC) if google.expiry else None
        return str(google.token), expiry, google.refresh_token

    async def _connect(self, name: str) -> _Conn:
        account = await self._account(name)
        creds = await self._fresh_credentials(name)
        token = _Token(creds.access_token or "", creds.expires_at)
        http = _Http(token, self.config.http_timeout_s)
        service = build_from_document(self._doc, http=http)
        return _Conn(account, creds, token, http, service)

    async def _keep_fresh(self, conn: _Conn, *, stale: str | None = None) -> None:
        """Refresh ahead of expiry (cheap when not needed: no store read)."""
        margin = dt.timedelta(seconds=self.config.refresh_margin_s)
        expires = conn.token.expires_at
        if stale is None and expires is not None and expires - _now() > margin:
            return
        creds = await self._fresh_credentials(conn.account.name, stale=stale)
        conn.creds = creds
        conn.token.value = creds.access_token or ""
        conn.token.expires_at = creds.expires_at

    # -- calls ------------------------------------------------------------------------------
    def _classify(self, exc: HttpError) -> PlatformError:
        return classify(
            exc.resp.status,
            exc.content,
            retry_after=exc.resp.get("retry-after"),
            reset_at=self.quota.next_reset(PLATFORM),
            rate_limit_retry_after=self.config.rate_limit_retry_after_s,
            upload_limit_retry_after=self.config.upload_limit_retry_after_s,
        )

    async def _check_quota(self, conn: _Conn, op: str) -> None:
        ok, reset_at = await self.quota.can_spend(self._quota_key(conn), PLATFORM, op)
        if not ok:
            bucket, _ = self.quota.policy(PLATFORM).cost(op)
            raise PlatformError(
                ErrorClass.QUOTA,
                "quota_exhausted",
                f"the daily YouTube {bucket} quota is used up; {op} deferred to the reset",
                reset_at=reset_at,
            )

    async def _charged(self, conn: _Conn, op: str, err: PlatformError | None) -> None:
        """Record the cost of a call that reached the API. A quota refusal is not charged
        but pins the bucket: the API is right even when our count disagrees."""
        key = self._quota_key(conn)
        if err is not None and err.code in ("quotaExceeded", "dailyLimitExceeded"):
            await self.quota.exhaust(key, PLATFORM, op)
        elif err is None or err.status != 401:
            await self.quota.spend(key, PLATFORM, op)

    async def _execute(self, conn: _Conn, op: str, build: Callable[[Any], HttpRequest]) -> Any:
        """One API call: quota check, the call in a thread (no retries), one refresh-and-
        retry on 401, classification, quota accounting."""
        await self._check_quota(conn, op)
        for attempt in (1, 2):
            await self._keep_fresh(conn)
            sent_with = conn.token.value
            try:
                result = await asyncio.to_thread(lambda: build(conn.service).execute(num_retries=0))
            except HttpError as exc:
                err = self._classify(exc)
                await self._charged(conn, op, err)
                if exc.resp.status == 401 and attempt == 1:
                    await self._keep_fresh(conn, stale=sent_with)
                    continue
                raise err from None
            except _TRANSPORT_ERRORS as exc:
                if not isinstance(exc, ConnectionRefusedError | httplib2.ServerNotFoundError):
                    await self._charged(conn, op, None)  # it was probably sent and counted
                raise _transport_error(exc) from None
            await self._charged(conn, op, None)
            return result
        raise AssertionError("unreachable")

    # -- publish ----------------------------------------------------------------------------
    def _resource(self, job: PublishJob) -> dict[str, Any]:
        privacy = "private" if self.config.unverified_project else job.privacy
        snippet: dict[str, Any] = {
            "title": job.title,
            "description": job.description,
            "categoryId": str(job.options.get("category_id", self.config.category_id)),
        }
        if job.tags:
            snippet["tags"] = list(job.tags)
        if job.options.get("default_language"):
            snippet["defaultLanguage"] = job.options["default_language"]
        status: dict[str, Any] = {"privacyStatus": privacy}
        if job.options.get("publish_at"):  # scheduled publishing: YouTube wants private
            status["publishAt"] = job.options["publish_at"]
            status["privacyStatus"] = "private"
        if "made_for_kids" in job.options:
            status["selfDeclaredMadeForKids"] = bool(job.options["made_for_kids"])
        return {"snippet": snippet, "status": status}

    def _insert_request(self, conn: _Conn, job: PublishJob, fh: BinaryIO) -> HttpRequest:
        mimetype = mimetypes.guess_type(job.video_path)[0] or "application/octet-stream"
        media = MediaIoBaseUpload(
            fh, mimetype=mimetype, chunksize=self.config.chunksize, resumable=True
        )
        request: HttpRequest = conn.service.videos().insert(
            part="snippet,status",
            body=self._resource(job),
            media_body=media,
            notifySubscribers=bool(job.options.get("notify_subscribers", True)),
        )
        return request

    async def publish(
        self, job: PublishJob, intent: Intent, intents: IntentStore, progress: Progress
    ) -> PublishResult:
        """Upload (or resume, or recover) the video, then thumbnail and playlist if asked.

        Intent state: ``upload`` {session_uri, confirmed, size, sha256, chunksize} while an
        upload is under way; ``video_id``/``url``/``privacy`` once the video exists;
        ``thumbnail_done``, ``playlist_item_id`` and ``*_error`` for the follow-ups.
        """
        state = intent.state
        uploaded = bool(state.get("video_id"))
        outcome = _Outcome(recovered=uploaded)
        if not uploaded:
            await self._check_file(job)
            if self.config.validate_metadata:
                validate_metadata(job.title, job.description, job.tags)
        if not uploaded or self._follow_ups_pending(job, state):  # else: no call at all
            conn = await self._connect(job.account)
            try:
                if not uploaded:
                    outcome = await self._upload(conn, job, intent, intents, progress)
                await self._follow_ups(conn, job, intent, intents)
            finally:
                conn.close()
        details = {**outcome.details, **self._follow_up_details(job, state)}
        if state.get("forced_private"):
            details["forced_private"] = True
            details["notice"] = FORCED_PRIVATE_NOTICE
        details["privacy"] = state.get("privacy")
        video_id = str(state["video_id"])
        return PublishResult(
            video_id=video_id,
            url=str(state.get("url") or f"https://www.youtube.com/watch?v={video_id}"),
            upload_id=state.get("upload_id"),
            resumed=outcome.resumed,
            recovered=outcome.recovered,
            bytes_sent=outcome.bytes_sent,
            details=details,
        )

    @staticmethod
    async def _check_file(job: PublishJob) -> None:
        try:
            size = await asyncio.to_thread(os.path.getsize, job.video_path)
        except OSError:
            raise PlatformError(
                ErrorClass.PERMANENT, "video_missing", f"no video file at {job.video_path}"
            ) from None
        if size != job.video_size:
            raise PlatformError(
                ErrorClass.PERMANENT,
                "video_changed",
                f"{job.video_path} has {size} bytes, the job says {job.video_size}",
            )

    async def _upload(
        self,
        conn: _Conn,
        job: PublishJob,
        intent: Intent,
        intents: IntentStore,
        progress: Progress,
    ) -> _Outcome:
        state = intent.state
        upload = state.get("upload")
        if upload and (
            upload.get("sha256") != job.video_sha256 or upload.get("size") != job.video_size
        ):
            upload = None  # a different file: that session cannot be continued
        # our own handle (not MediaFileUpload's), so it is closed when we are done
        fh = await asyncio.to_thread(open, job.video_path, "rb")
        try:
            body, resumed_from = await self._upload_file(
                conn, job, intent, intents, progress, fh, upload
            )
        finally:
            fh.close()
        sent = conn.http.bytes_sent
        resumed = resumed_from is not None
        outcome = _Outcome(
            resumed=resumed and sent > 0,
            recovered=resumed and sent == 0,
            bytes_sent=sent,
            details={"resumed_from": resumed_from} if resumed_from is not None else {},
        )
        requested = self._resource(job)["status"]["privacyStatus"]
        privacy = (body.get("status") or {}).get("privacyStatus")
        state.pop("upload", None)
        state.update(
            video_id=body["id"],
            url=f"https://www.youtube.com/watch?v={body['id']}",
            privacy=privacy,
            forced_private=requested != "private" and privacy == "private",
        )
        await intents.save(intent)
        await progress(job.video_size, job.video_size)
        if state["forced_private"]:
            log.warning(
                "youtube locked the upload to private (unverified API project)",
                extra={"task_id": job.task_id, "account": job.account, "video_id": body["id"]},
            )
        return outcome

    async def _upload_file(
        self,
        conn: _Conn,
        job: PublishJob,
        intent: Intent,
        intents: IntentStore,
        progress: Progress,
        fh: BinaryIO,
        upload: dict[str, Any] | None,
    ) -> tuple[dict[str, Any], int | None]:
        """Continue the stored session or start one; a gone session starts over once.
        Returns the video resource and the offset a resumed upload continued from."""
        state = intent.state
        restarted = False
        while True:
            request = self._insert_request(conn, job, fh)
            resumed_from: int | None = None
            if upload:
                request.resumable_uri = upload["session_uri"]
                request.resumable_progress = int(upload.get("confirmed", 0))
                request._in_error_state = True  # ask the server where it stands first
                resumed_from = request.resumable_progress
            else:
                await self._check_quota(conn, "videos.insert")
            try:
                body = await self._drive(conn, job, request, intent, intents, progress)
                return body, resumed_from
            except _SessionGone:
                if restarted:
                    raise PlatformError(
                        ErrorClass.TRANSIENT,
                        "session_gone",
                        "the new upload session vanished as well",
                    ) from None
                log.info(
                    "youtube upload session gone; starting a new upload",
                    extra={"task_id": job.task_id, "account": job.account},
                )
                state.pop("upload", None)
                await intents.save(intent)
                upload, restarted = None, True

    async def _drive(
        self,
        conn: _Conn,
        job: PublishJob,
        request: HttpRequest,
        intent: Intent,
        intents: IntentStore,
        progress: Progress,
    ) -> dict[str, Any]:
        """Send chunks until the video resource comes back, saving progress in between."""
        loop = asyncio.get_running_loop()
        state = intent.state
        key = self._quota_key(conn)

        async def session_started(uri: str) -> None:
            state["upload"] = {
                "session_uri": uri,
                "confirmed": 0,
                "size": job.video_size,
                "sha256": job.video_sha256,
                "chunksize": self.config.chunksize,
            }
            state["upload_id"] = hashlib.sha256(uri.encode()).hexdigest()[:16]
            await intents.save(intent)
            await self.quota.spend(key, PLATFORM, "videos.insert")

        def on_session(uri: str) -> None:  # worker thread, before the first chunk goes out
            asyncio.run_coroutine_threadsafe(session_started(uri), loop).result()

        conn.http.on_session = on_session
        retried_401 = False
        try:
            while True:
                await self._keep_fresh(conn)
                sent_with = conn.token.value
                try:
                    _, body = await asyncio.to_thread(request.next_chunk, num_retries=0)
                except HttpError as exc:
                    in_session = request.resumable_uri is not None
                    if in_session and exc.resp.status in (404, 410):
                        raise _SessionGone() from None
                    if exc.resp.status == 401 and not retried_401:
                        retried_401 = True
                        await self._keep_fresh(conn, stale=sent_with)
                        continue
                    err = self._classify(exc)
                    if not in_session:  # the initiation itself was refused
                        await self._charged(conn, "videos.insert", err)
                    raise err from None
                except _TRANSPORT_ERRORS as exc:
                    raise _transport_error(exc) from None
                if body is not None:
                    return dict(body)
                upload = state["upload"]
                upload["confirmed"] = request.resumable_progress
                await intents.save(intent)  # durable before the next chunk is sent
                await progress(request.resumable_progress, job.video_size)
        finally:
            conn.http.on_session = None

    @staticmethod
    def _follow_ups_pending(job: PublishJob, state: dict[str, Any]) -> bool:
        thumbnail = bool(job.thumbnail_path) and not state.get("thumbnail_done")
        playlist = bool(job.playlist_id) and not (
            state.get("playlist_item_id") or state.get("playlist_error")
        )
        return thumbnail or playlist

    async def _follow_ups(
        self, conn: _Conn, job: PublishJob, intent: Intent, intents: IntentStore
    ) -> None:
        """Thumbnail and playlist, each at most once (recorded in the intent).

        A permanent failure (e.g. the channel may not set custom thumbnails) is recorded
        and reported in the details, not retried: the video itself is published. Other
        failures raise, and the next attempt resumes here without touching the video.
        """
        state = intent.state
        video_id = state["video_id"]
        if job.thumbnail_path and not state.get("thumbnail_done"):
            path = job.thumbnail_path
            mimetype = mimetypes.guess_type(path)[0] or "image/jpeg"
            try:
                try:
                    image = await asyncio.to_thread(Path(path).read_bytes)  # <= 2 MB
                except OSError as exc:
                    raise PlatformError(
                        ErrorClass.PERMANENT, "thumbnail_missing", f"cannot read {path}: {exc}"
                    ) from None
                await self._execute(
                    conn,
                    "thumbnails.set",
                    lambda s: s.thumbnails().set(
                        videoId=video_id,
                        media_body=MediaIoBaseUpload(io.BytesIO(image), mimetype=mimetype),
                    ),
                )
                state["thumbnail_done"] = True
            except PlatformError as exc:
                if exc.kind != ErrorClass.PERMANENT:
                    raise
                state["thumbnail_done"], state["thumbnail_error"] = True, exc.as_data()
            await intents.save(intent)
        if job.playlist_id and not (state.get("playlist_item_id") or state.get("playlist_error")):
            body = {
                "snippet": {
                    "playlistId": job.playlist_id,
                    "resourceId": {"kind": "youtube#video", "videoId": video_id},
                }
            }
            try:
                item = await self._execute(
                    conn,
                    "playlistItems.insert",
                    lambda s: s.playlistItems().insert(part="snippet", body=body),
                )
                state["playlist_item_id"] = item["id"]
            except PlatformError as exc:
                if exc.kind != ErrorClass.PERMANENT:
                    raise
                state["playlist_error"] = exc.as_data()
            await intents.save(intent)

    @staticmethod
    def _follow_up_details(job: PublishJob, state: dict[str, Any]) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if job.thumbnail_path:
            details["thumbnail"] = "failed" if state.get("thumbnail_error") else "set"
            if state.get("thumbnail_error"):
                details["thumbnail_error"] = state["thumbnail_error"]
        if state.get("playlist_item_id"):
            details["playlist_item_id"] = state["playlist_item_id"]
        if state.get("playlist_error"):
            details["playlist_error"] = state["playlist_error"]
        return details

    # -- interactions -----------------------------------------------------------------------
    async def interact(
        self, job: InteractionJob, intent: Intent, intents: IntentStore
    ) -> InteractionResult:
        """Comment (``commentThreads.insert``) or like (``videos.rate``), at most once.

        A comment whose outcome is unknown (the connection died after sending) is looked up
        among the video's comment threads by this channel before posting again, so a
        redelivered job never makes two identical comments. A like is idempotent on
        YouTube's side; the intent just saves the call. A like has no external id (None).
        """
        if job.kind == "comment":
            return await self._comment(job, intent, intents)
        if job.kind == "like":
            return await self._like(job, intent, intents)
        raise PlatformError(
            ErrorClass.PERMANENT, "unsupported_interaction", f"youtube cannot {job.kind!r}"
        )

    async def _comment(
        self, job: InteractionJob, intent: Intent, intents: IntentStore
    ) -> InteractionResult:
        state = intent.state
        if state.get("comment_id"):
            return InteractionResult(state["comment_id"], recovered=True)
        if not job.content.strip():
            raise PlatformError(ErrorClass.PERMANENT, "empty_comment", "the comment is empty")
        conn = await self._connect(job.account)
        try:
            if state.get("comment_attempted"):
                found = await self._find_comment(conn, job.video_id, job.content)
                if found:
                    state["comment_id"] = found
                    await intents.save(intent)
                    return InteractionResult(found, recovered=True)
            state["comment_attempted"] = True
            await intents.save(intent)  # before the call: its outcome may stay unknown
            body = {
                "snippet": {
                    "videoId": job.video_id,
                    "topLevelComment": {"snippet": {"textOriginal": job.content}},
                }
            }
            thread = await self._execute(
                conn,
                "commentThreads.insert",
                lambda s: s.commentThreads().insert(part="snippet", body=body),
            )
        finally:
            conn.close()
        state["comment_id"] = thread["id"]
        await intents.save(intent)
        return InteractionResult(thread["id"])

    async def _find_comment(self, conn: _Conn, video_id: str, text: str) -> str | None:
        """A top-level comment by this channel with this text, if an earlier attempt made it."""
        channel = conn.account.external_id
        page_token: str | None = None
        for _ in range(self.config.comment_scan_pages):
            kwargs: dict[str, Any] = {
                "part": "snippet",
                "videoId": video_id,
                "maxResults": 100,
                "order": "time",
                "textFormat": "plainText",
            }
            if page_token:
                kwargs["pageToken"] = page_token

            def listing(s: Any, kw: dict[str, Any] = kwargs) -> HttpRequest:
                return s.commentThreads().list(**kw)

            page = await self._execute(conn, "commentThreads.list", listing)
            for thread in page.get("items", []):
                top = thread["snippet"]["topLevelComment"]["snippet"]
                author = (top.get("authorChannelId") or {}).get("value")
                if author == channel and top.get("textOriginal", "").strip() == text.strip():
                    return str(thread["id"])
            page_token = page.get("nextPageToken")
            if not page_token:
                return None
        return None

    async def _like(
        self, job: InteractionJob, intent: Intent, intents: IntentStore
    ) -> InteractionResult:
        if intent.state.get("liked"):
            return InteractionResult(None, recovered=True)
        conn = await self._connect(job.account)
        try:
            await self._execute(
                conn,
                "videos.rate",
                lambda s: s.videos().rate(id=job.video_id, rating="like"),
            )
        finally:
            conn.close()
        intent.state["liked"] = True
        await intents.save(intent)
        return InteractionResult(None)

    # -- scheduled metadata changes -----------------------------------------------------------
    async def update_video(
        self,
        account: str,
        video_id: str,
        *,
        title: str | None = None,
        description: str | None = None,
        tags: list[str] | tuple[str, ...] | None = None,
        privacy: str | None = None,
        category_id: str | None = None,
        publish_at: str | None = None,
    ) -> dict[str, Any]:
        """Change a video's metadata (``videos.update``, 50 units, plus a 1-unit read).

        YouTube replaces a whole part on update (a snippet without a description clears
        it), so the current snippet/status is read first and only the given fields change.
        Naturally idempotent: repeating it writes the same values. Returns a summary with
        ``forced_private`` when an unverified project kept the video private.
        """
        conn = await self._connect(account)
        try:
            found = await self._execute(
                conn,
                "videos.list",
                lambda s: s.videos().list(part="snippet,status", id=video_id),
            )
            items = found.get("items") or []
            if not items:
                raise PlatformError(
                    ErrorClass.PERMANENT, "videoNotFound", f"no video {video_id} on YouTube"
                )
            current = items[0]
            parts: list[str] = []
            body: dict[str, Any] = {"id": video_id}
            if any(v is not None for v in (title, description, tags, category_id)):
                old = current.get("snippet") or {}
                snippet = {
                    k: old[k]
                    for k in ("title", "description", "tags", "categoryId", "defaultLanguage")
                    if k in old
                }
                changes = {
                    "title": title,
                    "description": description,
                    "tags": list(tags) if tags is not None else None,
                    "categoryId": category_id,
                }
                snippet.update({k: v for k, v in changes.items() if v is not None})
                snippet.setdefault("categoryId", self.config.category_id)
                if self.config.validate_metadata:
                    validate_metadata(
                        snippet.get("title", ""),
                        snippet.get("description", ""),
                        snippet.get("tags", []),
                    )
                body["snippet"] = snippet
                parts.append("snippet")
            if privacy is not None or publish_at is not None:
                old = current.get("status") or {}
                status = {
                    k: old[k]
                    for k in (
                        "privacyStatus",
                        "publishAt",
                        "license",
                        "embeddable",
                        "publicStatsViewable",
                        "selfDeclaredMadeForKids",
                    )
                    if k in old
                }
                if privacy is not None:
                    status["privacyStatus"] = privacy
                if publish_at is not None:
                    status["publishAt"] = publish_at
                body["status"] = status
                parts.append("status")
            if not parts:
                return {"video_id": video_id, "updated": [], "forced_private": False}
            updated = await self._execute(
                conn,
                "videos.update",
                lambda s: s.videos().update(part=",".join(parts), body=body),
            )
        finally:
            conn.close()
        got = (updated.get("status") or {}).get("privacyStatus")
        forced = privacy not in (None, "private") and got == "private"
        out: dict[str, Any] = {
            "video_id": video_id,
            "updated": parts,
            "privacy": got,
            "forced_private": forced,
        }
        if forced:
            out["notice"] = FORCED_PRIVATE_NOTICE
        return out

    async def set_thumbnail(self, account: str, video_id: str, path: str) -> dict[str, Any]:
        """Replace a published video's thumbnail (``thumbnails.set``, 50 units), for
        scheduled metadata changes. Setting the same image twice is harmless."""
        mimetype = mimetypes.guess_type(path)[0] or "image/jpeg"
        try:
            image = await asyncio.to_thread(Path(path).read_bytes)  # <= 2 MB
        except OSError as exc:
            raise PlatformError(
                ErrorClass.PERMANENT, "thumbnail_missing", f"cannot read {path}: {exc}"
            ) from None
        conn = await self._connect(account)
        try:
            await self._execute(
                conn,
                "thumbnails.set",
                lambda s: s.thumbnails().set(
                    videoId=video_id,
                    media_body=MediaIoBaseUpload(io.BytesIO(image), mimetype=mimetype),
                ),
            )
        finally:
            conn.close()
        return {"video_id": video_id, "thumbnail": "set"}

    async def channel(self, account: str) -> dict[str, Any]:
        """``channels.list(mine=true)`` for this account (1 unit): id and title."""
        conn = await self._connect(account)
        try:
            found = await self._execute(
                conn, "channels.list", lambda s: s.channels().list(part="id,snippet", mine=True)
            )
        finally:
            conn.close()
        items = found.get("items") or []
        if not items:
            raise PlatformError(ErrorClass.PERMANENT, "no_channel", "the account has no channel")
        return {"id": items[0]["id"], "title": items[0]["snippet"]["title"]}


@dataclasses.dataclass
class _Outcome:
    resumed: bool = False
    recovered: bool = False
    bytes_sent: int = 0
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
