"""A fake TikTok open API (Content Posting API v2 and OAuth v2) that speaks the real protocol.

Public and reusable by tests and the demo. Endpoints:

- ``POST /v2/oauth/token/`` (form, ``grant_type=refresh_token``): a new access token and a
  *rotated* refresh token; the old refresh token stops working (``invalid_grant``);
- ``POST /v2/post/publish/creator_info/query/``: ``privacy_level_options``,
  ``max_video_post_duration_sec``, comment/duet/stitch flags, ``creator_username``;
- ``POST /v2/post/publish/video/init/``: checks the privacy level against the options and the
  FILE_UPLOAD ``source_info`` against TikTok's chunk rules (checked here independently of
  the adapter's ``plan_chunks``), answers ``publish_id`` and ``upload_url``;
- ``PUT /upload/{publish_id}``: one chunk, ``Content-Range: bytes FIRST-LAST/TOTAL`` must be
  the next expected range; 206 while partial, 201 when complete;
- ``POST /v2/post/publish/status/fetch/``: ``PROCESSING_UPLOAD`` until all bytes arrived,
  then ``PROCESSING_DOWNLOAD`` for ``processing_polls`` polls, then ``PUBLISH_COMPLETE``
  (with ``publicaly_available_post_id`` for public posts — TikTok's spelling) or ``FAILED``
  with ``fail_reason`` when ``fail_reason`` is set.

Every JSON answer is ``{"data": {...}, "error": {"code", "message", "log_id"}}``, with
``code == "ok"`` on success. ``fail_next`` injects errors, also with HTTP 200 as TikTok does.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import secrets
from typing import Any

import orjson
from aiohttp import web

from fabric.testing._server import FakeServer

__all__ = ["FakeTikTok", "Fault", "Upload"]

MB = 1024 * 1024
RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


@dataclasses.dataclass
class Upload:
    publish_id: str
    open_id: str
    post_info: dict[str, Any]
    video_size: int
    chunk_size: int
    total_chunk_count: int
    received: int = 0
    chunks: list[str] = dataclasses.field(default_factory=list)  # Content-Range values
    content_types: list[str] = dataclasses.field(default_factory=list)
    polls_left: int = 0
    status: str = "PROCESSING_UPLOAD"
    fail_reason: str | None = None
    post_id: str | None = None


@dataclasses.dataclass
class Fault:
    """An injected error: skip ``after`` matching calls, then answer ``times`` of them."""

    endpoint: str
    status: int
    code: str
    message: str
    times: int = 1
    after: int = 0


class FakeTikTok(FakeServer):
    """The fake server. Accounts are added with ``add_account``; tokens are checked."""

    def __init__(
        self,
        *,
        min_chunk: int = 5 * MB,
        max_chunk: int = 64 * MB,
        max_last_chunk: int = 128 * MB,
        max_chunks: int = 1000,
        processing_polls: int = 1,
        access_ttl: int = 86400,
    ) -> None:
        self.min_chunk = min_chunk
        self.max_chunk = max_chunk
        self.max_last_chunk = max_last_chunk
        self.max_chunks = max_chunks
        self.processing_polls = processing_polls
        self.access_ttl = access_ttl
        self.client_key = "fake-client-key"
        self.client_secret = "fake-client-secret"
        self.access: dict[str, str] = {}  # access token -> open id
        self.refresh: dict[str, str] = {}  # refresh token -> open id
        self.creators: dict[str, dict[str, Any]] = {}  # open id -> creator_info data
        self.uploads: dict[str, Upload] = {}
        self.injected: list[Fault] = []
        self.fail_reason: str | None = None  # the next publishes end FAILED with this reason
        self._ids = itertools.count(7_300_000_000_000_000_001)
        # counters
        self.inits = 0
        self.bytes_received = 0
        self.status_polls = 0
        self.published = 0
        self.refreshes = 0
        self.creator_queries = 0
        self.base_url = ""
        self.app = self._build()

    # -- set-up ----------------------------------------------------------------------------------
    def add_account(
        self,
        open_id: str,
        access_token: str,
        refresh_token: str,
        *,
        username: str = "fabric.test",
        privacy_level_options: list[str] | None = None,
        max_video_post_duration_sec: int = 600,
        comment_disabled: bool = False,
    ) -> None:
        self.access[access_token] = open_id
        self.refresh[refresh_token] = open_id
        self.creators[open_id] = {
            "creator_avatar_url": "https://p16.tiktokcdn.com/avatar.jpeg",
            "creator_username": username,
            "creator_nickname": username.title(),
            "privacy_level_options": privacy_level_options
            or ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"],
            "comment_disabled": comment_disabled,
            "duet_disabled": False,
            "stitch_disabled": True,
            "max_video_post_duration_sec": max_video_post_duration_sec,
        }

    def revoke_access(self, access_token: str) -> None:
        """Make an access token invalid (as when it expires early)."""
        self.access.pop(access_token, None)

    def fail_next(
        self,
        endpoint: str,
        code: str,
        message: str = "",
        *,
        status: int = 200,
        times: int = 1,
        after: int = 0,
    ) -> None:
        """Answer ``times`` calls to ``endpoint`` (``creator_info``, ``init``, ``upload``,
        ``status``, ``token`` or ``*``), after letting ``after`` through, with
        ``error.code == code`` (HTTP 200 by default: TikTok does that too)."""
        self.injected.append(Fault(endpoint, status, code, message, times, after))

    # -- plumbing --------------------------------------------------------------------------------
    def _build(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_post("/v2/oauth/token/", self._token)
        app.router.add_post("/v2/post/publish/creator_info/query/", self._creator_info)
        app.router.add_post("/v2/post/publish/video/init/", self._init)
        app.router.add_put("/upload/{publish_id}", self._chunk)
        app.router.add_post("/v2/post/publish/status/fetch/", self._status)
        return app

    @staticmethod
    def _answer(
        data: dict[str, Any] | None = None,
        code: str = "ok",
        message: str = "",
        status: int = 200,
    ) -> web.Response:
        body = {
            "data": data or {},
            "error": {"code": code, "message": message, "log_id": secrets.token_hex(12)},
        }
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")

    def _injected(self, endpoint: str) -> web.Response | None:
        for fault in self.injected:
            if fault.endpoint not in (endpoint, "*"):
                continue
            if fault.after > 0:
                fault.after -= 1
                return None
            fault.times -= 1
            if fault.times <= 0:
                self.injected.remove(fault)
            return self._answer(None, fault.code, fault.message, fault.status)
        return None

    def _open_id(self, request: web.Request) -> str | web.Response:
        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        open_id = self.access.get(token)
        if open_id is None:
            return self._answer(
                None,
                "access_token_invalid",
                "The access token is invalid or not found in the request.",
                401,
            )
        return open_id

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return {}
        return body if isinstance(body, dict) else {}

    # -- endpoints -------------------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if (hit := self._injected("token")) is not None:
            return hit
        if form.get("client_key") != self.client_key or (
            form.get("client_secret") != self.client_secret
        ):
            return web.json_response(
                {
                    "error": "invalid_client",
                    "error_description": "Client key or secret is incorrect.",
                    "log_id": secrets.token_hex(12),
                },
                status=401,
            )
        if form.get("grant_type") != "refresh_token":
            return web.json_response(
                {"error": "unsupported_grant_type", "error_description": "grant_type"},
                status=400,
            )
        old = str(form.get("refresh_token") or "")
        open_id = self.refresh.pop(old, None)  # rotation: the old refresh token dies here
        if open_id is None:
            return web.json_response(
                {
                    "error": "invalid_grant",
                    "error_description": "Refresh token is invalid or expired.",
                    "log_id": secrets.token_hex(12),
                },
                status=400,
            )
        access = "act." + secrets.token_urlsafe(24)
        refresh = "rft." + secrets.token_urlsafe(24)
        self.access[access] = open_id
        self.refresh[refresh] = open_id
        self.refreshes += 1
        return web.json_response(
            {
                "access_token": access,
                "expires_in": self.access_ttl,
                "open_id": open_id,
                "refresh_expires_in": 31536000,
                "refresh_token": refresh,
                "scope": "user.info.basic,video.publish",
                "token_type": "Bearer",
            }
        )

    async def _creator_info(self, request: web.Request) -> web.Response:
        open_id = self._open_id(request)
        if isinstance(open_id, web.Response):
            return open_id
        if (hit := self._injected("creator_info")) is not None:
            return hit
        self.creator_queries += 1
        return self._answer(dict(self.creators[open_id]))

    async def _init(self, request: web.Request) -> web.Response:
        open_id = self._open_id(request)
        if isinstance(open_id, web.Response):
            return open_id
        if (hit := self._injected("init")) is not None:
            return hit
        body = await self._json_body(request)
        post = body.get("post_info") or {}
        source = body.get("source_info") or {}
        creator = self.creators[open_id]
        level = post.get("privacy_level")
        if level not in creator["privacy_level_options"]:
            if creator["privacy_level_options"] == ["SELF_ONLY"]:
                return self._answer(
                    None,
                    "unaudited_client_can_only_post_to_private_accounts",
                    "Unaudited clients can only post to private accounts.",
                    403,
                )
            return self._answer(
                None,
                "privacy_level_option_mismatch",
                "privacy_level is not one of the creator's privacy_level_options",
                400,
            )
        problem = self._check_source(source)
        if problem:
            return self._answer(None, "invalid_params", problem, 400)
        publish_id = f"v_pub_file~v2-1.{next(self._ids)}"
        self.uploads[publish_id] = Upload(
            publish_id=publish_id,
            open_id=open_id,
            post_info=dict(post),
            video_size=int(source["video_size"]),
            chunk_size=int(source["chunk_size"]),
            total_chunk_count=int(source["total_chunk_count"]),
            polls_left=self.processing_polls,
        )
        self.inits += 1
        upload_url = f"{request.scheme}://{request.host}/upload/{publish_id}?upload_token=" + (
            secrets.token_urlsafe(12)
        )
        return self._answer({"publish_id": publish_id, "upload_url": upload_url})

    def _check_source(self, source: dict[str, Any]) -> str | None:
        """TikTok's FILE_UPLOAD rules, written out independently of the adapter's math."""
        if source.get("source") != "FILE_UPLOAD":
            return "source must be FILE_UPLOAD"
        try:
            size = int(source["video_size"])
            chunk = int(source["chunk_size"])
            count = int(source["total_chunk_count"])
        except (KeyError, TypeError, ValueError):
            return "video_size, chunk_size and total_chunk_count are required"
        if size <= 0 or chunk <= 0:
            return "sizes must be positive"
        if size < self.min_chunk and (chunk != size or count != 1):
            return "a video under the minimum chunk size must be uploaded whole"
        if size >= self.min_chunk and not self.min_chunk <= chunk <= self.max_chunk:
            return "chunk_size out of range"
        if size > self.max_chunk and count < 2:
            return "a video over the maximum chunk size must be uploaded in chunks"
        if count != size // chunk:
            return "total_chunk_count must be video_size / chunk_size rounded down"
        if not 1 <= count <= self.max_chunks:
            return "total_chunk_count out of range"
        if size - (count - 1) * chunk > self.max_last_chunk:
            return "the last chunk is too large"
        return None

    async def _chunk(self, request: web.Request) -> web.Response:
        up = self.uploads.get(request.match_info["publish_id"])
        if up is None:
            return self._answer(None, "invalid_params", "unknown upload", 404)
        data = await request.read()  # read first: the client has sent it either way
        self.bytes_received += len(data)
        if (hit := self._injected("upload")) is not None:
            return hit
        header = request.headers.get("Content-Range", "")
        match = RANGE.match(header)
        index = len(up.chunks)
        if match is None or index >= up.total_chunk_count:
            return self._answer(None, "invalid_params", f"bad Content-Range {header!r}", 400)
        first, last, total = (int(g) for g in match.groups())
        want_first = index * up.chunk_size
        want_last = (
            up.video_size - 1
            if index == up.total_chunk_count - 1
            else want_first + up.chunk_size - 1
        )
        if (first, last, total) != (want_first, want_last, up.video_size) or (
            len(data) != last - first + 1
        ):
            return self._answer(
                None,
                "invalid_params",
                f"expected bytes {want_first}-{want_last}/{up.video_size}, got {header!r}"
                f" with {len(data)} bytes",
                400,
            )
        up.chunks.append(header)
        up.content_types.append(request.headers.get("Content-Type", ""))
        up.received += len(data)
        if up.received < up.video_size:
            return web.Response(status=206)
        up.status = "PROCESSING_DOWNLOAD"
        return web.Response(status=201)

    async def _status(self, request: web.Request) -> web.Response:
        open_id = self._open_id(request)
        if isinstance(open_id, web.Response):
            return open_id
        if (hit := self._injected("status")) is not None:
            return hit
        body = await self._json_body(request)
        up = self.uploads.get(str(body.get("publish_id")))
        if up is None or up.open_id != open_id:
            return self._answer(None, "invalid_publish_id", "publish_id does not exist", 400)
        self.status_polls += 1
        if up.status == "PROCESSING_DOWNLOAD":
            if up.polls_left > 0:
                up.polls_left -= 1
            elif self.fail_reason:
                up.status, up.fail_reason = "FAILED", self.fail_reason
            else:
                up.status = "PUBLISH_COMPLETE"
                self.published += 1
                if up.post_info.get("privacy_level") == "PUBLIC_TO_EVERYONE":
                    up.post_id = str(next(self._ids))
        data: dict[str, Any] = {"status": up.status, "uploaded_bytes": up.received}
        if up.status == "FAILED":
            data["fail_reason"] = up.fail_reason
        if up.status == "PUBLISH_COMPLETE":
            data["publicaly_available_post_id"] = [int(up.post_id)] if up.post_id else []
        return self._answer(data)
