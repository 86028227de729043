"""YouTube adapter against the fake server, through the real googleapiclient.

Outcomes are asserted where they land: bytes and videos counted by the fake, intents and
quota rows in the state database, the class and code of every PlatformError.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
import traceback
import urllib.error
import urllib.request
import webbrowser
from pathlib import Path
from typing import Any

import pytest
import time_machine

from fabric.logs import JsonFormatter
from fabric.platforms.base import (
    ErrorClass,
    Intent,
    InteractionJob,
    Platform,
    PlatformError,
    PublishResult,
)
from fabric.platforms.youtube import YouTubeConfig, YouTubePlatform
from fabric.platforms.youtube_oauth import add_account as oauth_add_account
from fabric.quota import YOUTUBE, QuotaTracker, next_reset
from fabric.store.accounts import AccountError, AccountStore
from fabric.store.db import SqliteDatabase
from fabric.testing.fake_youtube import REASONS, FakeYouTube
from tests.conftest import python
from tests.platforms.conftest import (
    CHUNK,
    CLIENT_ID,
    CLIENT_SECRET,
    AddAccount,
    ProgressLog,
    RecordingIntents,
    Video,
    config_for,
    job_for,
    make_video,
)

PACIFIC = YOUTUBE.tz
ALPHA = "UCalpha000000000000000001"
BETA = "UCbeta0000000000000000002"


async def publish(
    platform: YouTubePlatform,
    intents: RecordingIntents,
    video: Video,
    key: str = "task-1:youtube:alpha",
    progress: ProgressLog | None = None,
    **changes: Any,
) -> PublishResult:
    """One publisher attempt: load the intent from the store, as a redelivery would."""
    intent = await intents.load(key)
    return await platform.publish(
        job_for(video, **changes), intent, intents, progress or ProgressLog()
    )


async def failing(coro: Any) -> PlatformError:
    with pytest.raises(PlatformError) as info:
        await coro
    return info.value


def next_pacific_midnight(now: dt.datetime) -> dt.datetime:
    local = now.astimezone(PACIFIC).date() + dt.timedelta(days=1)
    return dt.datetime.combine(local, dt.time(0), tzinfo=PACIFIC).astimezone(dt.UTC)


# -- uploads ----------------------------------------------------------------------------------
async def test_platform_protocol(platform: YouTubePlatform) -> None:
    assert isinstance(platform, Platform)
    assert platform.name == "youtube"


async def test_multi_chunk_upload_saves_progress_before_each_chunk(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    quota: QuotaTracker,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account()
    progress = ProgressLog()
    result = await publish(platform, intents, video, progress=progress)

    assert len(fake.videos) == 1
    uploaded = fake.videos[0]
    assert result.video_id == uploaded.id
    assert result.url == f"https://www.youtube.com/watch?v={uploaded.id}"
    assert (uploaded.sha256, uploaded.size) == (video.sha256, video.size)
    assert uploaded.resource["snippet"]["title"] == "A test upload"
    assert uploaded.resource["snippet"]["tags"] == ["fabric", "test"]
    assert uploaded.resource["status"]["privacyStatus"] == "unlisted"
    assert fake.bytes_received == video.size  # nothing sent twice
    session = fake.sessions[uploaded.session_id]
    assert session.first_bytes == [0, CHUNK, 2 * CHUNK, 3 * CHUNK, 4 * CHUNK]
    assert (result.resumed, result.recovered, result.bytes_sent) == (False, False, video.size)
    assert result.details["privacy"] == "unlisted" and "forced_private" not in result.details

    # the session URI was durable before the first chunk, each offset before the next chunk
    saved = [(t, s["upload"]) for t, s in intents.saves if "upload" in s]
    for first, arrived in session.arrivals:
        before = [u for t, u in saved if t < arrived]
        assert before, f"no intent saved before the chunk at {first}"
        assert before[-1]["confirmed"] == first
        assert before[-1]["session_uri"].endswith(session.id)
    final = await intents.load("task-1:youtube:alpha")
    assert final.state["video_id"] == uploaded.id and "upload" not in final.state
    assert progress.calls[-1] == (video.size, video.size)
    assert [d for d, _ in progress.calls] == sorted(d for d, _ in progress.calls)

    # the videos.insert bucket: our count and the fake's agree
    usage = {u.bucket: u for u in await quota.usage("alpha", "youtube")}
    assert usage["uploads"].used == 1 == fake.units_used[CLIENT_ID]["uploads"]
    assert usage["uploads"].remaining == 99


async def test_recorded_video_is_never_uploaded_again(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    accounts: AccountStore,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account()
    first = await publish(platform, intents, video)
    calls = len(fake.calls)
    await accounts.remove("youtube", "alpha")  # the answer does not even need the account
    again = await publish(platform, intents, video)
    assert again.video_id == first.video_id
    assert again.recovered and again.bytes_sent == 0
    assert len(fake.videos) == 1 and fake.bytes_received == video.size
    assert len(fake.calls) == calls  # not a single API call


async def test_503_on_a_chunk_is_transient_and_the_next_attempt_resumes(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account()
    fake.fail_chunk(2)  # the second chunk is lost with a 503 (no client-side retry)
    err = await failing(publish(platform, intents, video))
    assert (err.kind, err.code, err.status) == (ErrorClass.TRANSIENT, "backendError", 503)
    assert err.retryable
    assert fake.calls_of("upload.chunk")[-1].status == 503
    assert len(fake.calls_of("upload.chunk")) == 2  # googleapiclient did not retry on its own
    intent = await intents.load("task-1:youtube:alpha")
    assert intent.state["upload"]["confirmed"] == CHUNK

    result = await publish(platform, intents, video)
    assert result.resumed and not result.recovered
    assert result.details["resumed_from"] == CHUNK
    assert result.bytes_sent == video.size - CHUNK
    assert len(fake.sessions) == 1 and len(fake.videos) == 1
    session = next(iter(fake.sessions.values()))
    assert session.queries == 1  # asked the server where it stood before sending
    assert fake.bytes_received <= video.size + CHUNK
    assert fake.videos[0].sha256 == video.sha256


async def test_gone_session_starts_a_new_upload(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account()
    fake.fail_chunk(3)
    await failing(publish(platform, intents, video))
    old = (await intents.load("task-1:youtube:alpha")).state["upload"]["session_uri"]
    fake.expire_session()

    result = await publish(platform, intents, video)
    assert not result.resumed and not result.recovered
    assert result.bytes_sent == video.size
    assert len(fake.sessions) == 2 and len(fake.videos) == 1
    assert fake.videos[0].sha256 == video.sha256
    assert fake.videos[0].session_id != old.rsplit("=", 1)[-1]
    assert [c.status for c in fake.calls_of("upload.chunk")].count(410) == 1


async def test_finished_session_yields_its_video_without_uploading(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account()
    fake.reset_chunk(5, after_effect=True)  # the last chunk lands, its 200 never arrives
    err = await failing(publish(platform, intents, video))
    assert (err.kind, err.code) == (ErrorClass.TRANSIENT, "connection_reset")
    assert len(fake.videos) == 1
    received = fake.bytes_received

    result = await publish(platform, intents, video)
    assert result.video_id == fake.videos[0].id
    assert result.recovered and not result.resumed and result.bytes_sent == 0
    assert fake.bytes_received == received == video.size
    assert len(fake.videos) == 1


# -- kill -9 of a publisher process -----------------------------------------------------------
async def _child_upload(args: dict[str, Any]) -> None:
    """The publisher process of the kill -9 test (run by ``main`` below)."""
    from fabric.secrets import Cipher
    from fabric.store.intents import DbIntentStore

    db = SqliteDatabase(args["db"])
    await db.start()
    accounts = AccountStore(db, Cipher(base64.b64decode(args["key"])))
    config = YouTubeConfig(
        root_url=args["url"] + "/", token_uri=args["url"] + "/token", chunk_multiple=1
    )
    platform = YouTubePlatform(accounts, QuotaTracker(db), config)
    intents = DbIntentStore(db)
    video = Video(args["path"], args["sha256"], args["size"])
    intent = await intents.load(args["intent"])
    await platform.publish(job_for(video), intent, intents, ProgressLog())
    await db.close()


async def test_kill9_mid_upload_resumes_from_the_confirmed_byte(
    fake: FakeYouTube,
    db: SqliteDatabase,
    accounts: AccountStore,
    quota: QuotaTracker,
    intents: RecordingIntents,
    add_account: AddAccount,
    secret_key: bytes,
    video: Video,
    tmp_path: Path,
) -> None:
    await add_account()
    hold = fake.hold_chunk(3)  # chunks 1-2 land; the child then waits on chunk 3
    args = {
        "db": db.path,
        "key": base64.b64encode(secret_key).decode(),
        "url": fake.url,
        "path": video.path,
        "sha256": video.sha256,
        "size": video.size,
        "intent": "task-1:youtube:alpha",
    }
    with open(tmp_path / "child.log", "wb") as out:
        child = python(__file__, "child", json.dumps(args), stdout=out, stderr=out)
    try:
        await fake.wait_until(hold.arrived.is_set, 60, "the child's third chunk")
    finally:
        child.send_signal(signal.SIGKILL)
        await asyncio.to_thread(child.wait, 30)
    assert child.returncode == -signal.SIGKILL, (tmp_path / "child.log").read_text()
    hold.release()
    await asyncio.wait_for(hold.done.wait(), 10)

    # what the dead process left: the session and the byte the server confirmed
    left = await intents.load("task-1:youtube:alpha")
    assert left.state["upload"]["confirmed"] == 2 * CHUNK
    assert left.state["upload"]["session_uri"].endswith(str(hold.session_id))
    assert hold.first_byte == 2 * CHUNK

    platform = YouTubePlatform(accounts, quota, config_for(fake))  # a new publisher
    result = await publish(platform, intents, video)
    assert result.resumed and result.details["resumed_from"] == 2 * CHUNK
    assert result.bytes_sent == video.size - 2 * CHUNK
    session = fake.sessions[str(hold.session_id)]
    assert session.queries == 1
    assert session.first_bytes == [0, CHUNK, 2 * CHUNK, 2 * CHUNK, 3 * CHUNK, 4 * CHUNK]
    assert len(fake.sessions) == 1 and len(fake.videos) == 1
    assert fake.videos[0].sha256 == video.sha256
    assert fake.bytes_received <= video.size + CHUNK
    # the insert was counted once, by the dead process
    assert {u.bucket: u.used for u in await quota.usage("alpha", "youtube")}["uploads"] == 1


# -- error classes ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("quotaExceeded", ErrorClass.QUOTA),
        ("uploadLimitExceeded", ErrorClass.QUOTA),
        ("tooManyRequests", ErrorClass.QUOTA),  # HTTP 429
        ("rateLimitExceeded", ErrorClass.RATE_LIMIT),
        ("userRateLimitExceeded", ErrorClass.RATE_LIMIT),
        ("backendError", ErrorClass.TRANSIENT),  # 503
        ("internalError", ErrorClass.TRANSIENT),  # 500
        ("invalidTitle", ErrorClass.PERMANENT),
        ("invalidDescription", ErrorClass.PERMANENT),
        ("invalidTags", ErrorClass.PERMANENT),
        ("invalidCategoryId", ErrorClass.PERMANENT),
    ],
)
async def test_api_error_reasons_map_to_classes(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
    reason: str,
    kind: ErrorClass,
) -> None:
    await add_account()
    fake.fail_next("videos.insert", reason)
    err = await failing(publish(platform, intents, video))
    assert err.kind == kind
    assert err.code == reason
    assert err.status == REASONS[reason][0]
    assert err.message == REASONS[reason][2]  # the API's own message, for the user
    if kind == ErrorClass.QUOTA:
        assert err.reset_at == next_pacific_midnight(dt.datetime.now(dt.UTC))
        assert err.as_data()["reset_at"] == err.reset_at.isoformat()
    if kind == ErrorClass.RATE_LIMIT:
        assert err.retry_after == 60.0
    assert len(fake.calls_of("videos.insert")) == 1  # never retried by the client library
    assert fake.videos == []


async def test_quota_exceeded_from_the_api_pins_the_local_bucket(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    quota: QuotaTracker,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account()
    result = await publish(platform, intents, video)
    fake.quota_exhausted = True  # another tool on the same project spent it
    job = InteractionJob("task-1", "youtube", "alpha", result.video_id, "comment", "hi")
    err = await failing(platform.interact(job, Intent("c", {}), intents))
    assert err.kind == ErrorClass.QUOTA
    ok, reset_at = await quota.can_spend("alpha", "youtube", "videos.rate")
    assert not ok and reset_at == err.reset_at
    calls = len(fake.calls)
    like = InteractionJob("task-1", "youtube", "alpha", result.video_id, "like")
    deferred = await failing(platform.interact(like, Intent("l", {}), intents))
    assert (deferred.kind, deferred.code) == (ErrorClass.QUOTA, "quota_exhausted")
    assert len(fake.calls) == calls  # deferred without burning a call


async def test_rate_limit_honours_retry_after(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account()
    fake.fail_next("videos.insert", "rateLimitExceeded", retry_after=17)
    err = await failing(publish(platform, intents, video))
    assert (err.kind, err.retry_after) == (ErrorClass.RATE_LIMIT, 17.0)


async def test_channel_upload_limit_is_quota(
    fake: FakeYouTube,
    accounts: AccountStore,
    quota: QuotaTracker,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
) -> None:
    """The per-channel 24 h cap; with ``upload_limit_retry_after_s`` the deferral is 24 h
    instead of the next Pacific midnight."""
    await add_account()
    fake.upload_limit = 1
    day = 86400.0
    platform = YouTubePlatform(accounts, quota, config_for(fake, upload_limit_retry_after_s=day))
    await publish(platform, intents, video)
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False):
        err = await failing(publish(platform, intents, video, key="task-2:youtube:alpha"))
        assert (err.kind, err.code, err.status) == (ErrorClass.QUOTA, "uploadLimitExceeded", 400)
        assert err.reset_at == dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    assert len(fake.videos) == 1


async def test_timeout_is_transient(
    fake: FakeYouTube,
    accounts: AccountStore,
    quota: QuotaTracker,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account()
    platform = YouTubePlatform(accounts, quota, config_for(fake, http_timeout_s=0.5))
    hold = fake.hold_chunk(2)  # the server stops answering
    try:
        err = await failing(publish(platform, intents, video))
    finally:
        hold.release()
    assert (err.kind, err.code) == (ErrorClass.TRANSIENT, "timeout")
    await asyncio.wait_for(hold.done.wait(), 10)
    result = await publish(platform, intents, video)
    assert result.resumed and fake.videos[0].sha256 == video.sha256


async def test_quota_per_project_is_shared_by_its_accounts(
    fake: FakeYouTube,
    accounts: AccountStore,
    quota: QuotaTracker,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account("alpha", ALPHA)
    await add_account("beta", BETA)
    platform = YouTubePlatform(accounts, quota, config_for(fake, quota_scope="project"))
    await publish(platform, intents, video)
    await publish(platform, intents, video, key="task-1:youtube:beta", account="beta")
    usage = {(u.account, u.bucket): u.used for u in await quota.usage()}
    assert usage[(f"project:{CLIENT_ID}", "uploads")] == 2
    assert ("alpha", "uploads") not in usage


async def test_connection_reset_is_transient(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account()
    fake.reset_next("videos.insert")
    err = await failing(publish(platform, intents, video))
    assert (err.kind, err.code) == (ErrorClass.TRANSIENT, "connection_reset")
    assert len(fake.calls_of("videos.insert")) == 1  # httplib2 did not re-send it
    result = await publish(platform, intents, video)
    assert len(fake.videos) == 1 and result.video_id == fake.videos[0].id


async def test_bad_metadata_is_refused_before_any_call(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account()
    for title in ("", "x" * 101, "a <b> title"):
        err = await failing(publish(platform, intents, video, title=title))
        assert (err.kind, err.code) == (ErrorClass.PERMANENT, "invalidTitle")
    err = await failing(publish(platform, intents, video, description="<script>"))
    assert err.code == "invalidDescription"
    assert fake.calls == []


async def test_unknown_account_and_missing_file_are_permanent(
    platform: YouTubePlatform, intents: RecordingIntents, add_account: AddAccount, video: Video
) -> None:
    err = await failing(publish(platform, intents, video, account="nobody"))
    assert (err.kind, err.code) == (ErrorClass.PERMANENT, "unknown_account")
    await add_account()
    err = await failing(publish(platform, intents, video, video_path="/nonexistent.mp4"))
    assert (err.kind, err.code) == (ErrorClass.PERMANENT, "video_missing")
    err = await failing(publish(platform, intents, video, video_size=video.size + 1))
    assert (err.kind, err.code) == (ErrorClass.PERMANENT, "video_changed")


# -- OAuth tokens -----------------------------------------------------------------------------
async def test_401_refreshes_once_then_succeeds(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    accounts: AccountStore,
    add_account: AddAccount,
    video: Video,
) -> None:
    tokens = await add_account()
    fake.expire_access_tokens()  # the store still believes the token is good for an hour
    result = await publish(platform, intents, video)
    assert len(fake.videos) == 1 and result.video_id == fake.videos[0].id
    assert fake.token_grants == ["refresh_token"]
    assert [c.status for c in fake.calls_of("videos.insert")] == [401, 200]
    creds = await accounts.credentials("youtube", "alpha")
    assert creds.access_token != tokens["access"]
    assert creds.refresh_token == tokens["refresh"]  # the response had none: kept


async def test_401_twice_is_auth(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account()
    fake.fail_next("videos.insert", "authError", times=2)
    err = await failing(publish(platform, intents, video))
    assert (err.kind, err.status) == (ErrorClass.AUTH, 401)
    assert fake.token_grants == ["refresh_token"]  # refreshed once, not in a loop
    assert len(fake.calls_of("videos.insert")) == 2


async def test_401_on_a_chunk_refreshes_and_continues(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account()

    class ExpireAfterFirstChunk(ProgressLog):
        async def __call__(self, done: int, total: int) -> None:
            if not self.calls:
                fake.expire_access_tokens()  # the token dies mid-upload
            await super().__call__(done, total)

    result = await publish(platform, intents, video, progress=ExpireAfterFirstChunk())
    assert not result.resumed and len(fake.videos) == 1
    assert fake.videos[0].sha256 == video.sha256
    assert fake.token_grants == ["refresh_token"]
    chunks = [c.status for c in fake.calls_of("upload.chunk")]
    assert chunks == [308, 401, 308, 308, 308, 200]
    assert len(fake.calls_of("upload.query")) == 1  # then asked where it stood
    assert fake.bytes_received == video.size + CHUNK  # the refused chunk, once


async def test_token_expiring_soon_is_refreshed_before_the_upload(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    accounts: AccountStore,
    add_account: AddAccount,
    video: Video,
) -> None:
    tokens = await add_account(access_ttl=60)  # inside the 300 s margin
    await publish(platform, intents, video)
    assert fake.calls[0].method == "token"
    assert fake.token_grants == ["refresh_token"]
    assert all(c.status != 401 for c in fake.calls)
    creds = await accounts.credentials("youtube", "alpha")
    assert creds.expires_at is not None
    assert creds.expires_at - dt.datetime.now(dt.UTC) > dt.timedelta(minutes=50)
    assert creds.refresh_token == tokens["refresh"]


async def test_rotated_refresh_token_replaces_the_stored_one(
    fake: FakeYouTube, platform: YouTubePlatform, accounts: AccountStore, add_account: AddAccount
) -> None:
    tokens = await add_account()
    fake.rotate_refresh_tokens = True
    await platform.refresh("alpha", force=True)
    creds = await accounts.credentials("youtube", "alpha")
    assert creds.refresh_token and creds.refresh_token != tokens["refresh"]
    await platform.refresh("alpha", force=True)  # the new one works
    assert fake.token_grants == ["refresh_token", "refresh_token"]


async def test_revoked_refresh_token_is_auth_and_other_accounts_keep_working(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    accounts: AccountStore,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account("alpha", ALPHA)
    await add_account("beta", BETA)
    fake.revoke(channel_id=ALPHA)
    err = await failing(publish(platform, intents, video))
    assert (err.kind, err.code) == (ErrorClass.AUTH, "invalid_grant")
    refresh = await failing(platform.refresh("alpha", force=True))
    assert (refresh.kind, refresh.code) == (ErrorClass.AUTH, "invalid_grant")
    assert (await accounts.require("youtube", "alpha")).has_refresh_token  # left for the user

    result = await publish(platform, intents, video, key="task-1:youtube:beta", account="beta")
    assert len(fake.videos) == 1 and fake.videos[0].channel_id == BETA
    assert result.video_id == fake.videos[0].id


async def test_testing_status_app_refresh_token_expires_after_seven_days(
    fake: FakeYouTube, platform: YouTubePlatform, add_account: AddAccount
) -> None:
    fake.refresh_ttl = 7 * 86400
    await add_account()
    assert await platform.refresh("alpha", force=True) is not None
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=8), tick=False):
        err = await failing(platform.refresh("alpha", force=True))
    assert (err.kind, err.code) == (ErrorClass.AUTH, "invalid_grant")


# -- quota ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("now", "reset"),
    [
        # an ordinary day: 12:00 PST -> 00:00 PST = 08:00 UTC
        ("2025-01-15T20:00:00+00:00", "2025-01-16T08:00:00+00:00"),
        # the evening before spring-forward: midnight PST (the 23-hour day starts)
        ("2025-03-09T05:00:00+00:00", "2025-03-09T08:00:00+00:00"),
        # spring-forward day, after 02:00: the next midnight is PDT = 07:00 UTC
        ("2025-03-09T19:00:00+00:00", "2025-03-10T07:00:00+00:00"),
        # fall-back day, 01:30 the first time (PDT): the 25-hour day ends at 00:00 PST
        ("2025-11-02T08:30:00+00:00", "2025-11-03T08:00:00+00:00"),
        # 23:59 PDT the evening before fall-back
        ("2025-11-02T06:59:00+00:00", "2025-11-02T07:00:00+00:00"),
    ],
)
async def test_quota_exhausted_defers_to_the_next_pacific_midnight(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    quota: QuotaTracker,
    add_account: AddAccount,
    video: Video,
    now: str,
    reset: str,
) -> None:
    await add_account()
    with time_machine.travel(dt.datetime.fromisoformat(now), tick=False):
        await quota.spend("alpha", "youtube", "videos.insert", n=100)
        err = await failing(publish(platform, intents, video))
        assert err.kind == ErrorClass.QUOTA and err.code == "quota_exhausted"
        assert err.reset_at == dt.datetime.fromisoformat(reset)
        assert err.reset_at == next_reset(YOUTUBE, dt.datetime.fromisoformat(now))
    assert fake.calls_of("videos.insert") == []  # no call burnt on a certain refusal
    assert fake.videos == []


async def test_quota_day_rolls_over_at_pacific_midnight(quota: QuotaTracker) -> None:
    evening = dt.datetime(2025, 6, 30, 23, 59, tzinfo=PACIFIC)
    with time_machine.travel(evening, tick=False):
        await quota.spend("alpha", "youtube", "commentThreads.insert", n=200)  # 10,000 units
        ok, reset_at = await quota.can_spend("alpha", "youtube", "videos.rate")
        assert not ok and reset_at == dt.datetime(2025, 7, 1, 7, 0, tzinfo=dt.UTC)
        assert (await quota.can_spend("beta", "youtube", "videos.rate"))[0]  # per account
        usage = await quota.usage()
        units = next(u for u in usage if u.account == "alpha" and u.bucket == "units")
        assert (units.used, units.remaining, units.day) == (10_000, 0, "2025-06-30")
    with time_machine.travel(evening + dt.timedelta(minutes=2), tick=False):
        assert await quota.can_spend("alpha", "youtube", "videos.rate") == (True, None)
        assert await quota.usage("alpha") == []  # a new day, nothing used yet


async def test_quota_costs_and_limits_are_configurable(db: SqliteDatabase) -> None:
    policy = YOUTUBE.with_changes(
        limits={"units": 120}, costs={"commentThreads.insert": ("units", 60)}
    )
    tracker = QuotaTracker(db, {"youtube": policy})
    await tracker.ensure()
    await tracker.ensure()  # idempotent
    await tracker.spend("alpha", "youtube", "commentThreads.insert")
    assert (await tracker.can_spend("alpha", "youtube", "commentThreads.insert"))[0]
    await tracker.spend("alpha", "youtube", "commentThreads.insert")
    assert not (await tracker.can_spend("alpha", "youtube", "channels.list"))[0]
    rows = await db.fetchall("SELECT bucket, used, calls FROM quota_usage")
    assert rows == [("units", 120, 2)]


@pytest.mark.mariadb
async def test_quota_tracker_on_mariadb(mysql_url: str) -> None:
    from fabric.store.db import MysqlDatabase

    database = MysqlDatabase(mysql_url)
    await database.start()
    try:
        tracker = QuotaTracker(database)
        await tracker.ensure()
        await tracker.ensure()
        await asyncio.gather(
            *(tracker.spend("alpha", "youtube", "videos.rate") for _ in range(20))
        )  # concurrent increments: none lost
        used = {u.bucket: u.used for u in await tracker.usage("alpha", "youtube")}
        assert used["units"] == 1000
        await tracker.spend("alpha", "youtube", "videos.rate", n=180)
        ok, reset_at = await tracker.can_spend("alpha", "youtube", "videos.rate")
        assert not ok and reset_at == tracker.next_reset("youtube")
        reset = await tracker.exhaust("alpha", "youtube", "videos.insert")
        assert (await tracker.can_spend("alpha", "youtube", "videos.insert")) == (False, reset)
    finally:
        await database.close()


async def test_tracker_agrees_with_the_fake_after_a_full_publish(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    quota: QuotaTracker,
    add_account: AddAccount,
    video: Video,
    tmp_path: Path,
) -> None:
    await add_account()
    thumb = tmp_path / "thumb.jpg"
    thumb.write_bytes(b"\xff\xd8\xff" + os.urandom(20_000))
    result = await publish(
        platform, intents, video, thumbnail_path=str(thumb), playlist_id="PLalpha"
    )
    for kind, text in (("comment", "First!"), ("like", "")):
        job = InteractionJob("task-1", "youtube", "alpha", result.video_id, kind, text)
        await platform.interact(job, Intent(kind, {}), intents)
    used = {u.bucket: u.used for u in await quota.usage("alpha", "youtube")}
    assert used["units"] == 4 * 50 == fake.units_used[CLIENT_ID]["units"]
    assert used["uploads"] == 1 == fake.units_used[CLIENT_ID]["uploads"]


# -- interactions -----------------------------------------------------------------------------
async def test_comment_and_like_are_recorded_and_idempotent(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account()
    result = await publish(platform, intents, video)
    comment = InteractionJob("task-1", "youtube", "alpha", result.video_id, "comment", "Nice!")
    first = await platform.interact(comment, await intents.load("c1"), intents)
    again = await platform.interact(comment, await intents.load("c1"), intents)
    assert first.external_id == fake.comments[0]["id"] and not first.recovered
    assert again.external_id == first.external_id and again.recovered
    assert len(fake.comments) == 1
    top = fake.comments[0]["snippet"]["topLevelComment"]["snippet"]
    assert (top["textOriginal"], top["authorChannelId"]["value"]) == ("Nice!", ALPHA)

    like = InteractionJob("task-1", "youtube", "alpha", result.video_id, "like")
    liked = await platform.interact(like, await intents.load("l1"), intents)
    liked_again = await platform.interact(like, await intents.load("l1"), intents)
    assert fake.ratings == {(ALPHA, result.video_id): "like"}
    assert not liked.recovered and liked_again.recovered
    assert len(fake.calls_of("videos.rate")) == 1
    assert (await intents.load("l1")).state == {"liked": True}


@pytest.mark.parametrize("took_effect", [True, False])
async def test_ambiguous_comment_failure_never_makes_two_comments(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
    took_effect: bool,
) -> None:
    await add_account()
    result = await publish(platform, intents, video)
    # someone else's identical comment and our own other comment must not be matched
    fake.add_comment(result.video_id, BETA, "Nice!")
    fake.add_comment(result.video_id, ALPHA, "Nice! Nice!")
    fake.reset_next("commentThreads.insert", after_effect=took_effect)
    job = InteractionJob("task-1", "youtube", "alpha", result.video_id, "comment", "Nice!")
    err = await failing(platform.interact(job, await intents.load("c1"), intents))
    assert (err.kind, err.code) == (ErrorClass.TRANSIENT, "connection_reset")
    assert len(fake.comments) == (3 if took_effect else 2)  # no hidden re-send either

    redelivered = await platform.interact(job, await intents.load("c1"), intents)

    def ours() -> list[dict[str, Any]]:
        return [
            c
            for c in fake.comments
            if c["snippet"]["topLevelComment"]["snippet"]["textOriginal"] == "Nice!"
            and c["snippet"]["topLevelComment"]["snippet"]["authorChannelId"]["value"] == ALPHA
        ]

    assert len(ours()) == 1 and redelivered.external_id == ours()[0]["id"]
    assert redelivered.recovered is took_effect
    assert len(fake.calls_of("commentThreads.list")) == 1
    third = await platform.interact(job, await intents.load("c1"), intents)
    assert third.external_id == ours()[0]["id"] and len(fake.comments) == 3


async def test_comment_lookup_follows_pages(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account()
    result = await publish(platform, intents, video)
    fake.reset_next("commentThreads.insert", after_effect=True)
    job = InteractionJob("task-1", "youtube", "alpha", result.video_id, "comment", "needle")
    await failing(platform.interact(job, await intents.load("c1"), intents))
    for i in range(150):  # newer comments push ours to the second page
        fake.add_comment(result.video_id, BETA if i % 2 else ALPHA, f"hay {i}")
    found = await platform.interact(job, await intents.load("c1"), intents)
    assert found.recovered and len(fake.calls_of("commentThreads.list")) == 2
    assert found.external_id == fake.comments[0]["id"]
    assert len(fake.comments) == 151


# -- thumbnail, playlist, privacy, updates ------------------------------------------------------
async def test_thumbnail_and_playlist_once(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
    tmp_path: Path,
) -> None:
    await add_account()
    thumb = tmp_path / "thumb.png"
    thumb.write_bytes(b"\x89PNG" + os.urandom(30_000))
    result = await publish(
        platform, intents, video, thumbnail_path=str(thumb), playlist_id="PLalpha"
    )
    assert fake.thumbnails == {result.video_id: thumb.stat().st_size}
    assert len(fake.playlist_items) == 1
    item = fake.playlist_items[0]
    assert item["snippet"]["resourceId"]["videoId"] == result.video_id
    assert result.details["thumbnail"] == "set"
    assert result.details["playlist_item_id"] == item["id"]
    again = await publish(
        platform, intents, video, thumbnail_path=str(thumb), playlist_id="PLalpha"
    )
    assert again.recovered and again.details["playlist_item_id"] == item["id"]
    assert len(fake.calls_of("thumbnails.set")) == 1
    assert len(fake.calls_of("playlistItems.insert")) == 1


async def test_follow_up_failures(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
    tmp_path: Path,
) -> None:
    """A transient thumbnail failure is retried without re-uploading; an unknown playlist
    is a permanent, reported failure that does not fail the published video."""
    await add_account()
    thumb = tmp_path / "thumb.jpg"
    thumb.write_bytes(b"\xff\xd8\xff" + os.urandom(1000))
    fake.fail_next("thumbnails.set", "backendError")
    err = await failing(
        publish(platform, intents, video, thumbnail_path=str(thumb), playlist_id="PLnope")
    )
    assert err.kind == ErrorClass.TRANSIENT and len(fake.videos) == 1
    result = await publish(
        platform, intents, video, thumbnail_path=str(thumb), playlist_id="PLnope"
    )
    assert result.video_id == fake.videos[0].id and fake.bytes_received == video.size
    assert result.details["thumbnail"] == "set"
    assert result.details["playlist_error"]["code"] == "playlistNotFound"
    assert result.details["playlist_error"]["class"] == "permanent"


async def test_unverified_project_forced_private_is_reported_not_retried(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account()
    fake.force_private = True
    result = await publish(platform, intents, video, privacy="public")
    assert result.details["forced_private"] is True
    assert "unverified" in result.details["notice"]
    assert result.details["privacy"] == "private"
    assert len(fake.videos) == 1 and len(fake.calls_of("videos.insert")) == 1


async def test_unverified_project_option_requests_private(
    fake: FakeYouTube,
    accounts: AccountStore,
    quota: QuotaTracker,
    intents: RecordingIntents,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account()
    platform = YouTubePlatform(accounts, quota, config_for(fake, unverified_project=True))
    result = await publish(platform, intents, video, privacy="public")
    assert fake.videos[0].resource["status"]["privacyStatus"] == "private"
    assert "forced_private" not in result.details


async def test_update_video_changes_only_what_is_asked(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    quota: QuotaTracker,
    add_account: AddAccount,
    video: Video,
) -> None:
    await add_account()
    result = await publish(platform, intents, video)
    summary = await platform.update_video("alpha", result.video_id, title="New title")
    assert summary == {
        "video_id": result.video_id,
        "updated": ["snippet"],
        "privacy": "unlisted",
        "forced_private": False,
    }
    snippet = fake.videos[0].resource["snippet"]
    assert snippet["title"] == "New title"
    assert snippet["description"] == "Uploaded by the fabric test-suite"  # kept
    assert snippet["tags"] == ["fabric", "test"]
    await platform.update_video("alpha", result.video_id, privacy="public")
    assert fake.videos[0].resource["status"]["privacyStatus"] == "public"
    assert fake.videos[0].resource["snippet"]["title"] == "New title"
    used = {u.bucket: u.used for u in await quota.usage("alpha", "youtube")}
    assert used["units"] == 2 * (50 + 1)

    fake.force_private = True
    forced = await platform.update_video("alpha", result.video_id, privacy="public")
    assert forced["forced_private"] and "unverified" in forced["notice"]
    err = await failing(platform.update_video("alpha", "nope", title="x"))
    assert (err.kind, err.code) == (ErrorClass.PERMANENT, "videoNotFound")


# -- connecting an account (OAuth) ----------------------------------------------------------
def _follow_consent(url: str) -> str:
    """Play the user in the browser: the fake consents and redirects; return where to."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    try:
        urllib.request.build_opener(NoRedirect).open(url, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 302
        return str(exc.headers["Location"])
    raise AssertionError("the auth endpoint did not redirect")


@pytest.fixture
def client_secrets(fake: FakeYouTube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the fake is plain http
    path = tmp_path / "client_secret.json"
    path.write_text(json.dumps(fake.client_config(CLIENT_ID, CLIENT_SECRET)))
    return path


async def test_headless_account_add(
    fake: FakeYouTube,
    accounts: AccountStore,
    client_secrets: Path,
    platform: YouTubePlatform,
    db: SqliteDatabase,
) -> None:
    fake.consent_channel = BETA
    shown: list[str] = []

    async def paste_back(url: str) -> str:
        shown.append(url)
        return await asyncio.to_thread(_follow_consent, url)

    account = await oauth_add_account(
        accounts,
        "beta",
        client_secrets,
        headless=True,
        prompt=paste_back,
        root_url=fake.root_url,
    )
    assert (account.name, account.external_id, account.has_refresh_token) == ("beta", BETA, True)
    assert account.settings["channel_title"] == "Beta"
    asked = fake.auth_requests[0]
    assert shown[0].startswith(fake.auth_uri)
    assert asked["access_type"] == "offline" and asked["prompt"] == "consent"
    assert set(asked["scope"].split()) == {
        "https://www.googleapis.com/auth/youtube.upload",
        "https://www.googleapis.com/auth/youtube.force-ssl",
    }
    assert asked["code_challenge_method"] == "S256"
    assert asked["redirect_uri"].startswith("http://127.0.0.1:")
    assert fake.token_grants == ["authorization_code"]
    assert fake.calls_of("channels.list")[0].channel_id == BETA

    creds = await accounts.credentials("youtube", "beta")
    rows = await db.fetchall(
        "SELECT client_secret, access_token, refresh_token FROM youtube_channels"
    )
    assert all(v.startswith("v1:") for v in rows[0])  # encrypted at rest
    assert creds.client_secret == CLIENT_SECRET and creds.refresh_token

    # the stored account publishes
    vid = make_video(Path(client_secrets).parent / "v.mp4", CHUNK + 5)
    intents = RecordingIntents(db)
    result = await publish(platform, intents, vid, key="k", account="beta")
    assert fake.video(result.video_id) is not None

    with pytest.raises(AccountError) as info:
        await oauth_add_account(accounts, "beta", client_secrets, headless=True, prompt=paste_back)
    assert info.value.code == "account_exists"


async def test_headless_account_add_refused_consent(
    fake: FakeYouTube, accounts: AccountStore, client_secrets: Path
) -> None:
    async def denied(url: str) -> str:
        return "http://127.0.0.1:8080/?error=access_denied&state=whatever"

    with pytest.raises(AccountError) as info:
        await oauth_add_account(accounts, "x", client_secrets, headless=True, prompt=denied)
    assert info.value.code == "oauth_failed"
    assert await accounts.get("youtube", "x") is None
    assert fake.token_grants == []


async def test_browser_account_add_with_loopback_redirect(
    fake: FakeYouTube, accounts: AccountStore, client_secrets: Path
) -> None:
    """run_local_server on 127.0.0.1 and a random port; a registered ``webbrowser``
    controller plays the user (follows the consent redirect into the local server)."""

    class Browser(webbrowser.BaseBrowser):
        def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
            def user() -> None:
                urllib.request.urlopen(_follow_consent(url), timeout=10).read()

            threading.Thread(target=user, daemon=True).start()
            return True

    webbrowser.register("fabric-test-browser", None, Browser("fabric-test-browser"))
    account = await oauth_add_account(
        accounts, "alpha", client_secrets, browser="fabric-test-browser", root_url=fake.root_url
    )
    assert account.external_id == ALPHA and account.has_refresh_token
    redirect = fake.auth_requests[0]["redirect_uri"]
    assert redirect.startswith("http://127.0.0.1:") and not redirect.endswith(":8080/")


# -- secrets never leak ---------------------------------------------------------------------
class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.lines.append(repr(vars(record)))


async def test_no_token_in_logs_errors_results_or_reprs(
    fake: FakeYouTube,
    platform: YouTubePlatform,
    intents: RecordingIntents,
    accounts: AccountStore,
    add_account: AddAccount,
    client_secrets: Path,
    db: SqliteDatabase,
    video: Video,
) -> None:
    capture = _Capture()
    loggers = [logging.getLogger(), logging.getLogger("google")]  # google-auth may not propagate
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(capture)
        lg.setLevel(logging.DEBUG)
    texts: list[str] = []
    try:
        await add_account("alpha", ALPHA, access_ttl=30)  # refreshed before the upload

        async def paste_back(url: str) -> str:
            return await asyncio.to_thread(_follow_consent, url)

        fake.consent_channel = BETA
        await oauth_add_account(
            accounts,
            "beta",
            client_secrets,
            headless=True,
            prompt=paste_back,
            root_url=fake.root_url,
        )
        fake.fail_chunk(2)
        errors = [await failing(publish(platform, intents, video))]
        result = await publish(platform, intents, video)
        comment = InteractionJob("task-1", "youtube", "alpha", result.video_id, "comment", "Hi")
        texts.append(repr(await platform.interact(comment, Intent("c", {}), intents)))
        fake.fail_next("commentThreads.insert", "authError", times=2)
        errors.append(await failing(platform.interact(comment, Intent("c2", {}), intents)))
        fake.revoke(channel_id=ALPHA)
        errors.append(await failing(platform.refresh("alpha", force=True)))
        texts.append(repr(result))
        for err in errors:
            texts += [str(err), repr(err), json.dumps(err.as_data())]
            texts.append("".join(traceback.format_exception(err)))
        for name in ("alpha", "beta"):
            texts.append(repr(await accounts.credentials("youtube", name)))
            texts.append(repr(await accounts.get("youtube", name)))
        texts.append(repr(platform))
        texts.append(json.dumps(intents.saves))
    finally:
        for lg, level in saved:
            lg.removeHandler(capture)
            lg.setLevel(level)
    raw = b"".join(p.read_bytes() for p in Path(db.path).parent.glob("state.db*"))  # + WAL

    secrets = [*fake.issued_tokens(), CLIENT_SECRET]
    assert len(secrets) >= 6  # issued, refreshed, consented: the check has something to find
    assert any("Making request" in line for line in capture.lines)  # DEBUG really captured
    haystack = "\n".join(capture.lines + texts)
    for secret in secrets:
        assert secret not in haystack
        assert secret.encode() not in raw  # encrypted at rest, never in intents


# -- the child process of the kill -9 test ----------------------------------------------------
if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    asyncio.run(_child_upload(json.loads(sys.argv[2])))
