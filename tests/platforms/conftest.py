"""Fixtures for platform adapters: the fake YouTube server, a state database, accounts.

Everything runs against ``fabric.testing.fake_youtube`` on 127.0.0.1 through the real
googleapiclient; chunks are 256 KiB and videos about 1 MiB so the suite stays fast.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from fabric.platforms.base import Intent, PublishJob
from fabric.platforms.youtube import YouTubeConfig, YouTubePlatform
from fabric.quota import QuotaTracker
from fabric.secrets import Cipher
from fabric.store.accounts import AccountStore
from fabric.store.db import SqliteDatabase
from fabric.store.intents import DbIntentStore
from fabric.testing.fake_youtube import FakeYouTube

CHUNK = 256 * 1024
CLIENT_ID = "1234-fabric.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-fake-client-secret"


@dataclasses.dataclass
class Video:
    path: str
    sha256: str
    size: int


class RecordingIntents:
    """A DbIntentStore that also remembers each save (a copy of the state and when)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.inner = DbIntentStore(db)
        self.saves: list[tuple[int, dict[str, Any]]] = []

    async def load(self, key: str) -> Intent:
        return await self.inner.load(key)

    async def save(self, intent: Intent) -> None:
        await self.inner.save(intent)
        self.saves.append((time.monotonic_ns(), orjson.loads(orjson.dumps(intent.state))))


class ProgressLog:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    async def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))


@pytest.fixture
async def fake() -> AsyncIterator[FakeYouTube]:
    server = FakeYouTube()
    server.add_client(CLIENT_ID, CLIENT_SECRET)
    server.add_channel("UCalpha000000000000000001", "Alpha")
    server.add_channel("UCbeta0000000000000000002", "Beta")
    server.add_playlist("PLalpha", "UCalpha000000000000000001")
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def secret_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(str(tmp_path / "state.db"))
    await database.start()
    yield database
    await database.close()


@pytest.fixture
def accounts(db: SqliteDatabase, secret_key: bytes) -> AccountStore:
    return AccountStore(db, Cipher(secret_key))


@pytest.fixture
async def quota(db: SqliteDatabase) -> QuotaTracker:
    tracker = QuotaTracker(db)
    await tracker.ensure()
    return tracker


@pytest.fixture
def intents(db: SqliteDatabase) -> RecordingIntents:
    return RecordingIntents(db)


AddAccount = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def add_account(fake: FakeYouTube, accounts: AccountStore) -> AddAccount:
    """Store a youtube account with tokens the fake issued (as if the user had consented)."""

    async def add(
        name: str = "alpha",
        channel_id: str = "UCalpha000000000000000001",
        *,
        access_ttl: float = 3600,
    ) -> dict[str, Any]:
        pair = fake.issue_tokens(channel_id, CLIENT_ID, access_ttl=access_ttl)
        await accounts.add(
            "youtube",
            name,
            external_id=channel_id,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            expires_at=dt.datetime.fromtimestamp(pair.expires_at, dt.UTC),
        )
        return {"access": pair.access_token, "refresh": pair.refresh_token}

    return add


def config_for(fake: FakeYouTube, **changes: Any) -> YouTubeConfig:
    return YouTubeConfig(
        root_url=fake.root_url, token_uri=fake.token_uri, chunk_multiple=1, **changes
    )


@pytest.fixture
def platform(fake: FakeYouTube, accounts: AccountStore, quota: QuotaTracker) -> YouTubePlatform:
    return YouTubePlatform(accounts, quota, config_for(fake))


def make_video(path: Path, size: int) -> Video:
    data = os.urandom(size)
    path.write_bytes(data)
    return Video(str(path), hashlib.sha256(data).hexdigest(), size)


@pytest.fixture
def video(tmp_path: Path) -> Video:
    """Five chunks of 256 KiB: four full ones and a short last one."""
    return make_video(tmp_path / "clip.mp4", 4 * CHUNK + 1000)


def job_for(video: Video, account: str = "alpha", **changes: Any) -> PublishJob:
    fields: dict[str, Any] = {
        "task_id": "task-1",
        "platform": "youtube",
        "account": account,
        "video_path": video.path,
        "video_sha256": video.sha256,
        "video_size": video.size,
        "title": "A test upload",
        "description": "Uploaded by the fabric test-suite",
        "tags": ("fabric", "test"),
        "privacy": "unlisted",
    }
    fields.update(changes)
    return PublishJob(**fields)
