"""What a notification says: four kinds rendered from plain event data, never a secret.

The notifier consumer hands over event ``data`` (plain dicts, as the events carry them) and
gets a ``Notification``: a subject (e-mail), a plain-text body (e-mail text part, Telegram
fallback) and an HTML body in the subset Telegram's ``parse_mode=HTML`` accepts (``<b>``,
``<i>``, ``<a href>``, ``<code>``; newlines as ``\\n``), which is also valid in an e-mail.

Kinds and the data they read (extra keys are ignored; only these fields are ever shown):

- ``task_published``: ``task_id``, ``title``, ``uploads`` [{``platform``, ``account``,
  ``video_id``, ``url``, ``notice``?}] (``task.completed`` data plus task id and title);
- ``task_failed``: ``task_id``, ``title``, ``code``, ``message``, ``targets`` [{``platform``,
  ``account``, ``status``, ``url``?, ``error``? {``class``, ``code``, ``message``}}]
  (``task.failed`` data);
- ``account_reauth``: ``platform``, ``account``, ``reason`` or ``error`` {``code``,
  ``message``}, ``hint``?;
- ``quota_deferred``: ``task_id``, ``title``, ``target`` {``platform``, ``account``} (or
  ``platform``/``account``), ``until`` (RFC 3339), ``error`` {``code``, ``message``}
  (``task.deferred``/``publish.deferred`` data).

Defence in depth against leaks: every free text (platform messages, reasons, URLs) passes
through ``scrub``, which masks token-looking parts (``access_token=...``, ``Bearer ...``, bot
tokens) even though no secret should reach an event in the first place.

``NotifyError`` lives here too, shared by both senders: it says whether a retry can help.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "ACCOUNT_REAUTH",
    "KINDS",
    "QUOTA_DEFERRED",
    "TASK_FAILED",
    "TASK_PUBLISHED",
    "Notification",
    "NotifyError",
    "account_reauth",
    "html_to_text",
    "quota_deferred",
    "render",
    "scrub",
    "task_failed",
    "task_published",
]

TASK_PUBLISHED = "task_published"
TASK_FAILED = "task_failed"
ACCOUNT_REAUTH = "account_reauth"
QUOTA_DEFERRED = "quota_deferred"

PLATFORM_NAMES = {"youtube": "YouTube", "instagram": "Instagram", "tiktok": "TikTok"}
_SECRET_PARAM = re.compile(
    r"(?i)\b(access_token|refresh_token|id_token|client_secret|password|api_key|key|code|token)"
    r"=([^&\s\"'<>]+)"
)
_SECRET_AUTH = re.compile(r"(?i)\b(Bearer|OAuth)\s+[A-Za-z0-9._~+/=-]{16,}")
_BOT_TOKEN = re.compile(r"\b(?:bot)?\d{5,}:[A-Za-z0-9_-]{10,}")
_TAG = re.compile(r"<[^<>]*>")


class NotifyError(Exception):
    """A notification that could not be delivered.

    ``retryable`` says whether trying again later can help (rate limit, 5xx, connection);
    ``retry_after`` is the wait the service asked for, when it did. Messages never carry
    the bot token or the SMTP password.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status

    def as_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        }
        if self.retry_after is not None:
            out["retry_after_s"] = self.retry_after
        if self.status is not None:
            out["status"] = self.status
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class Notification:
    kind: str
    subject: str
    text: str
    html: str
    links: tuple[str, ...] = ()

    def email_html(self) -> str:
        """The HTML body as a small standalone e-mail document."""
        body = self.html.replace("\n", "<br>\n")
        return (
            '<!doctype html><html><body style="font-family:sans-serif;line-height:1.4">'
            f"{body}</body></html>"
        )


def scrub(text: Any) -> str:
    """Mask token-looking parts of ``text`` (query parameters, auth headers, bot tokens)."""
    out = str(text if text is not None else "")
    out = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}=***", out)
    out = _SECRET_AUTH.sub(lambda m: f"{m.group(1)} ***", out)
    return _BOT_TOKEN.sub("bot***", out)


def html_to_text(text: str) -> str:
    """Telegram HTML back to plain text (the fallback when HTML would not parse)."""
    return html.unescape(_TAG.sub("", text))


def _e(value: Any) -> str:
    """Escape for Telegram HTML text: ``<``, ``>`` and ``&``."""
    return html.escape(scrub(value), quote=False)


def _platform(name: Any) -> str:
    return PLATFORM_NAMES.get(str(name), str(name).capitalize() or "?")


def _link(url: Any) -> tuple[str, str]:
    """(text, html) of a URL; only http(s) URLs become links."""
    clean = scrub(url or "")
    if clean.startswith(("http://", "https://")):
        return clean, f'<a href="{html.escape(clean, quote=True)}">{_e(clean)}</a>'
    return clean, _e(clean)


def _title(data: Mapping[str, Any]) -> str:
    return scrub(data.get("title") or "").strip()


def _task_line(data: Mapping[str, Any]) -> tuple[str, str]:
    task = scrub(data.get("task_id") or "")
    return (f"Task: {task}", f"Task: <code>{_e(task)}</code>") if task else ("", "")


def _when(value: Any) -> str:
    if not value:
        return "an unknown time"
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return scrub(value)
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _join(lines: list[tuple[str, str]]) -> tuple[str, str]:
    kept = [line for line in lines if line[0] or line[1]]
    return "\n".join(t for t, _ in kept), "\n".join(h for _, h in kept)


def _error_text(error: Any) -> str:
    if not isinstance(error, Mapping):
        return scrub(error or "")
    parts = [str(error.get(k)) for k in ("class", "code") if error.get(k)]
    message = scrub(error.get("message") or "")
    head = "/".join(parts)
    return f"{head}: {message}" if head and message else head or message


# -- the four kinds -------------------------------------------------------------------------


def task_published(data: Mapping[str, Any]) -> Notification:
    title = _title(data)
    uploads = [u for u in data.get("uploads") or [] if isinstance(u, Mapping)]
    lines: list[tuple[str, str]] = [
        (
            f'Published "{title}" on {len(uploads)} platform(s).'
            if title
            else f"Published on {len(uploads)} platform(s).",
            f"✅ <b>Published</b> “{_e(title)}”" if title else "✅ <b>Published</b>",
        ),
        _task_line(data),
        ("", ""),
    ]
    links: list[str] = []
    for up in uploads:
        name = _platform(up.get("platform"))
        account = scrub(up.get("account") or "")
        text_url, html_url = _link(up.get("url"))
        if not text_url:
            text_url = html_url = _e(f"id {up.get('video_id') or '?'}")
        else:
            links.append(text_url)
        lines.append(
            (
                f"- {name} ({account}): {text_url}",
                f"• <b>{_e(name)}</b> ({_e(account)}): {html_url}",
            )
        )
        if up.get("notice"):
            lines.append((f"  note: {scrub(up['notice'])}", f"  <i>{_e(up['notice'])}</i>"))
    text, body = _join(lines)
    subject = f"Published: {title}" if title else f"Task {scrub(data.get('task_id'))} published"
    return Notification(TASK_PUBLISHED, subject, text, body, tuple(links))


def task_failed(data: Mapping[str, Any]) -> Notification:
    title = _title(data)
    reason = scrub(data.get("message") or data.get("code") or "unknown reason")
    lines: list[tuple[str, str]] = [
        (
            f'Failed "{title}": {reason}' if title else f"Failed: {reason}",
            (f"❌ <b>Failed</b> “{_e(title)}”" if title else "❌ <b>Failed</b>")
            + f"\nReason: {_e(reason)}",
        ),
        _task_line(data),
        ("", ""),
    ]
    links: list[str] = []
    for target in data.get("targets") or []:
        if not isinstance(target, Mapping):
            continue
        name = _platform(target.get("platform"))
        account = scrub(target.get("account") or "")
        status = scrub(target.get("status") or "unknown")
        text_url, html_url = _link(target.get("url"))
        detail_text = detail_html = ""
        if text_url:
            links.append(text_url)
            detail_text, detail_html = f" {text_url}", f" {html_url}"
        error = _error_text(target.get("error"))
        if error:
            detail_text += f" ({error})"
            detail_html += f" ({_e(error)})"
        lines.append(
            (
                f"- {name} ({account}): {status}{detail_text}",
                f"• <b>{_e(name)}</b> ({_e(account)}): {_e(status)}{detail_html}",
            )
        )
    text, body = _join(lines)
    subject = f"Failed: {title}" if title else f"Task {scrub(data.get('task_id'))} failed"
    return Notification(TASK_FAILED, subject, text, body, tuple(links))


def account_reauth(data: Mapping[str, Any]) -> Notification:
    name = _platform(data.get("platform"))
    account = scrub(data.get("account") or "?")
    reason = scrub(data.get("reason") or "") or _error_text(data.get("error")) or "token refused"
    hint = scrub(data.get("hint") or "")
    lines: list[tuple[str, str]] = [
        (
            f"The {name} account '{account}' needs to be reconnected: {reason}",
            f"🔑 <b>Reconnect</b> the {_e(name)} account <b>{_e(account)}</b>\n"
            f"Reason: {_e(reason)}",
        ),
        (
            "Publishing to it waits until it is reconnected.",
            "Publishing to it waits until it is reconnected.",
        ),
    ]
    if hint:
        lines.append((hint, f"<code>{_e(hint)}</code>"))
    text, body = _join(lines)
    return Notification(ACCOUNT_REAUTH, f"Reconnect {name} account {account}", text, body)


def quota_deferred(data: Mapping[str, Any]) -> Notification:
    target = data.get("target") if isinstance(data.get("target"), Mapping) else data
    assert isinstance(target, Mapping)
    name = _platform(target.get("platform"))
    account = scrub(target.get("account") or "?")
    until = _when(data.get("until") or data.get("reset_at"))
    title = _title(data)
    error = _error_text(data.get("error"))
    what = f'"{title}"' if title else "the upload"
    lines: list[tuple[str, str]] = [
        (
            f"{name} ({account}) quota is used up: {what} waits until {until}.",
            f"⏳ <b>Deferred</b>: {_e(name)} ({_e(account)}) quota is used up\n"
            f"{'“' + _e(title) + '” ' if title else ''}waits until <b>{_e(until)}</b>",
        ),
        _task_line(data),
    ]
    if error:
        lines.append((f"Details: {error}", f"Details: {_e(error)}"))
    text, body = _join(lines)
    return Notification(QUOTA_DEFERRED, f"Deferred until {until}: {name} quota", text, body)


KINDS: dict[str, Callable[[Mapping[str, Any]], Notification]] = {
    TASK_PUBLISHED: task_published,
    TASK_FAILED: task_failed,
    ACCOUNT_REAUTH: account_reauth,
    QUOTA_DEFERRED: quota_deferred,
}


def render(kind: str, data: Mapping[str, Any]) -> Notification:
    """Render one of ``KINDS`` from event data; an unknown kind is a ``ValueError``."""
    try:
        renderer = KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown notification kind {kind!r}; known: {sorted(KINDS)}") from None
    return renderer(data)
