"""notifier: tells people what happened, by Telegram and e-mail; never fails a task.

Reads ``fabric.tasks`` and ``fabric.accounts`` and notifies about:

* ``task.completed`` -> "published", with every upload's URL;
* ``task.failed`` -> "failed", with the reason and the per-platform breakdown;
* ``task.deferred`` with a ``quota`` error -> "deferred until <reset>" (``publish.deferred``
  is its cause and carries the same facts; notifying on the orchestrator's decision sends
  one notice per deferral, not two; deferrals of a paused account are not repeated here:
  its owner hears once, from ``account.reauth_required``);
* ``account.reauth_required`` -> "reconnect the account".

Recipients, merged without duplicates: the task's own ``notify`` list (kept per task from
``task.created`` in the consumer's state, ``ctx.put``), the accounts' defaults (account
setting ``notify``: ``[{"channel": "telegram", "to": "123"}]`` or ``["email:a@b.c"]``), and
the global defaults ``FABRIC_NOTIFY_TELEGRAM_CHAT`` / ``FABRIC_NOTIFY_EMAIL`` (comma lists).
Channels: Telegram with ``FABRIC_TELEGRAM_BOT_TOKEN`` (``FABRIC_TELEGRAM_API_URL`` for a
proxy or the fake), e-mail with ``FABRIC_SMTP_HOST`` / ``PORT`` / ``USER`` / ``PASSWORD`` /
``FROM`` / ``STARTTLS`` / ``TLS``. With nothing configured the notifier runs and sends
nothing; a recipient whose channel is not configured gets ``notification.failed``.

Delivery and failures: every send is recorded as ``notification.sent`` (masked recipient,
its hash, the message ids) or, when it cannot be delivered, ``notification.failed`` — in
the consumer's own transaction, never touching the task. A retryable ``NotifyError`` (5xx,
connection, Telegram 429 beyond what the sender waits for itself) is raised so the runtime
retries the event with backoff (``FABRIC_NOTIFY_ATTEMPTS``, ``FABRIC_NOTIFY_BACKOFF_S``);
on the last attempt it becomes ``notification.failed`` instead of a dead letter.

Not sending twice: the inbox runs the handler once per event, but the send itself is an
outside effect, so each (event, recipient) has a persisted intent, saved the moment the
channel confirmed delivery. A retry of the event (another recipient failed) or a
redelivery after a crash finds it and records the earlier send instead of repeating it.
What is left is the instant between the channel's confirmation and that save: a crash
exactly there sends once more. Telegram has no idempotency key and no way to ask what a
bot sent, so that window cannot be closed (at-least-once, by choice: a rare duplicate beats
a lost notice); e-mails carry a Message-ID derived from the event and the recipient, so a
resent mail is the same message, which mail stores that de-duplicate by Message-ID show once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fabric.events import Event
from fabric.notify import (
    ACCOUNT_REAUTH,
    QUOTA_DEFERRED,
    TASK_FAILED,
    TASK_PUBLISHED,
    EmailSender,
    Notification,
    NotifyError,
    SmtpConfig,
    TelegramSender,
    render,
)
from fabric.runtime import Consumer, Context

if TYPE_CHECKING:
    from fabric.app import App

__all__ = ["Notifier", "Recipient", "consumer", "mask"]

log = logging.getLogger("fabric.notifier")

ATTEMPTS = 5
BACKOFF_S = 2.0
ACCOUNT_CACHE_S = 5.0
_TRUE = {"1", "true", "yes", "on"}
CHANNELS = ("telegram", "email")
FORGET = frozenset({"task.completed", "task.cancelled", "task.rejected"})
ACCEPTS = frozenset(
    {
        "task.created",
        "task.completed",
        "task.failed",
        "task.deferred",
        "task.cancelled",
        "task.rejected",
        "account.reauth_required",
    }
)


@dataclasses.dataclass(frozen=True, order=True)
class Recipient:
    channel: str  # "telegram" | "email"
    to: str  # a chat id or an e-mail address

    @property
    def hash(self) -> str:
        return hashlib.sha256(f"{self.channel}:{self.to}".encode()).hexdigest()[:16]


def mask(value: str) -> str:
    """Enough of a recipient to recognise it, not enough to reuse it: ow***@example.com,
    12***89."""
    local, at, domain = value.partition("@")
    if at:
        return f"{local[:2]}***@{domain}"
    return f"{value[:2]}***{value[-2:]}" if len(value) > 6 else "***"


def parse_recipients(raw: Any) -> list[Recipient]:
    """``[{"channel", "to"}]``, ``["telegram:123", "email:a@b.c"]`` or one such string."""
    items: Iterable[Any] = [raw] if isinstance(raw, str | dict) else (raw or [])
    out = []
    for item in items:
        if isinstance(item, dict):
            channel, to = str(item.get("channel") or ""), str(item.get("to") or "")
        else:
            channel, _, to = str(item).partition(":")
        channel, to = channel.strip().lower(), to.strip()
        if channel in CHANNELS and to:
            out.append(Recipient(channel, to))
        elif item:
            log.warning(
                "ignoring a notification recipient that is not channel:address",
                extra={"channel": channel},
            )
    return out


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


class Notifier:
    """Recipients, senders (built when first needed) and delivery with its records."""

    def __init__(self, app: App) -> None:
        self.app = app
        get = app.settings.get
        self.max_attempts = int(get("FABRIC_NOTIFY_ATTEMPTS") or ATTEMPTS)
        chats = _split(get("FABRIC_NOTIFY_TELEGRAM_CHAT"))
        self.defaults = [Recipient("telegram", c) for c in chats]
        self.defaults += [Recipient("email", a) for a in _split(get("FABRIC_NOTIFY_EMAIL"))]
        self._telegram: TelegramSender | None = None
        self._email: EmailSender | None = None
        self._account_notify: dict[str, tuple[float, list[Recipient]]] = {}

    # -- channels ----------------------------------------------------------------------------
    def telegram(self) -> TelegramSender:
        if self._telegram is None:
            get = self.app.settings.get
            token = get("FABRIC_TELEGRAM_BOT_TOKEN")
            if not token:
                raise NotifyError(
                    "channel_not_configured",
                    "Telegram is not configured (FABRIC_TELEGRAM_BOT_TOKEN)",
                    retryable=False,
                )
            self._telegram = TelegramSender(
                token,
                api_url=get("FABRIC_TELEGRAM_API_URL") or "https://api.telegram.org",
                max_attempts=int(get("FABRIC_TELEGRAM_ATTEMPTS") or 3),
                backoff_s=float(get("FABRIC_TELEGRAM_BACKOFF_S") or 1.0),
            )
        return self._telegram

    def email(self) -> EmailSender:
        if self._email is None:
            get = self.app.settings.get
            host = get("FABRIC_SMTP_HOST")
            if not host:
                raise NotifyError(
                    "channel_not_configured",
                    "e-mail is not configured (FABRIC_SMTP_HOST)",
                    retryable=False,
                )
            use_tls = (get("FABRIC_SMTP_TLS") or "").lower() in _TRUE
            self._email = EmailSender(
                SmtpConfig(
                    host=host,
                    port=int(get("FABRIC_SMTP_PORT") or (465 if use_tls else 587)),
                    sender=get("FABRIC_SMTP_FROM") or "Content Fabric <fabric@localhost>",
                    username=get("FABRIC_SMTP_USER") or None,
                    password=get("FABRIC_SMTP_PASSWORD") or None,
                    starttls=(get("FABRIC_SMTP_STARTTLS") or "").lower() in _TRUE,
                    use_tls=use_tls,
                    timeout_s=float(get("FABRIC_SMTP_TIMEOUT_S") or 30),
                )
            )
        return self._email

    async def close(self) -> None:
        if self._telegram is not None:
            await self._telegram.close()

    async def send(self, to: Recipient, note: Notification, message_id: str) -> list[str]:
        if to.channel == "telegram":
            return [str(i) for i in await self.telegram().notify(to.to, note)]
        return [await self.email().notify([to.to], note, message_id=message_id)]

    # -- recipients --------------------------------------------------------------------------
    async def account_recipients(self, platform: str, account: str) -> list[Recipient]:
        """The account's ``notify`` setting (cached for a few seconds: a busy notifier
        would otherwise read the account for every event)."""
        key = f"{platform}:{account}"
        cached = self._account_notify.get(key)
        if cached is not None and time.monotonic() - cached[0] < ACCOUNT_CACHE_S:
            return cached[1]
        found = await self.app.accounts.get(platform, account)
        recipients = parse_recipients(found.settings.get("notify")) if found else []
        self._account_notify[key] = (time.monotonic(), recipients)
        return recipients

    async def recipients(
        self, own: Iterable[Recipient], accounts: Iterable[tuple[str, str]]
    ) -> list[Recipient]:
        merged: dict[Recipient, None] = dict.fromkeys(own)
        for platform, account in dict.fromkeys(accounts):
            merged.update(dict.fromkeys(await self.account_recipients(platform, account)))
        merged.update(dict.fromkeys(self.defaults))
        return list(merged)

    # -- delivery ----------------------------------------------------------------------------
    async def deliver(
        self, event: Event, ctx: Context, kind: str, note: Notification, recipients: list[Recipient]
    ) -> None:
        """Send to each recipient at most once per event (see the module doc); raise the
        first retryable failure after trying everyone, unless this is the last attempt."""
        last = ctx.attempt >= self.max_attempts
        retry: NotifyError | None = None
        about = {"event_id": event.id, "event_type": event.type}
        for to in recipients:
            base = {
                "kind": kind,
                "channel": to.channel,
                "recipient": mask(to.to),
                "recipient_hash": to.hash,
                "about": about,
            }
            intent = await self.app.intents.load(f"notify:{event.id}:{to.hash}")
            done = intent.state
            if done.get("sent"):
                ctx.emit(
                    "notification.sent",
                    {**base, "message_ids": done["message_ids"], "recovered": True},
                )
                continue
            if done.get("failed"):
                ctx.emit(
                    "notification.failed",
                    {**base, "error": done["failed"], "attempts": done.get("attempts", 1)},
                )
                continue
            message_id = f"<{event.id}.{to.hash}@content-fabric.notify>"
            try:
                try:
                    ids = await self.send(to, note, message_id)
                except (NotifyError, asyncio.CancelledError):
                    raise
                except Exception as bug:  # e.g. an address the mail library refuses
                    log.exception("notification could not be built or sent")
                    raise NotifyError(
                        "notify_error", f"{type(bug).__name__}: cannot send", retryable=False
                    ) from None
            except NotifyError as exc:
                if exc.retryable and not last:
                    retry = retry or exc
                    log.warning(
                        "notification failed; will retry",
                        extra={
                            "event_id": event.id,
                            "channel": to.channel,
                            "code": exc.code,
                            "attempt": ctx.attempt,
                        },
                    )
                    continue
                log.warning(
                    "notification not delivered",
                    extra={
                        "event_id": event.id,
                        "channel": to.channel,
                        "code": exc.code,
                        "attempts": ctx.attempt,
                    },
                )
                intent.state = {"failed": exc.as_data(), "attempts": ctx.attempt}
                await self.app.intents.save(intent)
                ctx.emit(
                    "notification.failed", {**base, "error": exc.as_data(), "attempts": ctx.attempt}
                )
                continue
            intent.state = {"sent": True, "message_ids": ids}
            await self.app.intents.save(intent)  # at once: a retry must not send it again
            ctx.emit("notification.sent", {**base, "message_ids": ids, "recovered": False})
        if retry is not None:
            raise retry

    # -- events ------------------------------------------------------------------------------
    async def handle(self, event: Event, ctx: Context) -> None:
        kind = event.type
        data = event.data
        if kind == "account.reauth_required":
            note = render(
                ACCOUNT_REAUTH,
                {
                    "platform": data["platform"],
                    "account": data["account"],
                    "error": {"code": data["code"], "message": data.get("message", "")},
                    "hint": data.get("hint", ""),
                },
            )
            to = await self.recipients([], [(data["platform"], data["account"])])
            await self.deliver(event, ctx, ACCOUNT_REAUTH, note, to)
            return
        key = f"task:{event.subject}"
        if kind == "task.created":
            ctx.put(
                key,
                {
                    "title": data.get("title", ""),
                    "notify": [[r.channel, r.to] for r in parse_recipients(data.get("notify"))],
                    "accounts": [[t["platform"], t["account"]] for t in data.get("targets", [])],
                },
            )
            return
        task = await ctx.get(key) or {}
        own = [Recipient(c, t) for c, t in task.get("notify", [])]
        accounts = [(p, a) for p, a in task.get("accounts", [])]
        context = {"task_id": event.subject or "", "title": task.get("title", "")}
        if kind == "task.completed":
            await self.deliver(
                event,
                ctx,
                TASK_PUBLISHED,
                render(TASK_PUBLISHED, {**data, **context}),
                await self.recipients(own, accounts),
            )
        elif kind == "task.failed":
            await self.deliver(
                event,
                ctx,
                TASK_FAILED,
                render(TASK_FAILED, {**data, **context}),
                await self.recipients(own, accounts),
            )
        elif kind == "task.deferred" and data["error"].get("class") == "quota":
            target = data["target"]
            await self.deliver(
                event,
                ctx,
                QUOTA_DEFERRED,
                render(QUOTA_DEFERRED, {**data, **context}),
                await self.recipients(own, [(target["platform"], target["account"])]),
            )
        if kind in FORGET:
            ctx.delete(key)


def consumer(app: App) -> Consumer:
    notifier = Notifier(app)
    app.runtime.services["notifier"] = notifier
    backoff = float(app.settings.get("FABRIC_NOTIFY_BACKOFF_S") or BACKOFF_S)

    async def stop(_: Any) -> None:
        await notifier.close()

    return Consumer(
        "notifier",
        ["fabric.tasks", "fabric.accounts"],
        notifier.handle,
        accepts=ACCEPTS,
        max_attempts=notifier.max_attempts,
        backoff_initial=backoff,
        backoff_max=max(backoff, backoff * 30),
        on_stop=stop,
    )
