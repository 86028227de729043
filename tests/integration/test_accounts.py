"""Tokens and accounts in the running system (issue 6): the refresher renews a token that
expires soon before the upload needs it; a revoked refresh token pauses that account (its
uploads are deferred, not attempted, and its owner is told once) while another account
publishes; reconnecting the account resumes its uploads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from consumers import DEFAULT
from fabric.timeutil import parse
from tests.integration.conftest import (
    CHAT,
    TT_OPEN_ID,
    YT_BETA,
    World,
    events_of,
    submit,
    wait_for,
)


async def test_refresh_before_upload_and_a_revoked_account_paused_until_reconnected(
    harness: Any, world: World, vertical_video: Path
) -> None:
    env = world.env(FABRIC_NOTIFY_TELEGRAM_CHAT=CHAT, FABRIC_REFRESH_MARGIN_S="600")
    async with harness(env=env) as h:
        app = h.app
        await world.add_youtube(app, "alpha", access_ttl=60)  # expires within the margin
        await world.add_youtube(app, "beta", YT_BETA)
        world.youtube.revoke(channel_id=YT_BETA)  # the owner revoked the app's access
        world.youtube.expire_access_tokens(YT_BETA)
        await app.accounts.save_tokens(
            "youtube", "beta", access_token="expired", expires_at=dt.datetime.now(dt.UTC)
        )

        refreshed = await wait_for(
            lambda: events_of(app, "account.token_refreshed", "fabric.accounts"), what="refresh"
        )
        reauth = await wait_for(
            lambda: events_of(app, "account.reauth_required", "fabric.accounts"), what="reauth"
        )
        assert [e["data"]["account"] for e in refreshed] == ["alpha"]
        assert parse(refreshed[0]["data"]["expires_at"]) > dt.datetime.now(dt.UTC) + dt.timedelta(
            minutes=50
        )
        assert world.youtube.token_grants == ["refresh_token", "refresh_token"]  # alpha, beta
        (notice,) = reauth
        assert notice["data"]["account_key"] == "youtube:beta"
        assert notice["data"]["code"] == "invalid_grant"
        assert notice["data"]["detected_by"] == "refresher"
        message = await wait_for(
            lambda: [m for m in world.telegram.messages if "Reconnect" in m["text"]],
            what="reauth notice",
        )
        assert message[0]["chat"]["id"] == CHAT and "beta" in message[0]["text"]

        task_a = await submit(app, vertical_video, [("youtube", "alpha")], title="For alpha")
        task_b = await submit(app, vertical_video, [("youtube", "beta")], title="For beta")
        assert (await h.wait([task_a], timeout=20))[task_a] == "completed"
        await wait_for(lambda: _deferred_twice(app, task_b), what="beta re-checked, deferred")
        waits = await events_of(app, "task.deferred", subject=task_b)
        assert waits and {w["data"]["error"]["code"] for w in waits} == {"reauth_required"}
        # it waits, re-checked every FABRIC_REAUTH_RECHECK_S: deferred, or being re-checked
        assert (await h.row(task_b))["state"] in ("deferred", "publishing")
        # alpha published with the token the refresher got: no refresh during the upload
        assert world.youtube.token_grants == ["refresh_token", "refresh_token"]
        started = (await events_of(app, "publish.started", subject=task_a))[0]
        assert refreshed[0]["time"] < started["time"]
        # beta: nothing attempted, no attempt burnt, one notice only
        assert [c.channel_id for c in world.youtube.calls_of("videos.insert")] == [
            "UCalpha000000000000000001"
        ]
        assert await events_of(app, "publish.failed", subject=task_b) == []
        assert (await h.row(task_b))["retry_count"] == 0
        assert len(await events_of(app, "account.reauth_required", "fabric.accounts")) == 1
        deferred = await events_of(app, "publish.deferred", subject=task_b)
        assert {d["data"]["error"]["code"] for d in deferred} == {"reauth_required"}
        status = await _status(app)
        assert [p["account"] for p in status["paused_accounts"]] == ["beta"]

        # the owner reconnects beta (account add --replace): its upload goes ahead
        await world.add_youtube(app, "beta", YT_BETA, replace=True)
        assert (await h.wait([task_b], timeout=20))[task_b] == "completed"
        assert sorted(c.channel_id or "" for c in world.youtube.calls_of("videos.insert")) == [
            "UCalpha000000000000000001",
            YT_BETA,
        ]
        assert (await _status(app))["paused_accounts"] == []
        quiet = [m for m in world.telegram.messages if "Reconnect" in m["text"]]
        assert len(quiet) == 1  # told once, not at every re-check
        assert not [m for m in world.telegram.messages if "Deferred" in m["text"]]


async def _deferred_twice(app: Any, task: str) -> bool:
    return len(await events_of(app, "publish.deferred", subject=task)) >= 2


async def _status(app: Any) -> dict[str, Any]:
    from fabric.tasks_api import status

    return await status(app)


async def test_publisher_pauses_an_account_whose_token_is_refused_during_upload(
    harness: Any, world: World, vertical_video: Path
) -> None:
    """TikTok's rotating refresh token was spent elsewhere: the upload's refresh gets
    invalid_grant -> reauth_required from the publisher, the task waits (deferred)."""
    no_refresher = tuple(c for c in DEFAULT if c != "refresher")  # the upload finds it
    async with harness(
        env=world.env(FABRIC_NOTIFY_TELEGRAM_CHAT=CHAT), consumers=no_refresher
    ) as h:
        app = h.app
        await world.add_tiktok(app, expires_in=dt.timedelta(seconds=5))  # due at upload
        world.tiktok.refresh.clear()  # the refresh token no longer works
        await world.add_instagram(app)
        task = await submit(
            app, vertical_video, [("tiktok", "tt-me"), ("instagram", "ig-brand")], privacy="public"
        )
        reauth = await wait_for(
            lambda: events_of(app, "account.reauth_required", "fabric.accounts"), what="reauth"
        )
        await wait_for(
            lambda: events_of(app, "publish.completed", subject=task), what="instagram published"
        )
        await wait_for(lambda: _deferred_twice(app, task), what="tiktok deferred")
        assert reauth[0]["data"]["detected_by"] == "publisher"
        assert reauth[0]["data"]["task_id"] == task
        assert reauth[0]["data"]["code"] == "refresh_token_invalid"
        assert (await h.row(task))["state"] in ("deferred", "publishing")
        waits = await events_of(app, "task.deferred", subject=task)
        assert waits and {w["data"]["error"]["class"] for w in waits} == {"auth"}
        assert world.tiktok.inits == 0 and world.graph.media_published == 1
        await wait_for(
            lambda: [m for m in world.telegram.messages if "Reconnect" in m["text"]],
            what="reauth notice",
        )
    assert TT_OPEN_ID in world.tiktok.creators
