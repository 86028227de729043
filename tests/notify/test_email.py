"""EmailSender through a real aiosmtpd SMTP server running in the test's event loop."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fabric.notify import EmailSender, NotifyError, SmtpConfig, render

USER, PASSWORD = "fabric", "smtp-pass-Zq9!secret"

PUBLISHED = {
    "task_id": "t-1",
    "title": "Morning run",
    "uploads": [
        {
            "platform": "youtube",
            "account": "main",
            "video_id": "abc",
            "url": "https://youtu.be/abc",
        },
        {
            "platform": "tiktok",
            "account": "me",
            "video_id": "73",
            "url": "https://www.tiktok.com/@me/video/73",
        },
    ],
}


class Inbox:
    """aiosmtpd handler: keeps every accepted message and how its session looked."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "message": email.message_from_bytes(envelope.content, policy=email.policy.default),
                "tls": session.ssl is not None,
                "login": session.auth_data.login if session.authenticated else None,
            }
        )
        return "250 Message accepted for delivery"


def _authenticate(
    server: SMTP, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False, auth_data=data)


def _certificate(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: (server context, client context)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client = ssl.create_default_context(cadata=pem.decode())
    return server, client


@pytest.fixture
async def smtp_server() -> AsyncIterator[Any]:
    """Start aiosmtpd's SMTP protocol on a free port in this loop; closed after the test."""
    servers: list[asyncio.AbstractServer] = []

    async def serve(**kwargs: Any) -> tuple[Inbox, int]:
        inbox = Inbox()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(inbox, hostname="mx.fabric.test", **kwargs), "127.0.0.1", 0
        )
        servers.append(server)
        return inbox, server.sockets[0].getsockname()[1]

    yield serve
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_mail_arrives_with_subject_and_links_without_tls(smtp_server: Any) -> None:
    inbox, port = await smtp_server()
    sender = EmailSender(
        SmtpConfig(host="127.0.0.1", port=port, sender="Fabric <fabric@example.com>")
    )
    message_id = await sender.notify(["owner@example.com"], render("task_published", PUBLISHED))

    (got,) = inbox.messages
    msg = got["message"]
    assert got["to"] == ["owner@example.com"] and got["from"] == "fabric@example.com"
    assert got["tls"] is False
    assert msg["Subject"] == "Published: Morning run"
    assert msg["Message-ID"] == message_id
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for url in ("https://youtu.be/abc", "https://www.tiktok.com/@me/video/73"):
        assert url in text
        assert f'<a href="{url}">' in html


async def test_mail_over_starttls_with_login(smtp_server: Any, tmp_path: Path) -> None:
    server_tls, client_tls = _certificate(tmp_path)
    inbox, port = await smtp_server(
        tls_context=server_tls,
        require_starttls=True,
        authenticator=_authenticate,
        auth_required=True,
    )
    sender = EmailSender(
        SmtpConfig(
            host="127.0.0.1",
            port=port,
            sender="fabric@example.com",
            username=USER,
            password=PASSWORD,
            starttls=True,
            tls_context=client_tls,
        )
    )
    await sender.notify(
        "owner@example.com",
        render(
            "task_failed",
            {
                "title": "Evening run",
                "message": "tiktok:me: privacy not allowed",
                "targets": [
                    {
                        "platform": "youtube",
                        "account": "main",
                        "status": "published",
                        "url": "https://youtu.be/xyz",
                    }
                ],
            },
        ),
    )
    (got,) = inbox.messages
    assert got["tls"] is True
    assert got["login"] == USER.encode()
    assert got["message"]["Subject"] == "Failed: Evening run"
    assert "https://youtu.be/xyz" in got["message"].get_body(("plain",)).get_content()


async def test_refused_login_is_not_retryable_and_hides_the_password(
    smtp_server: Any, tmp_path: Path
) -> None:
    server_tls, client_tls = _certificate(tmp_path)
    inbox, port = await smtp_server(
        tls_context=server_tls,
        require_starttls=True,
        authenticator=_authenticate,
        auth_required=True,
    )
    wrong = "not-the-" + PASSWORD
    sender = EmailSender(
        SmtpConfig(
            host="127.0.0.1",
            port=port,
            username=USER,
            password=wrong,
            starttls=True,
            tls_context=client_tls,
        )
    )
    with pytest.raises(NotifyError) as err:
        await sender.send("owner@example.com", "subject", "text")
    assert (err.value.code, err.value.retryable) == ("smtp_auth_failed", False)
    assert wrong not in str(err.value) and wrong not in repr(sender.config)
    assert inbox.messages == []


async def test_server_down_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = EmailSender(SmtpConfig(host="127.0.0.1", port=port, timeout_s=5))
    with pytest.raises(NotifyError) as err:
        await sender.send("owner@example.com", "subject", "text", "<p>html</p>")
    assert (err.value.code, err.value.retryable) == ("smtp_unavailable", True)
