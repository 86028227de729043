"""Notifications: what to say (``messages``) and how to deliver it (Telegram, e-mail).

The notifier consumer renders an event's data with ``render(kind, data)`` and hands the
``Notification`` to ``TelegramSender.notify`` and/or ``EmailSender.notify``. Both raise
``NotifyError`` with ``retryable`` set, so a failed notification is retried later and never
fails the task it is about.
"""

from __future__ import annotations

from fabric.notify.email import EmailSender, SmtpConfig
from fabric.notify.messages import (
    ACCOUNT_REAUTH,
    KINDS,
    QUOTA_DEFERRED,
    TASK_FAILED,
    TASK_PUBLISHED,
    Notification,
    NotifyError,
    render,
    scrub,
)
from fabric.notify.telegram import TelegramSender, split_html

__all__ = [
    "ACCOUNT_REAUTH",
    "KINDS",
    "QUOTA_DEFERRED",
    "TASK_FAILED",
    "TASK_PUBLISHED",
    "EmailSender",
    "Notification",
    "NotifyError",
    "SmtpConfig",
    "TelegramSender",
    "render",
    "scrub",
    "split_html",
]
