"""A fake YouTube Data API v3 and Google OAuth server that speaks the real wire protocol.

The real ``googleapiclient`` talks to it unchanged (``build_from_document`` with the packaged
discovery document and ``rootUrl`` pointed here), so tests, the benchmark and the demo
exercise the same requests, status codes, headers and JSON error bodies the real API uses,
without a network and without mocking the client library.

What it implements (paths as the discovery document builds them):

* OAuth: ``GET /o/oauth2/auth`` (auto-consents as ``consent_channel`` and redirects to the
  loopback ``redirect_uri`` with a code; PKCE S256 checked later), ``POST /token``
  (``authorization_code`` and ``refresh_token`` grants, ``invalid_grant`` for revoked or
  expired refresh tokens), ``POST /revoke``.
* Every API call checks ``Authorization: Bearer`` against the access tokens it issued (401 in
  Google's format otherwise) and charges the Google Cloud project (the OAuth client) quota:
  ``videos.insert`` against its own bucket, the rest in units (``quotaExceeded`` when spent).
* Resumable upload: ``POST /upload/youtube/v3/videos?uploadType=resumable&part=…`` → 200 +
  ``Location`` session URI; chunk ``PUT``\\ s with ``Content-Range: bytes A-B/TOTAL`` → 308 +
  ``Range: bytes=0-N`` until the final 200 with the video resource; status queries (empty PUT,
  ``Content-Range: bytes */TOTAL``); 404 for unknown and 410 for expired sessions; non-final
  chunks must end on a 256 KiB boundary. Session PUTs check the bearer token too (Google's
  session URIs need none; being stricter exercises a token expiring mid-upload).
* ``commentThreads.insert/list``, ``videos.rate``, ``videos.list``, ``videos.update``,
  ``thumbnails.set``, ``playlistItems.insert``, ``channels.list(mine=true)``.

Fault injection for tests: ``fail_next`` (an error reason for the next call of a method),
``reset_next`` (drop the connection, optionally after the call took effect: the ambiguous
failure), ``fail_chunk``/``reset_chunk``/``hold_chunk`` (the n-th chunk PUT from now),
``expire_session``, ``revoke``, ``expire_access_tokens``, ``quota_exhausted``,
``upload_limit``, ``force_private`` (an unverified API project), ``refresh_ttl`` (an app in
"Testing" status: refresh tokens die after 7 days), ``rotate_refresh_tokens``. Setup:
``add_client``, ``add_channel``, ``add_playlist``, ``add_comment`` (someone else's comment),
``issue_tokens`` (tokens without the consent dance), ``client_config``. Observations:
``bytes_received`` (total and per session), ``videos``, ``comments``, ``ratings``,
``thumbnails``, ``playlist_items``, ``updates``, ``token_grants``, ``calls``, ``units_used``,
``issued_tokens()`` (for leak checks) and ``wait_until(predicate)`` to wait for any of them
without sleeping.

Other processes (the benchmark, the demo) drive it through a small admin API under
``/_fake/`` or run it with ``python -m fabric.testing.fake_youtube``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import re
import secrets
import signal
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus, urlencode, urlparse

from aiohttp import web

from fabric.testing._server import FakeServer

__all__ = ["FakeChannel", "FakeVideo", "FakeYouTube", "Hold", "TokenPair", "UploadSession"]

CHUNK_GRANULARITY = 256 * 1024
DEFAULT_COSTS: dict[str, tuple[str, int]] = {
    "videos.insert": ("uploads", 1),
    "commentThreads.insert": ("units", 50),
    "videos.rate": ("units", 50),
    "thumbnails.set": ("units", 50),
    "playlistItems.insert": ("units", 50),
    "videos.update": ("units", 50),
}
DEFAULT_LIMITS = {"units": 10_000, "uploads": 100}

# reason -> (HTTP status, domain, message), as the real API words them
REASONS: dict[str, tuple[int, str, str]] = {
    "quotaExceeded": (
        403,
        "youtube.quota",
        "The request cannot be completed because you have exceeded your quota.",
    ),
    "rateLimitExceeded": (403, "usageLimits", "Rate Limit Exceeded"),
    "userRateLimitExceeded": (403, "usageLimits", "User Rate Limit Exceeded"),
    "uploadLimitExceeded": (
        400,
        "youtube.video",
        "The user has exceeded the number of videos they may upload.",
    ),
    "invalidTitle": (
        400,
        "youtube.video",
        "The request metadata specifies an invalid or empty video title.",
    ),
    "invalidDescription": (
        400,
        "youtube.video",
        "The request metadata specifies an invalid video description.",
    ),
    "invalidTags": (
        400,
        "youtube.video",
        "The request metadata specifies invalid video keywords.",
    ),
    "invalidCategoryId": (
        400,
        "youtube.video",
        "The snippet.categoryId property specifies an invalid category ID.",
    ),
    "authError": (401, "global", "Invalid Credentials"),
    "forbidden": (403, "youtube.video", "The request is not properly authorized."),
    "videoNotFound": (
        404,
        "youtube.video",
        "The video that you are trying to use cannot be found.",
    ),
    "playlistNotFound": (404, "youtube.playlistItem", "The playlist cannot be found."),
    "notFound": (404, "global", "Not Found"),
    "tooManyRequests": (429, "global", "Too many requests. Try again later."),
    "backendError": (503, "global", "Backend Error"),
    "internalError": (500, "global", "Internal Error"),
    "badRequest": (400, "global", "Bad Request"),
}
_STATUS_TEXT = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    410: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
CATEGORIES = {"1", "2", "10", "15", "17", "19", "20", "22", "23", "24", "25", "26", "27", "28"}


def error_body(status: int, reason: str, message: str, domain: str = "global") -> dict[str, Any]:
    """Google's JSON error format."""
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
            "status": _STATUS_TEXT.get(status, "UNKNOWN"),
        }
    }


class ApiError(Exception):
    """Raised inside handlers; becomes a JSON error response."""

    def __init__(
        self,
        reason: str,
        status: int | None = None,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        known = REASONS.get(reason)
        self.status = status or (known[0] if known else 400)
        self.domain = known[1] if known else "global"
        self.message = message or (known[2] if known else reason)
        self.reason = reason
        self.headers = headers or {}
        super().__init__(self.message)

    def response(self) -> web.Response:
        return web.json_response(
            error_body(self.status, self.reason, self.message, self.domain),
            status=self.status,
            headers=self.headers,
        )


class _Drop(Exception):
    """Drop the connection without a response (a reset as the client sees it)."""


def _new_id(n: int = 11) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(n)).decode().rstrip("=")[:n]


@dataclasses.dataclass
class FakeChannel:
    id: str
    title: str


@dataclasses.dataclass
class TokenPair:
    """Tokens as the token endpoint would return them (handed to tests that skip consent)."""

    access_token: str = dataclasses.field(repr=False)
    refresh_token: str = dataclasses.field(repr=False)
    expires_at: float


@dataclasses.dataclass
class _Grant:
    channel_id: str
    client_id: str
    scopes: tuple[str, ...]
    expires_at: float | None
    revoked: bool = False


@dataclasses.dataclass
class UploadSession:
    id: str
    channel_id: str
    client_id: str
    total: int | None
    resource: dict[str, Any]
    notify: bool = True
    received: int = 0  # contiguous bytes stored
    bytes_in: int = 0  # body bytes that arrived, stored or not
    chunks: int = 0  # chunk PUTs that arrived
    queries: int = 0  # status queries
    first_bytes: list[int] = dataclasses.field(default_factory=list)  # A of each chunk
    arrivals: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (A, ns)
    video_id: str | None = None
    expired: bool = False
    sha: Any = dataclasses.field(default_factory=hashlib.sha256, repr=False)


@dataclasses.dataclass
class FakeVideo:
    id: str
    channel_id: str
    session_id: str
    size: int
    sha256: str
    resource: dict[str, Any]


@dataclasses.dataclass
class Call:
    method: str
    status: int
    channel_id: str | None


@dataclasses.dataclass
class _Fault:
    kind: str  # "error" | "reset" | "reset_after" | "hold"
    reason: str = "backendError"
    status: int | None = None
    message: str | None = None
    retry_after: float | None = None
    hold: Hold | None = None


class Hold:
    """A chunk PUT parked before its body is read, until ``release()``.

    ``arrived`` is set when the request is parked (the client has sent it and waits);
    after ``release()`` the fake drains whatever body arrived, counts it in
    ``bytes_received``, discards it (a server that lost the in-flight chunk) and answers 503;
    then ``done`` is set.
    """

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.released = asyncio.Event()
        self.done = asyncio.Event()
        self.session_id: str | None = None
        self.first_byte: int | None = None

    def release(self) -> None:
        self.released.set()


_RANGE = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)")


class FakeYouTube(FakeServer):
    """The fake server. ``async with FakeYouTube() as yt:`` starts it on 127.0.0.1."""

    def __init__(
        self,
        *,
        access_ttl: float = 3600.0,
        refresh_ttl: float | None = None,
        granularity: int = CHUNK_GRANULARITY,
        limits: dict[str, int] | None = None,
        admin: bool = True,
    ) -> None:
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl  # e.g. 7 days for an app in "Testing" status
        self.granularity = granularity
        self.limits = {**DEFAULT_LIMITS, **(limits or {})}
        self.costs = dict(DEFAULT_COSTS)
        self.rotate_refresh_tokens = False  # Google: refresh responses carry no refresh_token
        # knobs
        self.quota_exhausted = False
        self.force_private = False  # unverified API project: uploads locked to private
        self.upload_limit: int | None = None  # per channel per 24 h -> uploadLimitExceeded
        self.consent_channel: str | None = None  # who "logs in" at the auth endpoint
        # state
        self.clients: dict[str, str] = {}
        self.channels: dict[str, FakeChannel] = {}
        self.playlists: dict[str, str] = {}  # playlist id -> channel id
        self._access: dict[str, _Grant] = {}
        self._refresh: dict[str, _Grant] = {}
        self._codes: dict[str, dict[str, Any]] = {}
        self._consented: set[tuple[str, str]] = set()
        self.sessions: dict[str, UploadSession] = {}
        self.videos: list[FakeVideo] = []
        self.comments: list[dict[str, Any]] = []
        self.ratings: dict[tuple[str, str], str] = {}
        self.thumbnails: dict[str, int] = {}  # video id -> bytes
        self.playlist_items: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.token_grants: list[str] = []
        self._issued: list[str] = []
        self.auth_requests: list[dict[str, str]] = []
        self.calls: list[Call] = []
        self.units_used: dict[str, dict[str, int]] = {}  # client id -> bucket -> used
        self.bytes_received = 0
        self.chunks_received = 0
        self._faults: dict[str, list[_Fault]] = {}
        self._chunk_faults: dict[int, _Fault] = {}
        self._tick: asyncio.Event | None = None
        self.app = self._build_app(admin)

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        """What to put in the discovery document's ``rootUrl``."""
        return self.url + "/"

    @property
    def token_uri(self) -> str:
        return self.url + "/token"

    @property
    def auth_uri(self) -> str:
        return self.url + "/o/oauth2/auth"

    def client_config(self, client_id: str, client_secret: str) -> dict[str, Any]:
        """A client secrets document (``installed`` app) pointing at this server."""
        return {
            "installed": {
                "client_id": client_id,
                "client_secret": client_secret,
                "auth_uri": self.auth_uri,
                "token_uri": self.token_uri,
                "redirect_uris": ["http://localhost"],
            }
        }

    # -- setup ------------------------------------------------------------------------------
    def add_client(self, client_id: str, client_secret: str) -> None:
        """Register an OAuth client (a Google Cloud project: quota is charged to it)."""
        self.clients[client_id] = client_secret

    def add_channel(self, channel_id: str, title: str = "") -> FakeChannel:
        channel = FakeChannel(channel_id, title or channel_id)
        self.channels[channel_id] = channel
        if self.consent_channel is None:
            self.consent_channel = channel_id
        return channel

    def add_playlist(self, playlist_id: str, channel_id: str) -> None:
        self.playlists[playlist_id] = channel_id

    def add_comment(self, video_id: str, channel_id: str, text: str) -> dict[str, Any]:
        """A top-level comment by ``channel_id`` (as commentThreads.insert makes it)."""
        video = self.video(video_id)
        assert video is not None, f"no video {video_id}"
        cid = "Ugz" + _new_id(20)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        author = self.channels[channel_id]
        thread = {
            "kind": "youtube#commentThread",
            "etag": secrets.token_hex(8),
            "id": cid,
            "snippet": {
                "channelId": video.channel_id,
                "videoId": video.id,
                "topLevelComment": {
                    "kind": "youtube#comment",
                    "etag": secrets.token_hex(8),
                    "id": cid,
                    "snippet": {
                        "channelId": video.channel_id,
                        "videoId": video.id,
                        "textDisplay": text,
                        "textOriginal": text,
                        "authorDisplayName": author.title,
                        "authorChannelId": {"value": author.id},
                        "canRate": True,
                        "viewerRating": "none",
                        "likeCount": 0,
                        "publishedAt": now,
                        "updatedAt": now,
                    },
                },
                "canReply": True,
                "totalReplyCount": 0,
                "isPublic": True,
            },
        }
        self.comments.append(thread)
        return thread

    def issue_tokens(
        self,
        channel_id: str,
        client_id: str,
        *,
        access_ttl: float | None = None,
        scopes: tuple[str, ...] = (),
    ) -> TokenPair:
        """Tokens as if the user had consented (for tests that skip the OAuth dance)."""
        refresh = self._new_refresh(channel_id, client_id, scopes)
        access, expires_at = self._new_access(channel_id, client_id, scopes, access_ttl)
        return TokenPair(access, refresh, expires_at)

    def _new_refresh(self, channel_id: str, client_id: str, scopes: tuple[str, ...]) -> str:
        token = "1//fake-" + secrets.token_urlsafe(24)
        expires = None if self.refresh_ttl is None else time.time() + self.refresh_ttl
        self._refresh[token] = _Grant(channel_id, client_id, scopes, expires)
        self._issued.append(token)
        return token

    def _new_access(
        self, channel_id: str, client_id: str, scopes: tuple[str, ...], ttl: float | None = None
    ) -> tuple[str, float]:
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        expires_at = time.time() + (self.access_ttl if ttl is None else ttl)
        self._access[token] = _Grant(channel_id, client_id, scopes, expires_at)
        self._issued.append(token)
        return token, expires_at

    # -- knobs ------------------------------------------------------------------------------
    def fail_next(
        self,
        method: str,
        reason: str | None = "backendError",
        *,
        status: int | None = None,
        message: str | None = None,
        times: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """The next ``times`` calls of ``method`` (e.g. ``videos.insert``,
        ``commentThreads.insert``, ``token``) answer this error instead of working."""
        fault = _Fault("error", reason or "badRequest", status, message, retry_after)
        self._faults.setdefault(method, []).extend([fault] * times)

    def reset_next(self, method: str, *, after_effect: bool = False, times: int = 1) -> None:
        """Drop the connection of the next call(s) of ``method`` without answering; with
        ``after_effect`` the call takes effect first (the client cannot know: ambiguous)."""
        fault = _Fault("reset_after" if after_effect else "reset")
        self._faults.setdefault(method, []).extend([fault] * times)

    def fail_chunk(self, n: int, status: int = 503, reason: str = "backendError") -> None:
        """The n-th chunk PUT from now (1-based) is read, counted, discarded, answered with
        ``status``."""
        self._chunk_faults[self.chunks_received + n] = _Fault("error", reason, status)

    def reset_chunk(self, n: int, *, after_effect: bool = False) -> None:
        """The n-th chunk PUT from now loses its connection (after being stored, if
        ``after_effect``: e.g. the final chunk whose 200 never reaches the client)."""
        self._chunk_faults[self.chunks_received + n] = _Fault(
            "reset_after" if after_effect else "reset"
        )

    def hold_chunk(self, n: int) -> Hold:
        """Park the n-th chunk PUT from now (see ``Hold``)."""
        hold = Hold()
        self._chunk_faults[self.chunks_received + n] = _Fault("hold", hold=hold)
        return hold

    def expire_session(self, session_id: str | None = None) -> None:
        """Expire one upload session (all, without an id): later PUTs get 410."""
        for sid, session in self.sessions.items():
            if session_id in (None, sid):
                session.expired = True

    def revoke(self, refresh_token: str | None = None, *, channel_id: str | None = None) -> None:
        """Revoke a refresh token, or all of a channel's; its access tokens die with it."""
        for token, grant in self._refresh.items():
            if token == refresh_token or grant.channel_id == channel_id:
                grant.revoked = True
                for g in self._access.values():
                    if g.channel_id == grant.channel_id and g.client_id == grant.client_id:
                        g.revoked = True

    def expire_access_tokens(self, channel_id: str | None = None) -> None:
        for grant in self._access.values():
            if channel_id in (None, grant.channel_id):
                grant.expires_at = time.time() - 1

    def reset_quota(self) -> None:
        self.units_used.clear()
        self.quota_exhausted = False

    # -- observation ------------------------------------------------------------------------
    def video(self, video_id: str) -> FakeVideo | None:
        return next((v for v in self.videos if v.id == video_id), None)

    def issued_tokens(self) -> list[str]:
        """Every access and refresh token handed out (for leak checks)."""
        return list(self._issued)

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def _notify(self) -> None:
        if self._tick is not None:
            self._tick.set()
            self._tick = None

    async def wait_until(
        self, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
    ) -> None:
        """Wait (without sleeping) until ``predicate()`` holds; checked after every request."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if self._tick is None:
                self._tick = asyncio.Event()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"fake YouTube: timed out after {timeout}s waiting for {what}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tick.wait(), left)

    # -- plumbing ---------------------------------------------------------------------------
    def _build_app(self, admin: bool) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._middleware])
        r = app.router
        r.add_get("/o/oauth2/auth", self._authorize)
        r.add_get("/o/oauth2/v2/auth", self._authorize)
        r.add_post("/token", self._token)
        r.add_post("/revoke", self._revoke)
        for prefix in ("/upload", "/resumable/upload"):
            r.add_post(prefix + "/youtube/v3/videos", self._videos_insert)
            r.add_put(prefix + "/youtube/v3/videos", self._session_put)
            r.add_post(prefix + "/youtube/v3/thumbnails/set", self._thumbnails_set)
        r.add_get("/youtube/v3/channels", self._channels_list)
        r.add_get("/youtube/v3/videos", self._videos_list)
        r.add_put("/youtube/v3/videos", self._videos_update)
        r.add_post("/youtube/v3/videos/rate", self._videos_rate)
        r.add_post("/youtube/v3/commentThreads", self._comment_insert)
        r.add_get("/youtube/v3/commentThreads", self._comment_list)
        r.add_post("/youtube/v3/playlistItems", self._playlist_insert)
        if admin:
            r.add_post("/_fake/setup", self._admin_setup)
            r.add_post("/_fake/tokens", self._admin_tokens)
            r.add_get("/_fake/stats", self._admin_stats)
        return app

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except ApiError as exc:
            response = exc.response()
        except _Drop:
            if request.transport is not None:
                request.transport.abort()
            response = web.Response(status=500)  # never reaches the client
        finally:
            self._notify()
        return response

    def _record(self, method: str, status: int, channel: str | None) -> None:
        self.calls.append(Call(method, status, channel))

    def _fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method)
        return queue.pop(0) if queue else None

    def _raise_fault(self, fault: _Fault) -> None:
        if fault.kind == "reset":
            raise _Drop()
        if fault.kind == "error":
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(int(fault.retry_after))
            raise ApiError(fault.reason, fault.status, fault.message, headers)

    def _bearer(self, request: web.Request) -> _Grant:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        grant = self._access.get(token)
        if (
            grant is None
            or grant.revoked
            or (grant.expires_at is not None and grant.expires_at <= time.time())
        ):
            raise ApiError(
                "authError",
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        return grant

    def _charge(self, grant: _Grant, method: str) -> None:
        bucket, cost = self.costs.get(method, ("units", 1))
        used = self.units_used.setdefault(grant.client_id, {})
        if self.quota_exhausted or used.get(bucket, 0) + cost > self.limits.get(bucket, 1 << 62):
            raise ApiError("quotaExceeded")
        used[bucket] = used.get(bucket, 0) + cost

    async def _api(self, request: web.Request, method: str) -> tuple[_Grant, _Fault | None]:
        """Common entry of an API call: auth, injected faults, quota. Returns the grant and
        a pending after-effect fault (reset after the call took effect)."""
        try:
            grant = self._bearer(request)
        except ApiError as exc:
            self._record(method, exc.status, None)
            raise
        fault = self._fault(method)
        try:
            if fault is not None and fault.kind != "reset_after":
                self._raise_fault(fault)
            self._charge(grant, method)
        except ApiError as exc:
            self._record(method, exc.status, grant.channel_id)
            raise
        except _Drop:
            self._record(method, 0, grant.channel_id)
            raise
        return grant, fault

    def _done(self, method: str, grant: _Grant, fault: _Fault | None, status: int = 200) -> None:
        self._record(method, status, grant.channel_id)
        if fault is not None and fault.kind == "reset_after":
            raise _Drop()

    @staticmethod
    async def _json(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError("parseError", 400, "Parse Error") from None
        if not isinstance(body, dict):
            raise ApiError("parseError", 400, "Parse Error")
        return body

    # -- OAuth ------------------------------------------------------------------------------
    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        q = dict(request.query)
        self.auth_requests.append(q)
        if q.get("client_id") not in self.clients:
            return web.Response(status=401, text="Error 401: invalid_client")
        redirect = q.get("redirect_uri", "")
        host = urlparse(redirect).hostname
        if urlparse(redirect).scheme != "http" or host not in ("127.0.0.1", "localhost", "::1"):
            return web.Response(status=400, text="Error 400: redirect_uri_mismatch")
        if q.get("response_type") != "code":
            return web.Response(status=400, text="Error 400: unsupported_response_type")
        channel = q.get("login_hint") or self.consent_channel
        if channel not in self.channels:
            return web.Response(status=400, text="Error 400: no such account")
        code = "4/fake-" + secrets.token_urlsafe(16)
        scopes = tuple(q.get("scope", "").split())
        self._codes[code] = {
            "channel": channel,
            "client_id": q["client_id"],
            "redirect_uri": redirect,
            "scopes": scopes,
            "challenge": q.get("code_challenge"),
            "method": q.get("code_challenge_method", "plain"),
            "offline": q.get("access_type") == "offline",
            "consent": q.get("prompt") == "consent",
        }
        params = {"code": code, "scope": " ".join(scopes)}
        if "state" in q:
            params = {"state": q["state"], **params}
        sep = "&" if "?" in redirect else "?"
        raise web.HTTPFound(redirect + sep + urlencode(params))

    @staticmethod
    def _oauth_error(error: str, description: str, status: int = 400) -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=status)

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        grant_type = str(form.get("grant_type", ""))
        self.token_grants.append(grant_type)
        self._record("token", 200, None)
        fault = self._fault("token")
        if fault is not None:
            if fault.kind == "error":
                return self._oauth_error(
                    fault.reason, fault.message or fault.reason, fault.status or 400
                )
            raise _Drop()
        client_id, client_secret = self._client_auth(request, form)
        if self.clients.get(client_id) != client_secret:
            return self._oauth_error("invalid_client", "The OAuth client was not found.", 401)
        if grant_type == "authorization_code":
            return self._exchange_code(form, client_id)
        if grant_type == "refresh_token":
            grant = self._refresh.get(str(form.get("refresh_token", "")))
            if (
                grant is None
                or grant.revoked
                or grant.client_id != client_id
                or (grant.expires_at is not None and grant.expires_at <= time.time())
            ):
                return self._oauth_error("invalid_grant", "Token has been expired or revoked.")
            access, expires_at = self._new_access(grant.channel_id, client_id, grant.scopes)
            body: dict[str, Any] = {
                "access_token": access,
                "expires_in": int(expires_at - time.time()),
                "scope": " ".join(grant.scopes),
                "token_type": "Bearer",
            }
            if self.rotate_refresh_tokens:  # TikTok-style: the old one stops working
                grant.revoked = True
                body["refresh_token"] = self._new_refresh(grant.channel_id, client_id, grant.scopes)
            return web.json_response(body)
        return self._oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    @staticmethod
    def _client_auth(request: web.Request, form: dict[str, Any]) -> tuple[str, str]:
        """Client credentials from HTTP Basic auth (requests-oauthlib) or the form body
        (google-auth): Google's token endpoint accepts both."""
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            with contextlib.suppress(ValueError):
                raw = base64.b64decode(header[6:]).decode()
                client_id, _, secret = raw.partition(":")
                return unquote_plus(client_id), unquote_plus(secret)
        return str(form.get("client_id", "")), str(form.get("client_secret", ""))

    def _exchange_code(self, form: dict[str, Any], client_id: str) -> web.Response:
        code = self._codes.pop(str(form.get("code", "")), None)
        if code is None or code["client_id"] != client_id:
            return self._oauth_error("invalid_grant", "Malformed auth code.")
        if form.get("redirect_uri") != code["redirect_uri"]:
            return self._oauth_error("redirect_uri_mismatch", "Bad Request")
        if code["challenge"]:
            verifier = str(form.get("code_verifier", ""))
            if code["method"] == "S256":
                digest = hashlib.sha256(verifier.encode()).digest()
                derived = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            else:
                derived = verifier
            if derived != code["challenge"]:
                return self._oauth_error("invalid_grant", "Invalid code verifier.")
        channel, scopes = code["channel"], code["scopes"]
        access, expires_at = self._new_access(channel, client_id, scopes)
        body: dict[str, Any] = {
            "access_token": access,
            "expires_in": int(expires_at - time.time()),
            "scope": " ".join(scopes),
            "token_type": "Bearer",
        }
        # Google returns a refresh token for offline access on (re-)consent only
        first = (client_id, channel) not in self._consented
        if code["offline"] and (first or code["consent"]):
            body["refresh_token"] = self._new_refresh(channel, client_id, scopes)
        self._consented.add((client_id, channel))
        return web.json_response(body)

    async def _revoke(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(request.query.get("token") or form.get("token") or "")
        if token in self._refresh:
            self.revoke(token)
        elif token in self._access:
            self._access[token].revoked = True
        else:
            return self._oauth_error("invalid_token", "Bad Request")
        return web.Response(status=200)

    # -- resumable upload -------------------------------------------------------------------
    def _validate_video(self, resource: dict[str, Any]) -> None:
        snippet = resource.get("snippet") or {}
        title = snippet.get("title")
        if not isinstance(title, str) or not title.strip() or len(title) > 100:
            raise ApiError("invalidTitle")
        if "<" in title or ">" in title:
            raise ApiError("invalidTitle")
        description = snippet.get("description", "")
        if len(description.encode()) > 5000 or "<" in description or ">" in description:
            raise ApiError("invalidDescription")
        tags = snippet.get("tags") or []
        if sum(len(t) + (2 if " " in t else 0) for t in tags) + max(len(tags) - 1, 0) > 500:
            raise ApiError("invalidTags")
        if snippet.get("categoryId", "22") not in CATEGORIES:
            raise ApiError("invalidCategoryId")
        privacy = (resource.get("status") or {}).get("privacyStatus", "public")
        if privacy not in ("public", "private", "unlisted"):
            raise ApiError("invalidVideoMetadata", 400, "Invalid privacy status.")

    async def _videos_insert(self, request: web.Request) -> web.Response:
        if request.query.get("uploadType") != "resumable":
            raise ApiError("badRequest", 400, "The fake supports uploadType=resumable only.")
        grant, fault = await self._api(request, "videos.insert")
        resource = await self._json(request)
        try:
            self._validate_video(resource)
            if self.upload_limit is not None:
                day_ago = time.time() - 86400
                recent = [
                    v
                    for v in self.videos
                    if v.channel_id == grant.channel_id and v.resource["_created"] > day_ago
                ]
                if len(recent) >= self.upload_limit:
                    raise ApiError("uploadLimitExceeded")
        except ApiError as exc:
            self._record("videos.insert", exc.status, grant.channel_id)
            raise
        total = request.headers.get("X-Upload-Content-Length")
        sid = "ABPtcPp" + secrets.token_urlsafe(24)
        self.sessions[sid] = UploadSession(
            sid,
            grant.channel_id,
            grant.client_id,
            int(total) if total else None,
            resource,
            notify=request.query.get("notifySubscribers", "true") != "false",
        )
        self._done("videos.insert", grant, fault)
        origin = f"{request.url.scheme}://{request.host}"
        location = f"{origin}{request.path}?uploadType=resumable&upload_id={sid}"
        return web.Response(status=200, headers={"Location": location, "X-GUploader-UploadID": sid})

    def _range_headers(self, session: UploadSession) -> dict[str, str]:
        return {"Range": f"bytes=0-{session.received - 1}"} if session.received else {}

    def _finished(self, session: UploadSession) -> web.Response:
        video = self.video(session.video_id or "")
        assert video is not None
        return web.json_response(self._public(video.resource), status=200)

    @staticmethod
    def _public(resource: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in resource.items() if not k.startswith("_")}

    async def _drain(self, request: web.Request, session: UploadSession | None) -> None:
        """Read and count a body we are about to refuse: a client still sending its chunk
        would otherwise see a reset instead of our answer (and the bytes did arrive)."""
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, OSError, ValueError):
            async for piece in request.content.iter_any():
                self.bytes_received += len(piece)
                if session is not None:
                    session.bytes_in += len(piece)

    async def _session_put(self, request: web.Request) -> web.StreamResponse:
        """A chunk PUT or a status query on an upload session."""
        session = self.sessions.get(request.query.get("upload_id", ""))
        try:
            self._bearer(request)
            if session is None:
                raise ApiError("notFound", 404, "Upload session not found.")
            if session.expired:
                raise ApiError("gone", 410, "The upload session has expired.")
            m = _RANGE.fullmatch(request.headers.get("Content-Range", "").strip())
            length = int(request.headers.get("Content-Length", "0") or 0)
            if m is None or (m.group(1) is None and length):
                raise ApiError("badContent", 400, "Failed to parse Content-Range header.")
            total = None if m.group(3) == "*" else int(m.group(3))
            if total is not None and session.total not in (None, total):
                raise ApiError("badContent", 400, "Content-Range total does not match.")
        except ApiError as exc:
            await self._drain(request, session)
            self._record("upload.chunk", exc.status, session.channel_id if session else None)
            raise
        if total is not None:
            session.total = total
        if m.group(1) is None:  # status query
            session.queries += 1
            self._record("upload.query", 200 if session.video_id else 308, session.channel_id)
            if session.video_id:
                return self._finished(session)
            return web.Response(status=308, headers=self._range_headers(session))
        return await self._chunk(request, session, int(m.group(1)), int(m.group(2)))

    async def _chunk(
        self, request: web.Request, session: UploadSession, first: int, last: int
    ) -> web.StreamResponse:
        self.chunks_received += 1
        session.chunks += 1
        session.first_bytes.append(first)
        session.arrivals.append((first, time.monotonic_ns()))
        fault = self._chunk_faults.pop(self.chunks_received, None)
        if fault is not None and fault.kind == "hold":
            assert fault.hold is not None
            fault.hold.session_id, fault.hold.first_byte = session.id, first
            fault.hold.arrived.set()
            self._notify()
            await fault.hold.released.wait()
        sha = session.sha.copy()
        skip = max(0, session.received - first)
        got = 0
        try:
            async for piece in request.content.iter_any():
                self.bytes_received += len(piece)
                session.bytes_in += len(piece)
                if skip < len(piece):
                    sha.update(piece[skip:] if skip else piece)
                skip = max(0, skip - len(piece))
                got += len(piece)
        except (ConnectionError, asyncio.IncompleteReadError, OSError, ValueError):
            pass  # the client went away mid-chunk
        finally:
            if fault is not None and fault.kind == "hold" and fault.hold is not None:
                fault.hold.done.set()
        if fault is not None and fault.kind == "hold":
            self._record("upload.chunk", 503, session.channel_id)
            raise ApiError("backendError")
        if fault is not None and fault.kind in ("error", "reset"):
            self._record("upload.chunk", fault.status or 0, session.channel_id)
            self._raise_fault(fault)
        final = session.total is not None and last + 1 == session.total
        try:
            if got != last - first + 1:
                raise ApiError("badContent", 400, "Chunk shorter than its Content-Range.")
            if session.video_id:
                self._record("upload.chunk", 200, session.channel_id)
                return self._finished(session)
            if first > session.received:
                raise ApiError("badContent", 400, "Chunk does not continue the received bytes.")
            if not final and (last + 1) % self.granularity:
                raise ApiError(
                    "badContent", 400, f"Non-final chunks must be multiples of {self.granularity}."
                )
        except ApiError as exc:
            self._record("upload.chunk", exc.status, session.channel_id)
            raise
        if last + 1 > session.received:
            session.sha = sha
            session.received = last + 1
        if final:
            video = self._create_video(session)
            self._record("upload.chunk", 200, session.channel_id)
            if fault is not None and fault.kind == "reset_after":
                raise _Drop()
            return web.json_response(self._public(video.resource), status=200)
        self._record("upload.chunk", 308, session.channel_id)
        if fault is not None and fault.kind == "reset_after":
            raise _Drop()
        return web.Response(status=308, headers=self._range_headers(session))

    def _create_video(self, session: UploadSession) -> FakeVideo:
        vid = _new_id()
        snippet = dict(session.resource.get("snippet") or {})
        status = dict(session.resource.get("status") or {})
        privacy = status.get("privacyStatus", "public")
        if self.force_private:
            privacy = "private"
        channel = self.channels.get(session.channel_id)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        resource: dict[str, Any] = {
            "kind": "youtube#video",
            "etag": secrets.token_hex(8),
            "id": vid,
            "snippet": {
                "publishedAt": now,
                "channelId": session.channel_id,
                "title": snippet.get("title", ""),
                "description": snippet.get("description", ""),
                "tags": list(snippet.get("tags") or []),
                "categoryId": snippet.get("categoryId", "22"),
                "channelTitle": channel.title if channel else "",
            },
            "status": {
                **status,
                "uploadStatus": "uploaded",
                "privacyStatus": privacy,
                "license": status.get("license", "youtube"),
                "embeddable": status.get("embeddable", True),
                "publicStatsViewable": True,
            },
            "_created": time.time(),
        }
        if not resource["snippet"]["tags"]:
            del resource["snippet"]["tags"]
        video = FakeVideo(
            vid, session.channel_id, session.id, session.received, session.sha.hexdigest(), resource
        )
        session.video_id = vid
        self.videos.append(video)
        return video

    # -- other API methods ----------------------------------------------------------------
    def _require_video(self, video_id: str) -> FakeVideo:
        video = self.video(video_id)
        if video is None:
            raise ApiError("videoNotFound")
        return video

    async def _channels_list(self, request: web.Request) -> web.Response:
        grant, fault = await self._api(request, "channels.list")
        if request.query.get("mine") != "true":
            self._record("channels.list", 400, grant.channel_id)
            raise ApiError("missingRequiredParameter", 400, "The fake supports mine=true only.")
        channel = self.channels[grant.channel_id]
        item = {
            "kind": "youtube#channel",
            "id": channel.id,
            "snippet": {"title": channel.title, "customUrl": "@" + channel.id.lower()},
        }
        self._done("channels.list", grant, fault)
        return web.json_response({"kind": "youtube#channelListResponse", "items": [item]})

    async def _videos_list(self, request: web.Request) -> web.Response:
        grant, fault = await self._api(request, "videos.list")
        ids = [i for i in request.query.get("id", "").split(",") if i]
        items = [self._public(v.resource) for v in self.videos if v.id in ids]
        self._done("videos.list", grant, fault)
        return web.json_response({"kind": "youtube#videoListResponse", "items": items})

    async def _videos_update(self, request: web.Request) -> web.Response:
        grant, fault = await self._api(request, "videos.update")
        body = await self._json(request)
        parts = set(request.query.get("part", "").split(","))
        try:
            video = self._require_video(str(body.get("id", "")))
            if video.channel_id != grant.channel_id:
                raise ApiError("forbidden")
            if "snippet" in parts:
                snippet = body.get("snippet") or {}
                if "categoryId" not in snippet:
                    raise ApiError("invalidCategoryId")
                self._validate_video({"snippet": snippet, "status": body.get("status") or {}})
            if "status" in parts:
                self._validate_video(
                    {"snippet": video.resource["snippet"], "status": body.get("status") or {}}
                )
        except ApiError as exc:
            self._record("videos.update", exc.status, grant.channel_id)
            raise
        for part in ("snippet", "status"):
            if part in parts:
                merged = dict(body.get(part) or {})
                if part == "snippet":
                    for keep in ("publishedAt", "channelId", "channelTitle"):
                        merged[keep] = video.resource["snippet"].get(keep)
                else:
                    merged["uploadStatus"] = video.resource["status"].get("uploadStatus")
                    if self.force_private:
                        merged["privacyStatus"] = "private"
                video.resource[part] = merged  # a part is replaced whole, as on YouTube
        self.updates.append(body)
        self._done("videos.update", grant, fault)
        return web.json_response(self._public(video.resource))

    async def _videos_rate(self, request: web.Request) -> web.Response:
        grant, fault = await self._api(request, "videos.rate")
        rating = request.query.get("rating", "")
        try:
            self._require_video(request.query.get("id", ""))
            if rating not in ("like", "dislike", "none"):
                raise ApiError("invalidRating", 400, "The request contained an invalid rating.")
        except ApiError as exc:
            self._record("videos.rate", exc.status, grant.channel_id)
            raise
        self.ratings[(grant.channel_id, request.query["id"])] = rating
        self._done("videos.rate", grant, fault, 204)
        return web.Response(status=204)

    async def _comment_insert(self, request: web.Request) -> web.Response:
        grant, fault = await self._api(request, "commentThreads.insert")
        body = await self._json(request)
        snippet = body.get("snippet") or {}
        text = ((snippet.get("topLevelComment") or {}).get("snippet") or {}).get("textOriginal")
        try:
            video = self._require_video(str(snippet.get("videoId", "")))
            if not text:
                raise ApiError("commentTextRequired", 400, "The comment text is empty.")
        except ApiError as exc:
            self._record("commentThreads.insert", exc.status, grant.channel_id)
            raise
        thread = self.add_comment(video.id, grant.channel_id, text)
        self._done("commentThreads.insert", grant, fault)
        return web.json_response(thread)

    async def _comment_list(self, request: web.Request) -> web.Response:
        grant, fault = await self._api(request, "commentThreads.list")
        video_id = request.query.get("videoId", "")
        try:
            self._require_video(video_id)
        except ApiError as exc:
            self._record("commentThreads.list", exc.status, grant.channel_id)
            raise
        threads = [t for t in reversed(self.comments) if t["snippet"]["videoId"] == video_id]
        terms = request.query.get("searchTerms")
        if terms:
            threads = [
                t
                for t in threads
                if terms in t["snippet"]["topLevelComment"]["snippet"]["textOriginal"]
            ]
        size = min(int(request.query.get("maxResults", "20")), 100)
        start = int(request.query.get("pageToken", "0") or 0)
        page = threads[start : start + size]
        out: dict[str, Any] = {
            "kind": "youtube#commentThreadListResponse",
            "pageInfo": {"totalResults": len(page), "resultsPerPage": size},
            "items": page,
        }
        if start + size < len(threads):
            out["nextPageToken"] = str(start + size)
        self._done("commentThreads.list", grant, fault)
        return web.json_response(out)

    async def _thumbnails_set(self, request: web.Request) -> web.Response:
        grant, fault = await self._api(request, "thumbnails.set")
        data = await request.read()
        video_id = request.query.get("videoId", "")
        try:
            video = self._require_video(video_id)
            if video.channel_id != grant.channel_id:
                raise ApiError("forbidden")
            if len(data) > 2 * 1024 * 1024:
                raise ApiError("mediaBodyTooLarge", 400, "The thumbnail is larger than 2 MB.")
        except ApiError as exc:
            self._record("thumbnails.set", exc.status, grant.channel_id)
            raise
        self.thumbnails[video_id] = len(data)
        self._done("thumbnails.set", grant, fault)
        url = f"https://i.ytimg.com/vi/{video_id}/default.jpg"
        return web.json_response(
            {
                "kind": "youtube#thumbnailSetResponse",
                "items": [{"default": {"url": url, "width": 120, "height": 90}}],
            }
        )

    async def _playlist_insert(self, request: web.Request) -> web.Response:
        grant, fault = await self._api(request, "playlistItems.insert")
        body = await self._json(request)
        snippet = body.get("snippet") or {}
        playlist = str(snippet.get("playlistId", ""))
        video_id = str((snippet.get("resourceId") or {}).get("videoId", ""))
        try:
            if self.playlists.get(playlist) != grant.channel_id:
                raise ApiError("playlistNotFound")
            self._require_video(video_id)
        except ApiError as exc:
            self._record("playlistItems.insert", exc.status, grant.channel_id)
            raise
        position = sum(1 for i in self.playlist_items if i["snippet"]["playlistId"] == playlist)
        item = {
            "kind": "youtube#playlistItem",
            "etag": secrets.token_hex(8),
            "id": "PLI" + _new_id(20),
            "snippet": {
                "playlistId": playlist,
                "resourceId": {"kind": "youtube#video", "videoId": video_id},
                "position": position,
                "channelId": grant.channel_id,
            },
        }
        self.playlist_items.append(item)
        self._done("playlistItems.insert", grant, fault)
        return web.json_response(item)

    # -- admin API (for other processes: benchmark, demo) -----------------------------------
    async def _admin_setup(self, request: web.Request) -> web.Response:
        body = await request.json()
        for client_id, secret in body.get("clients", []):
            self.add_client(client_id, secret)
        for channel_id, title in body.get("channels", []):
            self.add_channel(channel_id, title)
        for playlist_id, channel_id in body.get("playlists", []):
            self.add_playlist(playlist_id, channel_id)
        for knob in ("force_private", "quota_exhausted", "upload_limit", "access_ttl"):
            if knob in body:
                setattr(self, knob, body[knob])
        return web.json_response({"ok": True})

    async def _admin_tokens(self, request: web.Request) -> web.Response:
        body = await request.json()
        pair = self.issue_tokens(
            body["channel_id"], body["client_id"], access_ttl=body.get("access_ttl")
        )
        return web.json_response(
            {
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
                "expires_at": pair.expires_at,
            }
        )

    async def _admin_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "bytes_received": self.bytes_received,
                "chunks_received": self.chunks_received,
                "videos": [
                    {"id": v.id, "channel_id": v.channel_id, "size": v.size, "sha256": v.sha256}
                    for v in self.videos
                ],
                "sessions": {
                    s.id: {"received": s.received, "bytes_in": s.bytes_in, "chunks": s.chunks}
                    for s in self.sessions.values()
                },
                "comments": len(self.comments),
                "units_used": self.units_used,
            }
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m fabric.testing.fake_youtube --port 8099 --client ID:SECRET --channel UC1``:
    serve until SIGINT/SIGTERM; prints ``FAKE_YOUTUBE <base url>`` once listening."""
    ap = argparse.ArgumentParser(prog="python -m fabric.testing.fake_youtube")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--client", action="append", default=[], help="CLIENT_ID:SECRET")
    ap.add_argument("--channel", action="append", default=[], help="CHANNEL_ID[:TITLE]")
    args = ap.parse_args(argv)

    async def serve() -> None:
        fake = FakeYouTube()
        for spec in args.client:
            client_id, _, secret = spec.partition(":")
            fake.add_client(client_id, secret)
        for spec in args.channel:
            channel_id, _, title = spec.partition(":")
            fake.add_channel(channel_id, title)
        url = await fake.start(args.host, args.port)
        print(f"FAKE_YOUTUBE {url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await fake.close()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
