"""A fake Instagram Graph API (Reels publishing) that speaks the real protocol.

Public and reusable: tests and the demo point ``InstagramPlatform`` at it. It implements
what the adapter uses, shaped like Instagram's answers:

- ``GET /{v}/{ig-user-id}/content_publishing_limit`` → ``{"data": [{"quota_usage",
  "config": {"quota_total", "quota_duration"}}]}`` (usage = media published in the window);
- ``POST /{v}/{ig-user-id}/media`` (``media_type=REELS``, ``video_url`` or
  ``upload_type=resumable``) → ``{"id"}`` plus ``"uri"`` for resumable uploads;
- ``POST /ig-api-upload/{v}/{container-id}`` (the upload host) with ``Authorization: OAuth``,
  ``offset`` and ``file_size`` headers → ``{"success": true, ...}``;
- ``GET /{v}/{container-id}?fields=status_code,status``: a container answers
  ``IN_PROGRESS`` for ``in_progress_polls`` polls (counted once its bytes are in), then the
  next outcome from ``outcomes`` (default ``FINISHED``; ``ERROR``/``EXPIRED`` on demand);
  ``PUBLISHED`` after ``media_publish``;
- ``POST /{v}/{ig-user-id}/media_publish?creation_id=`` → ``{"id"}`` (9007/2207027 when the
  container is not finished, 9/2207042 when the publishing limit is used up);
- ``GET /{v}/{media-id}?fields=permalink``, ``GET /{v}/{ig-user-id}/media``;
- ``POST``/``GET /{v}/{media-id}/comments``;
- ``GET /refresh_access_token?grant_type=ig_refresh_token``.

Errors are ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``; a bad
token is HTTP 400 with code 190. Every answer carries ``X-App-Usage`` and
``X-Business-Use-Case-Usage`` computed from the calls in the last hour (``calls_per_hour``)
or forced with ``usage_pct``. Counters and knobs (``fail_next``, ``outcomes``,
``quota_used``...) let tests assert what arrived.
"""

from __future__ import annotations

import dataclasses
import itertools
import secrets
import time
from collections import deque
from typing import Any

import orjson
from aiohttp import web

from fabric.testing._server import FakeServer

__all__ = ["Container", "FakeGraph", "Injected", "graph_error"]

IG_USER = web.RequestKey("ig_user", str)  # the token's IG user, for the usage header


def graph_error(
    message: str,
    code: int,
    subcode: int | None = None,
    *,
    type_: str = "OAuthException",
    is_transient: bool = False,
) -> dict[str, Any]:
    """A Graph error body exactly as Instagram shapes it."""
    inner: dict[str, Any] = {
        "message": message,
        "type": type_,
        "code": code,
        "fbtrace_id": "A" + secrets.token_hex(10),
    }
    if subcode is not None:
        inner["error_subcode"] = subcode
    if is_transient:
        inner["is_transient"] = True
    return {"error": inner}


@dataclasses.dataclass
class Container:
    id: str
    user: str
    caption: str
    mode: str  # "video_url" | "resumable"
    video_url: str | None = None
    file_size: int | None = None
    received: bytearray = dataclasses.field(default_factory=bytearray)
    uploaded: bool = False
    polls_left: int = 0
    outcome: str = "FINISHED"
    status_code: str = "IN_PROGRESS"
    message: str = ""  # the ``status`` text of the final outcome
    media_id: str | None = None


@dataclasses.dataclass
class Injected:
    """An error to answer instead of handling: for the next ``times`` matching calls."""

    endpoint: str  # "limit" | "create" | "upload" | "status" | "publish" | "comment" | "*" ...
    status: int
    body: dict[str, Any]
    times: int = 1


class FakeGraph(FakeServer):
    """The fake server. ``tokens`` maps access token → IG user id."""

    def __init__(
        self,
        *,
        api_version: str = "v21.0",
        in_progress_polls: int = 2,
        quota_total: int = 100,
        quota_duration: int = 86400,
        calls_per_hour: int = 200,
    ) -> None:
        self.api_version = api_version
        self.in_progress_polls = in_progress_polls
        self.quota_total = quota_total
        self.quota_duration = quota_duration
        self.calls_per_hour = calls_per_hour
        self.tokens: dict[str, str] = {}
        self.usernames: dict[str, str] = {}
        self.containers: dict[str, Container] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.outcomes: deque[tuple[str, str]] = deque()  # (status_code, status message)
        self.injected: list[Injected] = []
        self.quota_used: dict[str, int] = {}  # extra usage per user (posts made elsewhere)
        self.usage_pct: float | None = None  # force the usage headers to this percentage
        self.regain_minutes: int = 0
        self.calls: list[tuple[str, str]] = []  # (method, path) of every request
        self._call_times: deque[float] = deque()
        self._ids = itertools.count(17841400000000001)
        # counters
        self.containers_created = 0
        self.bytes_received = 0
        self.status_polls = 0
        self.media_published = 0
        self.comments_posted = 0
        self.refreshes = 0
        self.upload_headers: list[dict[str, str]] = []
        self.base_url = ""
        self.app = self._build()

    # -- set-up ----------------------------------------------------------------------------------
    def add_account(self, ig_user_id: str, token: str, username: str = "fabric.test") -> None:
        self.tokens[token] = ig_user_id
        self.usernames[ig_user_id] = username

    def fail_next(
        self, endpoint: str, body: dict[str, Any], status: int = 400, times: int = 1
    ) -> None:
        """Answer the next ``times`` calls to ``endpoint`` with ``body`` (e.g. graph_error)."""
        self.injected.append(Injected(endpoint, status, body, times))

    def set_outcomes(self, *outcomes: str, message: str | None = None) -> None:
        """Final statuses of the next containers, in creation order (then FINISHED)."""
        for code in outcomes:
            text = message or {
                "ERROR": "Error: Media upload has failed with error code 2207026",
                "EXPIRED": "Expired: the media container was not published within 24 hours",
            }.get(code, "Finished: Media has been uploaded and it is ready to be published.")
            self.outcomes.append((code, text))

    def published_by(self, ig_user_id: str) -> int:
        now = time.time()
        return sum(
            1
            for m in self.media.values()
            if m["user"] == ig_user_id and now - m["at"] < self.quota_duration
        )

    # -- plumbing --------------------------------------------------------------------------------
    def _build(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=1 << 30)
        app.router.add_get("/refresh_access_token", self._refresh)
        app.router.add_get("/{v}/refresh_access_token", self._refresh)
        app.router.add_post("/ig-api-upload/{v}/{cid}", self._upload)
        app.router.add_route("*", "/{v}/{node}", self._node)
        app.router.add_route("*", "/{v}/{node}/{edge}", self._edge)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.calls.append((request.method, request.path))
        now = time.monotonic()
        self._call_times.append(now)
        while self._call_times and now - self._call_times[0] > 3600:
            self._call_times.popleft()
        response: web.StreamResponse = await handler(request)
        pct = (
            self.usage_pct
            if self.usage_pct is not None
            else round(100 * len(self._call_times) / max(1, self.calls_per_hour))
        )
        user = request.get(IG_USER, "0")
        response.headers["X-App-Usage"] = orjson.dumps(
            {"call_count": pct, "total_cputime": min(pct, 5), "total_time": min(pct, 5)}
        ).decode()
        response.headers["X-Business-Use-Case-Usage"] = orjson.dumps(
            {
                user: [
                    {
                        "type": "instagram",
                        "call_count": pct,
                        "total_cputime": min(pct, 5),
                        "total_time": min(pct, 5),
                        "estimated_time_to_regain_access": self.regain_minutes,
                    }
                ]
            }
        ).decode()
        return response

    def _json(self, body: dict[str, Any], status: int = 200) -> web.Response:
        return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")

    def _injected(self, endpoint: str) -> web.Response | None:
        for item in self.injected:
            if item.endpoint in (endpoint, "*") and item.times > 0:
                item.times -= 1
                if item.times == 0:
                    self.injected.remove(item)
                return self._json(item.body, item.status)
        return None

    def _token(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        for prefix in ("OAuth ", "Bearer "):
            if auth.startswith(prefix):
                return auth[len(prefix) :]
        return request.query.get("access_token")

    def _auth(self, request: web.Request) -> str | web.Response:
        """The IG user of the token, or the 190 answer Instagram gives a bad token."""
        token = self._token(request)
        user = self.tokens.get(token or "")
        if user is None:
            return self._json(
                graph_error("Error validating access token: Session has expired.", 190, 463),
                400,
            )
        request[IG_USER] = user
        return user

    async def _params(self, request: web.Request) -> dict[str, str]:
        params = dict(request.query)
        if request.method == "POST" and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            params.update({k: str(v) for k, v in (await request.post()).items()})
        params.pop("access_token", None)
        return params

    def _new_id(self) -> str:
        return str(next(self._ids))

    # -- endpoints -------------------------------------------------------------------------------
    async def _refresh(self, request: web.Request) -> web.Response:
        user = self._auth(request)
        if isinstance(user, web.Response):
            return user
        if (hit := self._injected("refresh")) is not None:
            return hit
        if request.query.get("grant_type") != "ig_refresh_token":
            return self._json(graph_error("Unsupported grant_type", 100, type_="IGApiException"))
        token = "IGQ" + secrets.token_urlsafe(24)
        self.tokens[token] = user
        self.refreshes += 1
        return self._json({"access_token": token, "token_type": "bearer", "expires_in": 5184000})

    async def _upload(self, request: web.Request) -> web.Response:
        user = self._auth(request)
        if isinstance(user, web.Response):
            return user
        if (hit := self._injected("upload")) is not None:
            return hit
        container = self.containers.get(request.match_info["cid"])
        if container is None or container.mode != "resumable":
            return self._json(
                {
                    "debug_info": {
                        "retriable": False,
                        "type": "ProcessingFailedError",
                        "message": "Request processing failed",
                    }
                },
                400,
            )
        self.upload_headers.append(
            {k: request.headers.get(k, "") for k in ("offset", "file_size", "Content-Length")}
        )
        offset = int(request.headers.get("offset", "0"))
        size = int(request.headers.get("file_size", "0"))
        data = await request.read()
        self.bytes_received += len(data)
        del container.received[offset:]
        container.received += data
        container.file_size = size
        container.uploaded = len(container.received) >= size > 0
        return self._json({"success": True, "message": "Upload successful."})

    async def _node(self, request: web.Request) -> web.Response:
        user = self._auth(request)
        if isinstance(user, web.Response):
            return user
        node = request.match_info["node"]
        params = await self._params(request)
        if node in self.containers and request.method == "GET":
            return self._container_status(node)
        if node in self.media and request.method == "GET":
            if (hit := self._injected("media")) is not None:
                return hit
            m = self.media[node]
            return self._json({"id": node, "permalink": m["permalink"], "caption": m["caption"]})
        if node in self.usernames and request.method == "GET":
            return self._json({"id": node, "username": self.usernames[node], **params})
        return self._json(
            graph_error(
                f"Unsupported get request. Object with ID '{node}' does not exist",
                100,
                33,
                type_="GraphMethodException",
            )
        )

    def _container_status(self, cid: str) -> web.Response:
        if (hit := self._injected("status")) is not None:
            return hit
        self.status_polls += 1
        c = self.containers[cid]
        if c.status_code == "IN_PROGRESS" and (c.uploaded or c.mode == "video_url"):
            if c.polls_left > 0:
                c.polls_left -= 1
            else:
                c.status_code = c.outcome
        text = {
            "IN_PROGRESS": "In Progress: Media is still being processed.",
            "PUBLISHED": "Published: Media has been successfully published.",
        }.get(c.status_code, c.message)
        return self._json({"status_code": c.status_code, "status": text, "id": cid})

    async def _edge(self, request: web.Request) -> web.Response:
        user = self._auth(request)
        if isinstance(user, web.Response):
            return user
        node, edge = request.match_info["node"], request.match_info["edge"]
        params = await self._params(request)
        if edge == "comments" and node in self.media:
            return self._comments(request, node, user, params)
        if node != user:
            return self._json(
                graph_error("(#10) Application does not have permission for this action", 10),
                400,
            )
        if edge == "content_publishing_limit" and request.method == "GET":
            if (hit := self._injected("limit")) is not None:
                return hit
            usage = self.published_by(user) + self.quota_used.get(user, 0)
            return self._json(
                {
                    "data": [
                        {
                            "quota_usage": usage,
                            "config": {
                                "quota_total": self.quota_total,
                                "quota_duration": self.quota_duration,
                            },
                        }
                    ]
                }
            )
        if edge == "media" and request.method == "POST":
            return self._create(request, user, params)
        if edge == "media" and request.method == "GET":
            items = [
                {
                    "id": mid,
                    "caption": m["caption"],
                    "permalink": m["permalink"],
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(m["at"])),
                }
                for mid, m in reversed(self.media.items())
                if m["user"] == user
            ]
            return self._json({"data": items})
        if edge == "media_publish" and request.method == "POST":
            return self._publish(user, params)
        return self._json(graph_error(f"Unknown path components: /{edge}", 2500), 400)

    def _create(self, request: web.Request, user: str, params: dict[str, str]) -> web.Response:
        if (hit := self._injected("create")) is not None:
            return hit
        if params.get("media_type") != "REELS":
            return self._json(graph_error("The parameter media_type is required", 100), 400)
        resumable = params.get("upload_type") == "resumable"
        if not resumable and not params.get("video_url"):
            return self._json(graph_error("The parameter video_url is required", 100), 400)
        cid = self._new_id()
        code, message = self.outcomes.popleft() if self.outcomes else ("FINISHED", "Finished")
        container = Container(
            id=cid,
            user=user,
            caption=params.get("caption", ""),
            mode="resumable" if resumable else "video_url",
            video_url=params.get("video_url"),
            polls_left=self.in_progress_polls,
            outcome=code,
            message=message,
        )
        self.containers[cid] = container
        self.containers_created += 1
        body: dict[str, Any] = {"id": cid}
        if resumable:
            host = f"{request.scheme}://{request.host}"
            body["uri"] = f"{host}/ig-api-upload/{self.api_version}/{cid}"
        return self._json(body)

    def _publish(self, user: str, params: dict[str, str]) -> web.Response:
        if (hit := self._injected("publish")) is not None:
            return hit
        c = self.containers.get(params.get("creation_id", ""))
        if c is None or c.user != user:
            return self._json(graph_error("Invalid parameter", 100, 2207001), 400)
        if c.status_code == "PUBLISHED":
            return self._json(
                graph_error("The media has already been published", 100, 2207001), 400
            )
        if c.status_code != "FINISHED":
            return self._json(
                graph_error("The media is not ready for publishing, please wait", 9007, 2207027),
                400,
            )
        if self.published_by(user) + self.quota_used.get(user, 0) >= self.quota_total:
            return self._json(
                graph_error("You have reached the maximum number of posts allowed", 9, 2207042),
                400,
            )
        mid = self._new_id()
        shortcode = secrets.token_urlsafe(8)
        self.media[mid] = {
            "user": user,
            "caption": c.caption,
            "container": c.id,
            "permalink": f"https://www.instagram.com/reel/{shortcode}/",
            "at": time.time(),
        }
        c.status_code = "PUBLISHED"
        c.media_id = mid
        self.media_published += 1
        return self._json({"id": mid})

    def _comments(
        self, request: web.Request, media: str, user: str, params: dict[str, str]
    ) -> web.Response:
        if (hit := self._injected("comment")) is not None:
            return hit
        items = self.comments.setdefault(media, [])
        if request.method == "GET":
            return self._json({"data": items})
        message = params.get("message", "")
        if not message:
            return self._json(graph_error("The parameter message is required", 100), 400)
        cid = self._new_id()
        items.append(
            {
                "id": cid,
                "text": message,
                "from": {"id": user, "username": self.usernames.get(user, "")},
            }
        )
        self.comments_posted += 1
        return self._json({"id": cid})
