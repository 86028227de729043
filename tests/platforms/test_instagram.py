"""InstagramPlatform against the fake Graph API: real aiohttp, real SQLite intents and accounts.

No test waits on real time: the adapter's ``sleep`` records the delays it asks for, and its
``clock`` is moved by hand for token age.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fabric.platforms.base import ErrorClass, InteractionJob, Platform, PlatformError, PublishJob
from fabric.platforms.instagram import (
    InstagramConfig,
    InstagramPlatform,
    classify_graph_error,
    parse_usage,
    reel_caption,
)
from fabric.secrets import Cipher
from fabric.store.accounts import AccountStore
from fabric.store.db import SqliteDatabase
from fabric.store.intents import DbIntentStore
from fabric.testing.fake_graph import FakeGraph, graph_error

IG_USER = "17841400000000042"
TOKEN = "IGQVJ-long-lived-secret-token-0123456789"
ACCOUNT = "brand"


class Sleeper:
    """Records requested delays instead of sleeping; can park on a chosen call."""

    def __init__(self, park_on: int | None = None) -> None:
        self.waits: list[float] = []
        self.park_on = park_on
        self.parked = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.park_on is not None and len(self.waits) >= self.park_on:
            self.parked.set()
            await asyncio.Event().wait()  # until cancelled: the "crash"
        await asyncio.sleep(0)


class Progress:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    async def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(str(tmp_path / "state.db"))
    await database.start()
    yield database
    await database.close()


@pytest.fixture
async def accounts(db: SqliteDatabase) -> AccountStore:
    store = AccountStore(db, Cipher(os.urandom(32)))
    await store.add(
        "instagram",
        ACCOUNT,
        external_id=IG_USER,
        access_token=TOKEN,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=50),
    )
    return store


@pytest.fixture
def intents(db: SqliteDatabase) -> DbIntentStore:
    return DbIntentStore(db)


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    fake = FakeGraph(in_progress_polls=3)
    fake.add_account(IG_USER, TOKEN, username="brand.reels")
    async with fake:
        yield fake


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(os.urandom(300_000))
    return path


def adapter(
    accounts: AccountStore, graph: FakeGraph, sleep: Sleeper, **config: Any
) -> InstagramPlatform:
    settings: dict[str, Any] = {
        "graph_url": graph.base_url,
        "poll_initial_s": 1.0,
        "poll_factor": 1.5,
        "poll_max_s": 10.0,
        **config,
    }
    return InstagramPlatform(accounts, InstagramConfig(**settings), sleep=sleep)


def job(video: Path, **over: Any) -> PublishJob:
    values: dict[str, Any] = {
        "task_id": "t1",
        "platform": "instagram",
        "account": ACCOUNT,
        "video_path": str(video),
        "video_sha256": "0" * 64,
        "video_size": video.stat().st_size,
        "title": "Morning run",
        "description": "Five kilometres by the river",
        "tags": ("running", "#river"),
        **over,
    }
    return PublishJob(**values)


async def test_reel_published_after_in_progress_polls(
    accounts: AccountStore, intents: DbIntentStore, graph: FakeGraph, video: Path
) -> None:
    sleep, progress = Sleeper(), Progress()
    ig = adapter(accounts, graph, sleep)
    assert isinstance(ig, Platform)
    intent = await intents.load("t1:instagram:brand")
    result = await ig.publish(job(video), intent, intents, progress)
    await ig.close()

    size = video.stat().st_size
    assert graph.containers_created == 1
    assert graph.media_published == 1
    assert graph.status_polls == 4  # three IN_PROGRESS, then FINISHED
    assert sleep.waits == [1.0, 1.5, 2.25]  # backoff between the polls
    assert graph.bytes_received == size
    assert graph.upload_headers == [
        {"offset": "0", "file_size": str(size), "Content-Length": str(size)}
    ]
    container = next(iter(graph.containers.values()))
    assert container.caption == "Morning run\n\nFive kilometres by the river\n\n#running #river"
    assert result.video_id in graph.media
    assert result.url == graph.media[result.video_id]["permalink"]
    assert result.upload_id == container.id
    assert (result.recovered, result.resumed, result.bytes_sent) == (False, False, size)
    assert progress.calls[-1] == (size, size)
    stored = await intents.load("t1:instagram:brand")
    assert stored.state["media_id"] == result.video_id
    assert stored.state["container_id"] == container.id


async def test_video_url_mode_sends_no_bytes(
    accounts: AccountStore, intents: DbIntentStore, graph: FakeGraph, video: Path
) -> None:
    ig = adapter(accounts, graph, Sleeper(), public_base_url="https://cdn.example.com/v/")
    result = await ig.publish(job(video), await intents.load("k"), intents, Progress())
    await ig.close()
    container = next(iter(graph.containers.values()))
    assert container.mode == "video_url"
    assert container.video_url == "https://cdn.example.com/v/clip.mp4"
    assert graph.bytes_received == 0
    assert result.bytes_sent == 0 and result.video_id in graph.media


async def test_crash_during_polling_resumes_the_same_container(
    accounts: AccountStore, intents: DbIntentStore, graph: FakeGraph, video: Path
) -> None:
    parker = Sleeper(park_on=2)  # parks inside the second wait between polls
    first = adapter(accounts, graph, parker)
    intent = await intents.load("t1:instagram:brand")
    task = asyncio.create_task(first.publish(job(video), intent, intents, Progress()))
    await asyncio.wait_for(parker.parked.wait(), 10)
    task.cancel()  # the process dies while polling
    with pytest.raises(asyncio.CancelledError):
        await task
    await first.close()
    persisted = await intents.load("t1:instagram:brand")
    assert persisted.state["container_id"] in graph.containers
    assert graph.media_published == 0

    second = adapter(accounts, graph, Sleeper())  # a new process, same intent store
    result = await second.publish(job(video), persisted, intents, Progress())
    await second.close()
    assert graph.containers_created == 1  # the same container, not a second one
    assert graph.bytes_received == video.stat().st_size  # and the bytes went up once
    assert graph.media_published == 1
    assert result.resumed is True
    assert result.upload_id == persisted.state["container_id"]


async def test_recorded_media_is_returned_as_recovered(
    accounts: AccountStore, intents: DbIntentStore, graph: FakeGraph, video: Path
) -> None:
    ig = adapter(accounts, graph, Sleeper())
    first = await ig.publish(job(video), await intents.load("k"), intents, Progress())
    calls = len(graph.calls)
    again = await ig.publish(job(video, attempt=2), await intents.load("k"), intents, Progress())
    await ig.close()
    assert again.recovered is True
    assert (again.video_id, again.url) == (first.video_id, first.url)
    assert len(graph.calls) == calls  # nothing asked of Instagram
    assert graph.media_published == 1


async def test_crash_after_media_publish_is_recovered_by_caption(
    accounts: AccountStore, intents: DbIntentStore, graph: FakeGraph, video: Path
) -> None:
    ig = adapter(accounts, graph, Sleeper())
    first = await ig.publish(job(video), await intents.load("k"), intents, Progress())
    # as if the process died between media_publish and saving the media id
    intent = await intents.load("k")
    del intent.state["media_id"]
    intent.state["permalink"] = None
    await intents.save(intent)

    again = await ig.publish(job(video), await intents.load("k"), intents, Progress())
    await ig.close()
    assert again.recovered is True
    assert again.video_id == first.video_id
    assert graph.media_published == 1  # never published twice


async def test_publishing_limit_reached_defers_with_reset_time(
    accounts: AccountStore, intents: DbIntentStore, video: Path
) -> None:
    fake = FakeGraph(quota_total=7)  # not Instagram's usual number: read, not assumed
    fake.add_account(IG_USER, TOKEN)
    fake.quota_used[IG_USER] = 7
    now = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    async with fake:
        ig = InstagramPlatform(
            accounts,
            InstagramConfig(graph_url=fake.base_url),
            sleep=Sleeper(),
            clock=lambda: now,
        )
        with pytest.raises(PlatformError) as err:
            await ig.publish(job(video), await intents.load("k"), intents, Progress())
        await ig.close()
    assert err.value.kind is ErrorClass.QUOTA
    assert err.value.code == "publishing_limit_reached"
    assert err.value.reset_at == now + dt.timedelta(seconds=86400)
    assert "7 of its 7" in err.value.message
    assert fake.containers_created == 0


async def test_expired_container_is_recreated_once(
    accounts: AccountStore, intents: DbIntentStore, graph: FakeGraph, video: Path
) -> None:
    graph.set_outcomes("EXPIRED")  # the first container expires, the second finishes
    ig = adapter(accounts, graph, Sleeper())
    result = await ig.publish(job(video), await intents.load("k"), intents, Progress())
    await ig.close()
    assert graph.containers_created == 2
    assert graph.media_published == 1
    assert graph.bytes_received == 2 * video.stat().st_size  # each container got the bytes
    assert result.details["containers_created"] == 2
    assert graph.media[result.video_id]["container"] == result.upload_id


async def test_error_container_twice_fails_with_instagrams_message(
    accounts: AccountStore, intents: DbIntentStore, graph: FakeGraph, video: Path
) -> None:
    message = "Error: Media upload has failed with error code 2207026"
    graph.set_outcomes("ERROR", "ERROR", message=message)
    ig = adapter(accounts, graph, Sleeper())
    with pytest.raises(PlatformError) as err:
        await ig.publish(job(video), await intents.load("k"), intents, Progress())
    await ig.close()
    assert err.value.kind is ErrorClass.PERMANENT
    assert err.value.code == "container_error"
    assert err.value.message == message
    assert graph.containers_created == 2
    assert graph.media_published == 0
    stored = (await intents.load("k")).state
    assert stored["container_id"] is None and stored["containers_created"] == 0  # retry: afresh
    assert stored["last_error"] == message


@pytest.mark.parametrize(
    ("endpoint", "body", "status", "kind", "code"),
    [
        (
            "limit",
            graph_error("Error validating access token", 190, 463),
            400,
            ErrorClass.AUTH,
            "graph_190_463",
        ),
        (
            "limit",
            graph_error("(#4) Application request limit reached", 4, is_transient=True),
            400,
            ErrorClass.RATE_LIMIT,
            "graph_4",
        ),
        (
            "create",
            graph_error("Calls to this api have exceeded the rate limit.", 613),
            400,
            ErrorClass.RATE_LIMIT,
            "graph_613",
        ),
        (
            "create",
            graph_error("The video format is not supported", 352, 2207026),
            400,
            ErrorClass.PERMANENT,
            "graph_352_2207026",
        ),
        (
            "create",
            graph_error("Invalid parameter", 100, 2207028, type_="IGApiException"),
            400,
            ErrorClass.PERMANENT,
            "graph_100_2207028",
        ),
        (
            "publish",
            graph_error("You have reached the maximum number of posts", 9, 2207042),
            400,
            ErrorClass.QUOTA,
            "graph_9_2207042",
        ),
        (
            "limit",
            graph_error("An unexpected error has occurred.", 2, is_transient=True),
            500,
            ErrorClass.TRANSIENT,
            "graph_2",
        ),
    ],
)
async def test_graph_errors_map_to_error_classes(
    accounts: AccountStore,
    intents: DbIntentStore,
    graph: FakeGraph,
    video: Path,
    endpoint: str,
    body: dict[str, Any],
    status: int,
    kind: ErrorClass,
    code: str,
) -> None:
    graph.fail_next(endpoint, body, status)
    ig = adapter(accounts, graph, Sleeper(), rate_limit_retry_s=123.0)
    with pytest.raises(PlatformError) as err:
        await ig.publish(job(video), await intents.load("k"), intents, Progress())
    await ig.close()
    assert (err.value.kind, err.value.code) == (kind, code)
    assert body["error"]["message"] in err.value.message
    assert body["error"]["fbtrace_id"] in err.value.message  # for Instagram support
    if kind is ErrorClass.RATE_LIMIT:
        assert err.value.retry_after == 123.0
    if kind is ErrorClass.QUOTA:
        assert err.value.reset_at is not None
    assert graph.media_published == 0


def test_rate_limit_codes_17_and_32_and_server_errors() -> None:
    for code in (4, 17, 32, 613):
        assert (
            classify_graph_error(400, {"code": code, "message": "x"}).kind is ErrorClass.RATE_LIMIT
        )
    assert classify_graph_error(503, {"message": "down"}).kind is ErrorClass.TRANSIENT
    assert classify_graph_error(400, {"code": 9007, "message": "x"}).code == "media_not_ready"


async def test_media_not_ready_keeps_polling(
    accounts: AccountStore, intents: DbIntentStore, graph: FakeGraph, video: Path
) -> None:
    not_ready = graph_error("Media ID is not available", 9007, 2207027)
    graph.fail_next("status", not_ready, 400, times=2)  # while polling
    graph.fail_next("publish", not_ready, 400)  # and once at media_publish
    ig = adapter(accounts, graph, Sleeper())
    result = await ig.publish(job(video), await intents.load("k"), intents, Progress())
    await ig.close()
    assert result.video_id in graph.media
    assert graph.media_published == 1
    assert graph.containers_created == 1


async def test_high_usage_slows_down_before_the_limit(
    accounts: AccountStore, intents: DbIntentStore, graph: FakeGraph, video: Path
) -> None:
    graph.usage_pct = 90  # X-App-Usage / X-Business-Use-Case-Usage report 90 %
    sleep = Sleeper()
    ig = adapter(accounts, graph, sleep, usage_threshold_pct=75.0, usage_max_delay_s=100.0)
    await ig.publish(job(video), await intents.load("k"), intents, Progress())
    usage = ig.usage(ACCOUNT)
    assert usage is not None and usage.percent == 90
    slowdowns = [w for w in sleep.waits if w == pytest.approx(60.0)]  # 100 s x (90-75)/25
    assert len(slowdowns) == len(graph.calls) - 1  # before every call after the first

    # at 100 % with a regain estimate, the adapter stops calling and says when to come back
    graph.usage_pct, graph.regain_minutes = 100, 10
    other = adapter(accounts, graph, Sleeper())
    with pytest.raises(PlatformError) as err:
        await other.publish(job(video), await intents.load("k2"), intents, Progress())
    await ig.close()
    await other.close()
    assert err.value.kind is ErrorClass.RATE_LIMIT
    assert err.value.code == "app_usage_exhausted"
    assert err.value.retry_after == pytest.approx(600, abs=5)
    assert graph.containers_created == 1  # the limit read went out; the container did not


def test_parse_usage_reads_both_headers() -> None:
    usage = parse_usage(
        {
            "X-App-Usage": '{"call_count": 12, "total_time": 30, "total_cputime": 5}',
            "X-Business-Use-Case-Usage": '{"178": [{"type": "instagram", "call_count": 81,'
            ' "total_time": 2, "total_cputime": 1, "estimated_time_to_regain_access": 3}]}',
        }
    )
    assert usage is not None
    assert usage.percent == 81 and usage.regain_s == 180
    assert parse_usage({}) is None


async def test_comment_is_posted_once_across_redelivery(
    accounts: AccountStore, intents: DbIntentStore, graph: FakeGraph, video: Path
) -> None:
    ig = adapter(accounts, graph, Sleeper())
    published = await ig.publish(job(video), await intents.load("k"), intents, Progress())
    comment = InteractionJob(
        task_id="t1",
        platform="instagram",
        account=ACCOUNT,
        video_id=published.video_id,
        kind="comment",
        content="Thanks for watching! 🏃",
        interaction_id="t1:comment:1",
    )
    first = await ig.interact(comment, await intents.load("c1"), intents)
    again = await ig.interact(comment, await intents.load("c1"), intents)
    assert again.recovered is True and again.external_id == first.external_id
    assert graph.comments_posted == 1

    # a crash after the POST but before the id was saved: found, not posted again
    lost = await intents.load("c1")
    del lost.state["comment_id"]
    await intents.save(lost)
    found = await ig.interact(comment, await intents.load("c1"), intents)
    assert found.recovered is True and found.external_id == first.external_id
    assert graph.comments_posted == 1
    assert graph.comments[published.video_id][0]["text"] == "Thanks for watching! 🏃"

    like = InteractionJob("t1", "instagram", ACCOUNT, published.video_id, "like")
    with pytest.raises(PlatformError) as err:
        await ig.interact(like, await intents.load("l1"), intents)
    await ig.close()
    assert (err.value.kind, err.value.code) == (ErrorClass.PERMANENT, "unsupported_interaction")


async def test_refresh_token_only_when_due(accounts: AccountStore, graph: FakeGraph) -> None:
    issued = (await accounts.credentials("instagram", ACCOUNT)).issued_at
    assert issued is not None
    at = {"now": issued + dt.timedelta(hours=2)}
    ig = InstagramPlatform(
        accounts,
        InstagramConfig(graph_url=graph.base_url, refresh_margin=dt.timedelta(days=10)),
        sleep=Sleeper(),
        clock=lambda: at["now"],
    )
    assert await ig.refresh_token_if_due(ACCOUNT) is False  # under 24 h old
    at["now"] = issued + dt.timedelta(days=20)
    assert await ig.refresh_token_if_due(ACCOUNT) is False  # 30 days left: not yet
    assert graph.refreshes == 0

    at["now"] = issued + dt.timedelta(days=45)  # 5 days left, inside the 10-day margin
    assert await ig.refresh_token_if_due(ACCOUNT) is True
    creds = await accounts.credentials("instagram", ACCOUNT)
    assert graph.refreshes == 1
    assert creds.access_token != TOKEN and creds.access_token in graph.tokens
    assert creds.expires_at == at["now"] + dt.timedelta(seconds=5184000)

    await accounts.save_tokens(
        "instagram", ACCOUNT, access_token=TOKEN, expires_at=at["now"] - dt.timedelta(hours=1)
    )
    with pytest.raises(PlatformError) as err:
        await ig.refresh_token_if_due(ACCOUNT)
    await ig.close()
    assert (err.value.kind, err.value.code) == (ErrorClass.AUTH, "token_expired")


async def test_no_token_in_logs_errors_or_results(
    accounts: AccountStore,
    intents: DbIntentStore,
    graph: FakeGraph,
    video: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ig = adapter(accounts, graph, Sleeper(), refresh_margin=dt.timedelta(days=100))
    result = await ig.publish(job(video), await intents.load("k"), intents, Progress())
    ig._clock = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=2)  # old enough
    assert await ig.refresh_token_if_due(ACCOUNT) is True
    new_token = (await accounts.credentials("instagram", ACCOUNT)).access_token
    assert new_token and new_token != TOKEN
    graph.tokens.clear()  # every token now fails with 190
    errors: list[PlatformError] = []
    for attempt in range(2):
        try:
            await ig.publish(job(video), await intents.load(f"x{attempt}"), intents, Progress())
        except PlatformError as exc:
            errors.append(exc)
    await graph.close()  # and a connection error, whose text aiohttp builds
    try:
        await ig.publish(job(video), await intents.load("down"), intents, Progress())
    except PlatformError as exc:
        errors.append(exc)
    await ig.close()

    assert [e.kind for e in errors] == [ErrorClass.AUTH, ErrorClass.AUTH, ErrorClass.TRANSIENT]
    stored = await intents.load("k")
    texts = [caplog.text, repr(result), str(stored.state), repr(ig.accounts)]
    for e in errors:
        texts += [str(e), repr(e), str(e.as_data())]
    for secret in (TOKEN, new_token):
        for text in texts:
            assert secret not in text


def test_caption_respects_instagram_limits() -> None:
    tags = [f"tag{i}" for i in range(40)] + ["tag1", "two words"]
    caption = reel_caption("Title", "x" * 3000, tags)
    assert len(caption) <= 2200
    assert caption.startswith("Title\n\n")
    assert caption.count("#") == 30  # at most 30 hashtags, duplicates dropped
    assert reel_caption("Only title") == "Only title"


def test_config_from_flat_settings() -> None:
    config = InstagramConfig.from_settings(
        {"graph_url": "http://127.0.0.1:1", "refresh_margin": 86400, "unknown": 1}
    )
    assert config.graph_url == "http://127.0.0.1:1"
    assert config.refresh_margin == dt.timedelta(days=1)
    assert config.public_base_url is None  # resumable upload unless a public URL is configured
