"""Telegram notifications through the Bot API's ``sendMessage`` (aiohttp).

Messages go with ``parse_mode=HTML``; text from outside is escaped by ``messages`` (``<``,
``>``, ``&``). A text longer than Telegram's 4,096 characters is split at line breaks (tags
are closed at the end of a part and reopened in the next) into at most ``max_parts``
messages, the rest truncated with a marker.

Delivery is bounded and honest about failure: a 429 waits ``parameters.retry_after`` seconds
(through the injectable ``sleep``) and tries again; 5xx and connection errors back off
exponentially; after ``max_attempts`` (or when Telegram asks to wait longer than
``max_retry_after_s``) a retryable ``NotifyError`` is raised so the notifier can retry
later, never failing the task. 4xx other than 429 are not retryable (wrong token, chat not
found, bot blocked), except an HTML that Telegram cannot parse, which is resent once as
plain text. The bot token sits in the URL path, so every message built from a transport
error is redacted.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from fabric.notify.messages import Notification, NotifyError, html_to_text

__all__ = ["MAX_CHARS", "TelegramSender", "split_html"]

log = logging.getLogger("fabric.notify.telegram")

MAX_CHARS = 4096
TRUNCATED = "\n… (truncated)"
_TOKEN = re.compile(r"<(/?)([a-z-]+)[^<>]*>|&[#a-zA-Z0-9]+;|.", re.S)

Sleep = Callable[[float], Awaitable[None]]


def split_html(text: str, limit: int = MAX_CHARS, max_parts: int | None = None) -> list[str]:
    """Split Telegram HTML into parts of at most ``limit`` characters.

    Prefers the last line break where no tag is open; otherwise cuts between characters,
    never inside a tag or an entity, closing the open tags at the end of the part and
    reopening them at the start of the next. With ``max_parts``, what does not fit is cut
    and the last part ends with "… (truncated)".
    """
    if len(text) <= limit:
        return [text]
    if max_parts is not None:
        cut = split_html(text, limit - len(TRUNCATED))
        if len(cut) > max_parts:
            return [*cut[: max_parts - 1], cut[max_parts - 1] + TRUNCATED]
        return cut
    parts: list[str] = []
    current: list[str] = []
    size = 0
    stack: list[tuple[str, str]] = []  # (name, opening tag)
    break_at: int | None = None  # index in ``current`` after a line break with no tag open

    def closers(tags: list[tuple[str, str]]) -> str:
        return "".join(f"</{name}>" for name, _ in reversed(tags))

    for match in _TOKEN.finditer(text):
        token = match.group(0)
        after = list(stack)
        if match.group(2):
            if match.group(1):
                if after and after[-1][0] == match.group(2):
                    after.pop()
            else:
                after.append((match.group(2), token))
        while current and size + len(token) + len(closers(after)) > limit:
            if break_at:
                head, current = current[:break_at], current[break_at:]
                parts.append("".join(head).rstrip("\n"))
            else:
                parts.append("".join(current) + closers(stack))
                current = [opening for _, opening in stack]
            size = sum(len(t) for t in current)
            break_at = None
            if size + len(token) + len(closers(after)) > limit and current == [o for _, o in stack]:
                break  # only reopened tags left: the token must go in this part
        current.append(token)
        size += len(token)
        stack = after
        if token == "\n" and not stack:
            break_at = len(current)
    if current:
        parts.append("".join(current))
    return [p for p in parts if p.strip()]


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


class TelegramSender:
    """Sends HTML messages to Telegram chats for one bot.

    ``sleep`` is injectable so tests observe the waits (429 ``retry_after``, backoff)
    without spending them.
    """

    def __init__(
        self,
        bot_token: str,
        *,
        api_url: str = "https://api.telegram.org",
        session: aiohttp.ClientSession | None = None,
        sleep: Sleep = asyncio.sleep,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        max_retry_after_s: float = 300.0,
        timeout_s: float = 30.0,
        max_parts: int = 4,
        disable_web_page_preview: bool = False,
    ) -> None:
        self._token = bot_token
        self.api_url = api_url.rstrip("/")
        self._session = session
        self._own_session = session is None
        self._sleep = sleep
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self.timeout_s = timeout_s
        self.max_parts = max_parts
        self.disable_web_page_preview = disable_web_page_preview

    def __repr__(self) -> str:  # never show the token
        return f"TelegramSender(api_url={self.api_url!r})"

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def notify(self, chat_id: int | str, note: Notification) -> list[int]:
        """Send a rendered notification; returns the Telegram message ids."""
        return await self.send(chat_id, note.html)

    async def send_text(self, chat_id: int | str, text: str) -> list[int]:
        """Send plain text (escaped here) with HTML parse mode."""
        return await self.send(chat_id, html.escape(text, quote=False))

    async def send(self, chat_id: int | str, html_text: str) -> list[int]:
        """Send Telegram HTML, split into parts when longer than 4,096 characters."""
        ids = []
        for part in split_html(html_text, MAX_CHARS, self.max_parts):
            ids.append(await self._send_one(chat_id, part))
        return ids

    async def _send_one(self, chat_id: int | str, text: str) -> int:
        url = f"{self.api_url}/bot{self._token}/sendMessage"
        payload: dict[str, Any] = {"chat_id": chat_id, "text": text, "parse_mode": "HTML"}
        if self.disable_web_page_preview:
            payload["disable_web_page_preview"] = True
        backoff = self.backoff_s
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        failure: NotifyError | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with self._http().post(url, json=payload, timeout=timeout) as resp:
                    status = resp.status
                    raw = await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                detail = _redact(str(exc), self._token) or "no answer"
                failure = NotifyError(
                    "connection_error", f"{type(exc).__name__}: {detail}", retryable=True
                )
                wait = backoff
            else:
                body = _parse(raw)
                if body.get("ok"):
                    return int((body.get("result") or {}).get("message_id") or 0)
                code = int(body.get("error_code") or status)
                desc = _redact(str(body.get("description") or f"HTTP {status}"), self._token)
                if code == 429:
                    after = float((body.get("parameters") or {}).get("retry_after") or 1)
                    failure = NotifyError(
                        "rate_limited", desc, retryable=True, retry_after=after, status=code
                    )
                    if after > self.max_retry_after_s:
                        raise failure
                    wait = after
                    log.info("telegram rate limit: waiting", extra={"retry_after_s": after})
                elif code >= 500:
                    failure = NotifyError(f"telegram_{code}", desc, retryable=True, status=code)
                    wait = backoff
                elif code == 400 and "parse entities" in desc and payload.get("parse_mode"):
                    log.warning("telegram could not parse the HTML: sending plain text")
                    payload.pop("parse_mode")
                    payload["text"] = html_to_text(text)
                    continue
                else:
                    raise NotifyError(f"telegram_{code}", desc, retryable=False, status=code)
            if attempt == self.max_attempts:
                break
            await self._sleep(wait)
            if failure.code != "rate_limited":
                backoff = min(backoff * 2, self.max_backoff_s)
        assert failure is not None
        raise failure


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}
