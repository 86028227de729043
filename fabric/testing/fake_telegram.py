"""A fake Telegram Bot API (``sendMessage``) that checks what the real one checks.

Public and reusable by tests and the demo: ``POST /bot<TOKEN>/sendMessage`` (JSON or form)
answers ``{"ok": true, "result": {message}}`` or Telegram's error shape
``{"ok": false, "error_code", "description", "parameters": {"retry_after"}}``. It is strict
where Telegram is: a wrong bot token is 401; with ``parse_mode=HTML`` only Telegram's tags
and the entities ``&lt; &gt; &amp; &quot;`` (and numeric ones) parse, anything else is 400
"can't parse entities"; more than 4096 characters after entity parsing is 400 "message is
too long". ``fail_next`` injects a 429 with ``retry_after`` or a 5xx; ``messages`` holds what
arrived.
"""

from __future__ import annotations

import html
import itertools
import re
import time
from typing import Any

import orjson
from aiohttp import web

from fabric.testing._server import FakeServer

__all__ = ["FakeTelegram", "check_html"]

MAX_CHARS = 4096
TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
     "span", "tg-spoiler", "tg-emoji", "blockquote"}
)  # fmt: skip
TAG = re.compile(r"<(/?)([a-z-]+)((?:\s+[a-z-]+=\"[^\"<>]*\")*)\s*>")
ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


def check_html(text: str) -> tuple[str | None, str]:
    """(error or None, the visible text) as Telegram's HTML parse mode sees ``text``."""
    visible: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "<":
            m = TAG.match(text, i)
            if m is None or m.group(2) not in TAGS:
                return f"Can't find end tag or unsupported start tag at byte offset {i}", ""
            closing, name = m.group(1), m.group(2)
            if closing:
                if not stack or stack[-1] != name:
                    return f"Unexpected end tag at byte offset {i}", ""
                stack.pop()
            else:
                stack.append(name)
            i = m.end()
        elif ch == "&":
            m = ENTITY.match(text, i)
            if m is None:
                return f"Unsupported HTML entity at byte offset {i}", ""
            visible.append(html.unescape(m.group(0)))
            i = m.end()
        elif ch == ">":
            return f"Unsupported character '>' at byte offset {i}", ""
        else:
            visible.append(ch)
            i += 1
    if stack:
        return f"Can't find end tag corresponding to start tag {stack[-1]}", ""
    return None, "".join(visible)


class FakeTelegram(FakeServer):
    """The fake Bot API for one bot token."""

    def __init__(self, token: str = "123456:fake-bot-token") -> None:
        self.token = token
        self.messages: list[dict[str, Any]] = []  # what was accepted, in order
        self.requests = 0
        self.injected: list[tuple[int, dict[str, Any]]] = []
        self._ids = itertools.count(1)
        self.base_url = ""
        self.app = web.Application()
        self.app.router.add_post("/bot{token}/{method}", self._method)

    def fail_next(
        self, status: int = 429, *, retry_after: int | None = None, description: str = ""
    ) -> None:
        """Answer the next request with an error (queued: call again for more)."""
        body: dict[str, Any] = {
            "ok": False,
            "error_code": status,
            "description": description
            or (
                f"Too Many Requests: retry after {retry_after}"
                if status == 429
                else "Internal Server Error"
            ),
        }
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        self.injected.append((status, body))

    @staticmethod
    def _error(status: int, description: str) -> web.Response:
        return web.json_response(
            {"ok": False, "error_code": status, "description": description}, status=status
        )

    async def _method(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        if self.injected:
            status, body = self.injected.pop(0)
            return web.Response(
                body=orjson.dumps(body), status=status, content_type="application/json"
            )
        if request.match_info["method"] != "sendMessage":
            return self._error(404, "Not Found: method not found")
        if request.content_type == "application/json":
            params = await request.json()
        else:
            params = dict(await request.post())
        chat = params.get("chat_id")
        text = str(params.get("text") or "")
        if chat in (None, ""):
            return self._error(400, "Bad Request: chat_id is empty")
        if not text.strip():
            return self._error(400, "Bad Request: message text is empty")
        visible = text
        if str(params.get("parse_mode", "")).upper() == "HTML":
            problem, visible = check_html(text)
            if problem:
                return self._error(400, f"Bad Request: can't parse entities: {problem}")
        if len(visible) > MAX_CHARS:
            return self._error(400, "Bad Request: message is too long")
        message = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": {"id": chat, "type": "private"},
            "text": visible,
            "html": text,
            "parse_mode": params.get("parse_mode"),
            "disable_web_page_preview": params.get("disable_web_page_preview"),
        }
        self.messages.append(message)
        result = {k: message[k] for k in ("message_id", "date", "chat", "text")}
        return web.json_response({"ok": True, "result": result})
