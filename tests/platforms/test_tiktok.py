"""TikTokPlatform against the fake TikTok API, plus the pure chunk math.

The upload tests shrink TikTok's chunk rules by 1024 (5-64 KiB chunks instead of 5-64 MiB)
in both the adapter and the fake, so multi-chunk uploads run in milliseconds while the
production defaults stay TikTok's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fabric.platforms.base import ErrorClass, InteractionJob, Platform, PlatformError, PublishJob
from fabric.platforms.tiktok import (
    MB,
    TIKTOK_CHUNK_RULES,
    UNAUDITED_NOTICE,
    ChunkRules,
    TikTokConfig,
    TikTokPlatform,
    classify_tiktok_error,
    mp4_duration,
    plan_chunks,
    tiktok_privacy,
)
from fabric.secrets import Cipher
from fabric.store.accounts import AccountStore
from fabric.store.db import SqliteDatabase
from fabric.store.intents import DbIntentStore
from fabric.testing.fake_tiktok import FakeTikTok

KB = 1024
TINY = ChunkRules(min_chunk=5 * KB, max_chunk=64 * KB, max_last_chunk=128 * KB, max_chunks=1000)
OPEN_ID = "open-id-123"
ACCESS = "act.initial-access-token-abcdef0123456789"
REFRESH = "rft.initial-refresh-token-abcdef0123456789"
ACCOUNT = "creator"


class Sleeper:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


class Progress:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    async def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))


# -- chunk math -------------------------------------------------------------------------------


def test_small_file_goes_whole() -> None:
    plan = plan_chunks(3 * MB)
    assert (plan.chunk_size, plan.total_chunk_count) == (3 * MB, 1)
    assert plan.ranges() == [(0, 3 * MB - 1)]


def test_exact_multiple() -> None:
    plan = plan_chunks(50 * MB, 10 * MB)
    assert (plan.chunk_size, plan.total_chunk_count) == (10 * MB, 5)
    assert plan.ranges()[-1] == (40 * MB, 50 * MB - 1)


def test_remainder_rides_on_the_last_chunk() -> None:
    size = 52 * MB + 123
    plan = plan_chunks(size, 10 * MB)
    assert plan.total_chunk_count == 5 == size // plan.chunk_size
    first, last = plan.ranges()[-1]
    assert (first, last) == (40 * MB, size - 1)
    assert last - first + 1 == 12 * MB + 123


def test_chunk_size_is_clamped_to_tiktoks_range() -> None:
    assert plan_chunks(100 * MB, 1 * MB).chunk_size == 5 * MB
    assert plan_chunks(1000 * MB, 500 * MB).chunk_size == 64 * MB
    assert plan_chunks(40 * MB, 64 * MB).total_chunk_count == 1  # 5-64 MB may go whole


def test_more_than_1000_chunks_grows_the_chunk() -> None:
    size = 6000 * MB
    plan = plan_chunks(size, 5 * MB)
    assert plan.total_chunk_count <= 1000
    assert 5 * MB <= plan.chunk_size <= 64 * MB
    assert plan.total_chunk_count == size // plan.chunk_size


@pytest.mark.parametrize(
    "size", [1, 5 * MB - 1, 5 * MB, 64 * MB, 64 * MB + 1, 129 * MB + 7, 4 * 1024 * MB]
)
@pytest.mark.parametrize("chunk", [5 * MB, 10 * MB, 64 * MB])
def test_every_plan_obeys_the_rules(size: int, chunk: int) -> None:
    plan = plan_chunks(size, chunk)
    ranges = plan.ranges()
    assert ranges[0][0] == 0 and ranges[-1][1] == size - 1
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))
    assert plan.total_chunk_count == size // plan.chunk_size
    assert 1 <= plan.total_chunk_count <= 1000
    if size < 5 * MB:
        assert plan.chunk_size == size
    else:
        assert 5 * MB <= plan.chunk_size <= 64 * MB
    assert ranges[-1][1] - ranges[-1][0] + 1 <= TIKTOK_CHUNK_RULES.max_last_chunk
    if size > 64 * MB:
        assert plan.total_chunk_count >= 2


def test_bad_size() -> None:
    with pytest.raises(ValueError):
        plan_chunks(0)


# -- the adapter against the fake ---------------------------------------------------------------


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(str(tmp_path / "state.db"))
    await database.start()
    yield database
    await database.close()


@pytest.fixture
def intents(db: SqliteDatabase) -> DbIntentStore:
    return DbIntentStore(db)


@pytest.fixture
async def tiktok() -> AsyncIterator[FakeTikTok]:
    fake = FakeTikTok(min_chunk=5 * KB, max_chunk=64 * KB, max_last_chunk=128 * KB)
    fake.add_account(OPEN_ID, ACCESS, REFRESH, username="runner")
    async with fake:
        yield fake


@pytest.fixture
async def accounts(db: SqliteDatabase, tiktok: FakeTikTok) -> AccountStore:
    store = AccountStore(db, Cipher(os.urandom(32)))
    await store.add(
        "tiktok",
        ACCOUNT,
        external_id=OPEN_ID,
        client_id=tiktok.client_key,
        client_secret=tiktok.client_secret,
        access_token=ACCESS,
        refresh_token=REFRESH,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=20),
    )
    return store


def adapter(
    accounts: AccountStore, fake: FakeTikTok, sleep: Sleeper | None = None, **over: Any
) -> TikTokPlatform:
    config = TikTokConfig(
        api_url=fake.base_url,
        chunk_size=10 * KB,
        chunk_rules=TINY,
        poll_initial_s=1.0,
        **over,
    )
    return TikTokPlatform(accounts, config, sleep=sleep or Sleeper())


def make_video(tmp_path: Path, size: int) -> Path:
    path = tmp_path / f"v{size}.mp4"
    path.write_bytes(os.urandom(size))
    return path


def job(video: Path, **over: Any) -> PublishJob:
    values: dict[str, Any] = {
        "task_id": "t1",
        "platform": "tiktok",
        "account": ACCOUNT,
        "video_path": str(video),
        "video_sha256": "0" * 64,
        "video_size": video.stat().st_size,
        "title": "Morning run",
        "tags": ("running",),
        "privacy": "public",
        **over,
    }
    return PublishJob(**values)


@pytest.mark.parametrize(
    ("size", "ranges"),
    [
        (3000, ["bytes 0-2999/3000"]),  # under the minimum: whole
        (30 * KB, ["bytes 0-10239/30720", "bytes 10240-20479/30720", "bytes 20480-30719/30720"]),
        (
            34 * KB + 17,
            ["bytes 0-10239/34833", "bytes 10240-20479/34833", "bytes 20480-34832/34833"],
        ),
    ],
)
async def test_chunked_upload_and_publish(
    tmp_path: Path,
    accounts: AccountStore,
    intents: DbIntentStore,
    tiktok: FakeTikTok,
    size: int,
    ranges: list[str],
) -> None:
    video = make_video(tmp_path, size)
    sleep, progress = Sleeper(), Progress()
    tt = adapter(accounts, tiktok, sleep)
    assert isinstance(tt, Platform)
    result = await tt.publish(job(video), await intents.load("k"), intents, progress)
    await tt.close()

    (upload,) = tiktok.uploads.values()
    assert upload.chunks == ranges
    assert upload.content_types == ["video/mp4"] * len(ranges)
    assert (upload.video_size, upload.total_chunk_count) == (size, len(ranges))
    assert tiktok.bytes_received == size
    assert tiktok.creator_queries == 1 and tiktok.inits == 1 and tiktok.published == 1
    assert upload.post_info["privacy_level"] == "PUBLIC_TO_EVERYONE"
    assert upload.post_info["title"] == "Morning run #running"
    assert upload.post_info["disable_stitch"] is True  # the creator turned stitches off
    assert result.video_id == upload.post_id
    assert result.url == f"https://www.tiktok.com/@runner/video/{upload.post_id}"
    assert result.upload_id == upload.publish_id
    assert result.bytes_sent == size
    assert progress.calls[-1] == (size, size)
    assert sleep.waits == [1.0]  # one PROCESSING_DOWNLOAD poll, then complete
    stored = await intents.load("k")
    assert stored.state["status"] == "PUBLISH_COMPLETE"
    assert stored.state["chunks_done"] == len(ranges)


async def test_resume_after_failed_chunk(
    tmp_path: Path, accounts: AccountStore, intents: DbIntentStore
) -> None:
    fake = FakeTikTok(min_chunk=5 * KB, max_chunk=64 * KB, max_last_chunk=128 * KB)
    fake.add_account(OPEN_ID, ACCESS, REFRESH, username="runner")
    video = make_video(tmp_path, 30 * KB)
    async with fake:
        tt = adapter(accounts, fake)
        # the second chunk's PUT fails (after one good chunk)
        fake.fail_next("upload", "internal_error", "upstream timeout", status=500, after=1)
        with pytest.raises(PlatformError) as err:
            await tt.publish(job(video), await intents.load("k"), intents, Progress())
        assert (err.value.kind, err.value.code) == (ErrorClass.TRANSIENT, "internal_error")
        persisted = await intents.load("k")
        assert persisted.state["chunks_done"] == 1 and persisted.state["publish_id"]

        result = await tt.publish(job(video, attempt=2), persisted, intents, Progress())
        await tt.close()
    (upload,) = fake.uploads.values()
    assert fake.inits == 1  # the same publish id, no second init
    assert upload.chunks == [
        "bytes 0-10239/30720",
        "bytes 10240-20479/30720",
        "bytes 20480-30719/30720",
    ]
    assert fake.bytes_received == 30 * KB + 10 * KB  # the failed chunk was sent twice, no more
    assert result.bytes_sent == 20 * KB
    assert result.resumed is True
    assert fake.published == 1


async def test_privacy_level_not_offered_fails_clearly(
    tmp_path: Path, accounts: AccountStore, intents: DbIntentStore, tiktok: FakeTikTok
) -> None:
    tiktok.creators[OPEN_ID]["privacy_level_options"] = ["PUBLIC_TO_EVERYONE", "SELF_ONLY"]
    tt = adapter(accounts, tiktok)
    with pytest.raises(PlatformError) as err:
        await tt.publish(
            job(make_video(tmp_path, 3000), privacy="friends"),
            await intents.load("k"),
            intents,
            Progress(),
        )
    await tt.close()
    assert (err.value.kind, err.value.code) == (ErrorClass.PERMANENT, "privacy_level_not_allowed")
    assert "MUTUAL_FOLLOW_FRIENDS" in err.value.message
    assert "PUBLIC_TO_EVERYONE, SELF_ONLY" in err.value.message
    assert tiktok.inits == 0


async def test_unaudited_app_is_surfaced(
    tmp_path: Path, accounts: AccountStore, intents: DbIntentStore, tiktok: FakeTikTok
) -> None:
    tiktok.creators[OPEN_ID]["privacy_level_options"] = ["SELF_ONLY"]
    video = make_video(tmp_path, 3000)
    tt = adapter(accounts, tiktok)
    with pytest.raises(PlatformError) as err:  # asked for public: refuse, do not hide it
        await tt.publish(job(video), await intents.load("a"), intents, Progress())
    assert (err.value.kind, err.value.code) == (ErrorClass.PERMANENT, "unaudited_app_private_only")
    assert UNAUDITED_NOTICE in err.value.message
    assert tiktok.inits == 0

    private = await tt.publish(
        job(video, privacy="private"), await intents.load("b"), intents, Progress()
    )
    fallback = await tt.publish(
        job(video, options={"allow_private_fallback": True}),
        await intents.load("c"),
        intents,
        Progress(),
    )
    await tt.close()
    for result in (private, fallback):
        assert result.details["notice"] == UNAUDITED_NOTICE
        assert result.details["privacy_level"] == "SELF_ONLY"
        assert result.url == ""  # private posts have no public id
    assert [u.post_info["privacy_level"] for u in tiktok.uploads.values()] == ["SELF_ONLY"] * 2


async def test_too_long_video_fails_before_upload(
    tmp_path: Path, accounts: AccountStore, intents: DbIntentStore, tiktok: FakeTikTok
) -> None:
    tiktok.creators[OPEN_ID]["max_video_post_duration_sec"] = 60
    tt = adapter(accounts, tiktok)
    with pytest.raises(PlatformError) as err:
        await tt.publish(
            job(make_video(tmp_path, 3000), options={"duration_s": 61.5}),
            await intents.load("k"),
            intents,
            Progress(),
        )
    await tt.close()
    assert (err.value.kind, err.value.code) == (ErrorClass.PERMANENT, "video_too_long")
    assert "61.5 s" in err.value.message and "60 s" in err.value.message
    assert tiktok.inits == 0


def test_mp4_duration_reads_mvhd(tmp_path: Path) -> None:
    mvhd = struct.pack(">I4sB3xIIII", 8 + 4 + 16, b"mvhd", 0, 0, 0, 1000, 93_500)
    moov = struct.pack(">I4s", 8 + len(mvhd), b"moov") + mvhd
    ftyp = struct.pack(">I4s4sI", 16, b"ftyp", b"isom", 512)
    path = tmp_path / "m.mp4"
    path.write_bytes(ftyp + moov)
    assert mp4_duration(str(path)) == pytest.approx(93.5)
    path.write_bytes(os.urandom(64))
    assert mp4_duration(str(path)) is None


@pytest.mark.parametrize(
    ("endpoint", "code", "status", "kind"),
    [
        ("init", "spam_risk_too_many_posts", 200, ErrorClass.QUOTA),
        ("creator_info", "rate_limit_exceeded", 200, ErrorClass.RATE_LIMIT),
        ("init", "internal_error", 200, ErrorClass.TRANSIENT),
        ("status", "invalid_publish_id", 200, ErrorClass.PERMANENT),
        ("creator_info", "scope_not_authorized", 200, ErrorClass.AUTH),
        ("init", "spam_risk_user_banned_from_posting", 200, ErrorClass.PERMANENT),
    ],
)
async def test_http_200_error_payloads_are_errors(
    tmp_path: Path,
    accounts: AccountStore,
    intents: DbIntentStore,
    tiktok: FakeTikTok,
    endpoint: str,
    code: str,
    status: int,
    kind: ErrorClass,
) -> None:
    tiktok.fail_next(endpoint, code, f"injected {code}", status=status)
    now = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)
    tt = TikTokPlatform(
        accounts,
        TikTokConfig(
            api_url=tiktok.base_url, chunk_size=10 * KB, chunk_rules=TINY, rate_limit_retry_s=42
        ),
        sleep=Sleeper(),
        clock=lambda: now,
    )
    with pytest.raises(PlatformError) as err:
        await tt.publish(
            job(make_video(tmp_path, 3000)), await intents.load("k"), intents, Progress()
        )
    await tt.close()
    assert (err.value.kind, err.value.code, err.value.status) == (kind, code, 200)
    assert f"injected {code}" in err.value.message and "log_id" in err.value.message
    if kind is ErrorClass.QUOTA:
        assert err.value.reset_at == now + dt.timedelta(hours=24)
    if kind is ErrorClass.RATE_LIMIT:
        assert err.value.retry_after == 42
    assert tiktok.published == 0


async def test_failed_publish_carries_the_fail_reason(
    tmp_path: Path, accounts: AccountStore, intents: DbIntentStore, tiktok: FakeTikTok
) -> None:
    tiktok.fail_reason = "file_format_check_failed"
    tt = adapter(accounts, tiktok)
    with pytest.raises(PlatformError) as err:
        await tt.publish(
            job(make_video(tmp_path, 3000)), await intents.load("k"), intents, Progress()
        )
    await tt.close()
    assert (err.value.kind, err.value.code) == (ErrorClass.PERMANENT, "file_format_check_failed")
    stored = await intents.load("k")
    assert stored.state["last_fail_reason"] == "file_format_check_failed"
    assert "publish_id" not in stored.state  # a retry starts a fresh upload
    assert classify_tiktok_error(200, {"code": "internal"}).kind is ErrorClass.TRANSIENT


async def test_completed_post_is_recovered_not_reposted(
    tmp_path: Path, accounts: AccountStore, intents: DbIntentStore, tiktok: FakeTikTok
) -> None:
    video = make_video(tmp_path, 3000)
    tt = adapter(accounts, tiktok)
    first = await tt.publish(job(video), await intents.load("k"), intents, Progress())
    again = await tt.publish(job(video, attempt=2), await intents.load("k"), intents, Progress())
    await tt.close()
    assert again.recovered is True and again.video_id == first.video_id
    assert tiktok.inits == 1 and tiktok.published == 1


async def test_rotated_refresh_token_is_persisted(
    accounts: AccountStore, tiktok: FakeTikTok
) -> None:
    tt = adapter(accounts, tiktok)
    assert await tt.refresh_token_if_due(ACCOUNT) is False  # 20 h left
    assert await tt.refresh_token_if_due(ACCOUNT, margin=dt.timedelta(days=1)) is True
    await tt.close()
    creds = await accounts.credentials("tiktok", ACCOUNT)
    assert creds.access_token != ACCESS and tiktok.access[creds.access_token or ""] == OPEN_ID
    assert creds.refresh_token != REFRESH and tiktok.refresh[creds.refresh_token or ""] == OPEN_ID
    assert REFRESH not in tiktok.refresh  # TikTok retired the old one: only the new pair works
    assert creds.expires_at is not None
    assert creds.expires_at - dt.datetime.now(dt.UTC) > dt.timedelta(hours=23)
    assert tiktok.refreshes == 1


async def test_rejected_token_is_refreshed_once_and_the_call_retried(
    tmp_path: Path, accounts: AccountStore, intents: DbIntentStore, tiktok: FakeTikTok
) -> None:
    tiktok.revoke_access(ACCESS)
    tt = adapter(accounts, tiktok)
    result = await tt.publish(
        job(make_video(tmp_path, 3000)), await intents.load("k"), intents, Progress()
    )
    assert tiktok.refreshes == 1 and tiktok.published == 1
    assert result.video_id

    # the refresh token itself dead: AUTH, the account needs reconnecting
    creds = await accounts.credentials("tiktok", ACCOUNT)
    tiktok.refresh.clear()
    tiktok.revoke_access(creds.access_token or "")
    with pytest.raises(PlatformError) as err:
        await tt.publish(
            job(make_video(tmp_path, 3000)), await intents.load("k2"), intents, Progress()
        )
    await tt.close()
    assert (err.value.kind, err.value.code) == (ErrorClass.AUTH, "refresh_token_invalid")
    # the stored pair is unchanged by the failed refresh
    assert (await accounts.credentials("tiktok", ACCOUNT)).refresh_token == creds.refresh_token


async def test_expiring_token_is_refreshed_before_publishing(
    tmp_path: Path, accounts: AccountStore, intents: DbIntentStore, tiktok: FakeTikTok
) -> None:
    await accounts.save_tokens(
        "tiktok",
        ACCOUNT,
        access_token=ACCESS,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2),
    )
    tt = adapter(accounts, tiktok)
    await tt.publish(job(make_video(tmp_path, 3000)), await intents.load("k"), intents, Progress())
    await tt.close()
    assert tiktok.refreshes == 1
    assert (await accounts.credentials("tiktok", ACCOUNT)).access_token != ACCESS


async def test_interactions_are_unsupported(
    accounts: AccountStore, intents: DbIntentStore, tiktok: FakeTikTok
) -> None:
    tt = adapter(accounts, tiktok)
    with pytest.raises(PlatformError) as err:
        await tt.interact(
            InteractionJob("t1", "tiktok", ACCOUNT, "123", "comment", "hi"),
            await intents.load("i"),
            intents,
        )
    await tt.close()
    assert (err.value.kind, err.value.code) == (ErrorClass.PERMANENT, "unsupported_interaction")


def test_privacy_aliases() -> None:
    assert tiktok_privacy("public") == "PUBLIC_TO_EVERYONE"
    assert tiktok_privacy("private") == "SELF_ONLY"
    assert tiktok_privacy("unlisted") == "SELF_ONLY"
    assert tiktok_privacy("FOLLOWER_OF_CREATOR") == "FOLLOWER_OF_CREATOR"


async def test_no_token_in_logs_errors_or_results(
    tmp_path: Path,
    accounts: AccountStore,
    intents: DbIntentStore,
    tiktok: FakeTikTok,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tiktok.revoke_access(ACCESS)  # forces a refresh: old and new tokens both in play
    tt = adapter(accounts, tiktok)
    video = make_video(tmp_path, 3000)
    result = await tt.publish(job(video), await intents.load("k"), intents, Progress())
    new = await accounts.credentials("tiktok", ACCOUNT)
    errors: list[PlatformError] = []
    tiktok.access.clear()
    tiktok.refresh.clear()
    try:
        await tt.publish(job(video), await intents.load("k2"), intents, Progress())
    except PlatformError as exc:
        errors.append(exc)
    await tiktok.close()
    try:
        await tt.publish(job(video), await intents.load("k3"), intents, Progress())
    except PlatformError as exc:
        errors.append(exc)
    await tt.close()
    assert [e.kind for e in errors] == [ErrorClass.AUTH, ErrorClass.TRANSIENT]
    texts = [
        caplog.text,
        repr(result),
        str(result.details),
        str((await intents.load("k")).state),
        repr(new),
    ]
    for e in errors:
        texts += [str(e), repr(e), str(e.as_data())]
    secrets = (ACCESS, REFRESH, new.access_token, new.refresh_token, tiktok.client_secret)
    for secret in secrets:
        assert secret
        for text in texts:
            assert secret not in text


def test_config_from_flat_settings() -> None:
    config = TikTokConfig.from_settings(
        {"api_url": "http://127.0.0.1:1", "chunk_rules": {"min_chunk": 1024}, "refresh_margin": 60}
    )
    assert config.chunk_rules.min_chunk == 1024
    assert config.chunk_rules.max_chunk == 64 * MB
    assert config.refresh_margin == dt.timedelta(minutes=1)
    assert TikTokConfig().chunk_rules == TIKTOK_CHUNK_RULES  # production follows TikTok's rules
