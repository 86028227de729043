"""The whole system against fake platforms: the three API fakes, a fake Telegram and a real
SMTP server (aiosmtpd) run as servers in the test's loop; the real adapters, built by
``Platforms`` from settings that point at them; the real consumers through the ``harness``.

``World`` holds the servers, the accounts it connected and every secret it handed out (for
the leak test), and small helpers that wait on what the log and the fakes show, never on
fixed sleeps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email
import email.policy
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from fabric.events import loads, new_event, new_id
from fabric.testing.fake_graph import FakeGraph
from fabric.testing.fake_telegram import FakeTelegram
from fabric.testing.fake_tiktok import FakeTikTok
from fabric.testing.fake_youtube import FakeYouTube

YT_CLIENT_ID = "1234-fabric.apps.googleusercontent.com"
YT_CLIENT_SECRET = "GOCSPX-integration-client-secret"
YT_ALPHA = "UCalpha000000000000000001"
YT_BETA = "UCbeta0000000000000000002"
IG_USER = "17841400000000042"
TT_OPEN_ID = "open-id-0001"
BOT_TOKEN = "987654:integration-bot-token-abcdef"
CHAT = "5550001"  # the global default chat (FABRIC_NOTIFY_TELEGRAM_CHAT)


class Inbox:
    """aiosmtpd handler that keeps every accepted message."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


@dataclasses.dataclass
class World:
    youtube: FakeYouTube
    graph: FakeGraph
    tiktok: FakeTikTok
    telegram: FakeTelegram
    inbox: Inbox
    smtp_port: int
    secrets: list[str] = dataclasses.field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        """Settings that point every adapter and sender at the fakes, with fast polling."""
        base = {
            "FABRIC_YOUTUBE_ROOT_URL": self.youtube.root_url,
            "FABRIC_YOUTUBE_TOKEN_URI": self.youtube.token_uri,
            "FABRIC_YOUTUBE_CHUNK_MULTIPLE": "1",  # 256 KiB chunks: a multi-chunk upload
            "FABRIC_GRAPH_URL": self.graph.base_url,
            "FABRIC_GRAPH_UPLOAD_URL": self.graph.base_url,
            "FABRIC_INSTAGRAM_POLL_INITIAL_S": "0.01",
            "FABRIC_INSTAGRAM_POLL_MAX_S": "0.05",
            "FABRIC_TIKTOK_API_URL": self.tiktok.base_url,
            "FABRIC_TIKTOK_POLL_INITIAL_S": "0.01",
            "FABRIC_TIKTOK_POLL_MAX_S": "0.05",
            "FABRIC_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "FABRIC_TELEGRAM_API_URL": self.telegram.base_url,
            "FABRIC_TELEGRAM_BACKOFF_S": "0.01",
            "FABRIC_SMTP_HOST": "127.0.0.1",
            "FABRIC_SMTP_PORT": str(self.smtp_port),
            "FABRIC_SMTP_FROM": "Content Fabric <fabric@example.com>",
            "FABRIC_NOTIFY_BACKOFF_S": "0.01",
            "FABRIC_REFRESH_INTERVAL_S": "0.2",
            "FABRIC_REAUTH_RECHECK_S": "0.3",
            "FABRIC_TIKTOK_CLIENT_KEY": self.tiktok.client_key,
            "FABRIC_TIKTOK_CLIENT_SECRET": self.tiktok.client_secret,
        }
        return {**base, **extra}

    # -- accounts, each with tokens the fakes issued ---------------------------------------
    async def add_youtube(
        self,
        app: Any,
        name: str = "yt-main",
        channel: str = YT_ALPHA,
        *,
        access_ttl: float = 3600,
        replace: bool = False,
        **settings: Any,
    ) -> None:
        pair = self.youtube.issue_tokens(channel, YT_CLIENT_ID, access_ttl=access_ttl)
        self.secrets += [pair.access_token, pair.refresh_token]
        await app.accounts.add(
            "youtube",
            name,
            external_id=channel,
            client_id=YT_CLIENT_ID,
            client_secret=YT_CLIENT_SECRET,
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            expires_at=dt.datetime.fromtimestamp(pair.expires_at, dt.UTC),
            settings=settings,
            replace=replace,
        )

    async def add_instagram(
        self,
        app: Any,
        name: str = "ig-brand",
        expires_in: dt.timedelta = dt.timedelta(days=50),
        **settings: Any,
    ) -> None:
        token = "IGQVJ-integration-" + new_id()
        self.graph.add_account(IG_USER, token, username="brand.reels")
        self.secrets.append(token)
        await app.accounts.add(
            "instagram",
            name,
            external_id=IG_USER,
            access_token=token,
            expires_at=dt.datetime.now(dt.UTC) + expires_in,
            settings=settings,
        )

    async def add_tiktok(
        self,
        app: Any,
        name: str = "tt-me",
        *,
        privacy: list[str] | None = None,
        expires_in: dt.timedelta = dt.timedelta(hours=12),
        **settings: Any,
    ) -> None:
        access, refresh = "act.integration-" + new_id(), "rft.integration-" + new_id()
        self.tiktok.add_account(
            TT_OPEN_ID, access, refresh, username="me.tok", privacy_level_options=privacy
        )
        self.secrets += [access, refresh]
        await app.accounts.add(
            "tiktok",
            name,
            external_id=TT_OPEN_ID,
            client_id=self.tiktok.client_key,
            client_secret=self.tiktok.client_secret,
            access_token=access,
            refresh_token=refresh,
            expires_at=dt.datetime.now(dt.UTC) + expires_in,
            settings=settings,
        )

    def all_secrets(self) -> list[str]:
        """Every token and client secret that exists now (the fakes rotate and refresh)."""
        found = set(self.secrets)
        found.update(self.youtube.issued_tokens())
        found.update(self.graph.tokens)
        found.update(self.tiktok.access)
        found.update(self.tiktok.refresh)
        found.update({YT_CLIENT_SECRET, self.tiktok.client_secret, BOT_TOKEN})
        return sorted(found)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    youtube = FakeYouTube()
    youtube.add_client(YT_CLIENT_ID, YT_CLIENT_SECRET)
    youtube.add_channel(YT_ALPHA, "Alpha")
    youtube.add_channel(YT_BETA, "Beta")
    graph = FakeGraph(in_progress_polls=2)
    tiktok = FakeTikTok(processing_polls=1)
    telegram = FakeTelegram(BOT_TOKEN)
    inbox = Inbox()
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(lambda: SMTP(inbox, hostname="mx.fabric.test"), "127.0.0.1", 0)
    for server in (youtube, graph, tiktok, telegram):
        await server.start()
    try:
        yield World(youtube, graph, tiktok, telegram, inbox, smtp.sockets[0].getsockname()[1])
    finally:
        for server in (telegram, tiktok, graph, youtube):
            await server.close()
        smtp.close()
        await smtp.wait_closed()


@pytest.fixture(scope="session")
def vertical_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3.5 s, 360x640: long and large enough for Reels and TikTok, a Short on YouTube."""
    from fabric.testing.media import make_video

    return make_video(tmp_path_factory.mktemp("media") / "vertical.mp4", 3.5, "360x640")


# -- reading the log -------------------------------------------------------------------------
async def log_events(app: Any, topic: str = "fabric.tasks") -> list[dict[str, Any]]:
    """Every event on a topic (all partitions, from offset 0), decoded."""
    name = app.runtime.bus.topic(topic)
    topics = await app.log.topics()
    out: list[dict[str, Any]] = []
    for partition in range(topics.get(name, 0)):
        offset = 0
        while batch := await app.log.read(name, partition, offset, 5000):
            out += [loads(r.value) for r in batch]
            offset = batch[-1].offset + 1
    return sorted(out, key=lambda e: (e["time"], e["id"]))


async def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Poll an observable condition (sync or async) until it is truthy; fail at the deadline.
    Returns the truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(0.05)


async def events_of(
    app: Any, kind: str, topic: str = "fabric.tasks", subject: str | None = None
) -> list[dict[str, Any]]:
    return [
        e
        for e in await log_events(app, topic)
        if e["type"] == kind and (subject is None or e["subject"] == subject)
    ]


async def submit(app: Any, video: Path, targets: list[tuple[str, str]], **spec: Any) -> str:
    """Publish ``task.created`` (the orchestrator validates it on ingress)."""
    task_id = new_id()
    data = {
        "task_id": task_id,
        "video": {"path": str(video)},
        "title": spec.pop("title", "Morning run"),
        "targets": [{"platform": p, "account": a} for p, a in targets],
        **spec,
    }
    await app.runtime.bus.publish(new_event("task.created", data, subject=task_id, source="test"))
    return task_id
