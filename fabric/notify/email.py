"""E-mail notifications over SMTP (aiosmtplib), with a text and an HTML part.

STARTTLS and login are both optional because the places this runs differ: a local relay
on port 25 with neither, a provider on 587 with both, implicit TLS on 465 (``use_tls``).
``starttls=True`` *requires* the upgrade (no silent fallback to plain text); ``False`` never
attempts it. Failures come back as ``NotifyError`` with ``retryable`` set from the SMTP
reply class (4xx and connection problems: retry later; 5xx and refused logins: no), so the
notifier consumer can retry without ever failing the task. The password is never shown.
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
import ssl
from collections.abc import Sequence
from email.message import EmailMessage

import aiosmtplib

from fabric.notify.messages import Notification, NotifyError

__all__ = ["EmailSender", "SmtpConfig"]

log = logging.getLogger("fabric.notify.email")


@dataclasses.dataclass(frozen=True)
class SmtpConfig:
    host: str = "localhost"
    port: int = 587
    sender: str = "Content Fabric <fabric@localhost>"
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    starttls: bool = False  # upgrade with STARTTLS, and fail if the server cannot
    use_tls: bool = False  # implicit TLS from the first byte (port 465)
    timeout_s: float = 30.0
    tls_context: ssl.SSLContext | None = dataclasses.field(default=None, repr=False)
    validate_certs: bool = True


class EmailSender:
    def __init__(self, config: SmtpConfig) -> None:
        if config.starttls and config.use_tls:
            raise ValueError("choose STARTTLS or implicit TLS, not both")
        self.config = config

    def build(
        self,
        to: str | Sequence[str],
        subject: str,
        text: str,
        html: str | None = None,
        *,
        message_id: str | None = None,
    ) -> EmailMessage:
        """The message: a text part, and an HTML alternative when given.

        ``message_id`` fixes the Message-ID (the notifier derives it from the event and the
        recipient): a mail sent again after a crash then carries the same id, and mail
        stores that de-duplicate by Message-ID show it once."""
        recipients = [to] if isinstance(to, str) else list(to)
        if not recipients:
            raise ValueError("no recipients")
        msg = EmailMessage()
        msg["From"] = self.config.sender
        msg["To"] = ", ".join(recipients)
        msg["Subject"] = subject
        msg["Date"] = email.utils.formatdate(localtime=False)
        domain = email.utils.parseaddr(self.config.sender)[1].rpartition("@")[2] or None
        msg["Message-ID"] = message_id or email.utils.make_msgid(domain=domain)
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
        return msg

    async def notify(
        self, to: str | Sequence[str], note: Notification, *, message_id: str | None = None
    ) -> str:
        """Send a rendered notification; returns the Message-ID."""
        return await self.send(
            to, note.subject, note.text, note.email_html(), message_id=message_id
        )

    async def send(
        self,
        to: str | Sequence[str],
        subject: str,
        text: str,
        html: str | None = None,
        *,
        message_id: str | None = None,
    ) -> str:
        msg = self.build(to, subject, text, html, message_id=message_id)
        c = self.config
        try:
            await aiosmtplib.send(
                msg,
                hostname=c.host,
                port=c.port,
                username=c.username,
                password=c.password,
                start_tls=c.starttls,
                use_tls=c.use_tls,
                timeout=c.timeout_s,
                tls_context=c.tls_context,
                validate_certs=c.validate_certs,
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise self._error("smtp_auth_failed", exc, retryable=False) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise self._error(
                "smtp_recipients_refused", exc, retryable=all(400 <= c < 500 for c in codes)
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise self._error(f"smtp_{exc.code}", exc, retryable=400 <= exc.code < 500) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise self._error("smtp_unavailable", exc, retryable=True) from None
        log.info("e-mail sent", extra={"subject": subject, "recipients": len(msg["To"].split(","))})
        return str(msg["Message-ID"])

    def _error(self, code: str, exc: BaseException, *, retryable: bool) -> NotifyError:
        text = f"{type(exc).__name__}: {exc}"
        if self.config.password:
            text = text.replace(self.config.password, "***")
        return NotifyError(code, text, retryable=retryable)
