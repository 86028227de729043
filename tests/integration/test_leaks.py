"""No token anywhere (issue 6): after a full multi-platform publish with comments, likes,
token refreshes (one of them rotating TikTok's refresh token), a revoked account and the
notifications, with logging at DEBUG, no access token, refresh token, client secret or bot
token appears in any event on the log (every topic, from offset 0), any log record, any
database column (the encrypted ones hold AES-GCM ciphertexts, 'v1:...'), or the output of
``fabric account list`` and ``fabric status``. ``status`` also shows the quota per account."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from fabric.logs import JsonFormatter
from tests.conftest import ROOT
from tests.integration.conftest import (
    CHAT,
    YT_BETA,
    World,
    events_of,
    log_events,
    submit,
    wait_for,
)

ENCRYPTED = {("youtube_channels", c) for c in ("client_secret", "access_token", "refresh_token")}
ENCRYPTED |= {("accounts", c) for c in ("client_secret", "access_token", "refresh_token")}


async def cli(env: dict[str, str], *args: str) -> str:
    """``python -m fabric ARGS`` as a user would run it; stdout and stderr together."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fabric",
        *args,
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    return out.decode()


def database_text(path: Path) -> tuple[list[str], int]:
    """Every value of every table as text (encrypted columns checked, not returned), and
    how many encrypted values were seen."""
    texts: list[str] = []
    sealed = 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cur = conn.execute(f"SELECT * FROM {table}")  # table names from sqlite_master
            columns = [d[0] for d in cur.description]
            for row in cur:
                for column, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    if (table, column) in ENCRYPTED:
                        assert str(value).startswith("v1:"), (table, column)
                        sealed += 1
                        continue
                    texts.append(
                        value.decode("latin-1") if isinstance(value, bytes) else str(value)
                    )
    return texts, sealed


async def test_no_token_in_events_logs_database_or_cli_output(
    harness: Any,
    world: World,
    vertical_video: Path,
    caplog: pytest.LogCaptureFixture,
    key: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    env = world.env(
        FABRIC_NOTIFY_TELEGRAM_CHAT=CHAT,
        FABRIC_REFRESH_MARGIN_S="600",
        FABRIC_INSTAGRAM_TOKEN_MIN_AGE="0",  # Instagram refreshes tokens >= 24 h old only
    )
    async with harness(env=env) as h:
        app = h.app
        await world.add_youtube(app, access_ttl=60, notify=["email:owner@example.com"])
        await world.add_youtube(app, "beta", YT_BETA)
        world.youtube.revoke(channel_id=YT_BETA)
        await app.accounts.save_tokens(
            "youtube", "beta", access_token="stale-beta-token", expires_at=dt.datetime.now(dt.UTC)
        )
        world.secrets.append("stale-beta-token")
        await world.add_instagram(app, expires_in=dt.timedelta(days=5))  # within 10 days
        await world.add_tiktok(app, expires_in=dt.timedelta(seconds=60))
        refreshed = await wait_for(lambda: _refreshed(app), what="three refreshes")
        task = await submit(
            app,
            vertical_video,
            [("youtube", "yt-main"), ("instagram", "ig-brand"), ("tiktok", "tt-me")],
            privacy="public",
            comment="First!",
            like=True,
            notify=[{"channel": "telegram", "to": "1001"}],
        )
        assert (await h.wait([task], timeout=25))[task] == "completed"
        posted = await wait_for(lambda: _posted(app, task), what="comments and like")
        await wait_for(lambda: _notified(app), what="notifications")
        events = await log_events_all(app)

    # what happened: the grep below ran over a real, complete run
    assert sorted(e["data"]["platform"] for e in refreshed) == ["instagram", "tiktok", "youtube"]
    assert world.tiktok.refreshes == 1 and world.graph.refreshes == 1
    assert sorted(e["data"]["kind"] for e in posted) == ["comment", "comment", "like"]
    assert world.youtube.comments and world.graph.comments_posted == 1
    secrets = world.all_secrets()
    assert len(secrets) >= 12

    base = {
        "FABRIC_HOME": str(h.settings.home),
        "FABRIC_SECRET_KEY": key,
        "FABRIC_NAMESPACE": h.settings.namespace,
        "FABRIC_LOG_LEVEL": "DEBUG",
    }
    listing = await cli(base, "account", "list")
    report_text = await cli(base, "status")
    report = orjson.loads(await cli({**base, "FABRIC_LOG_LEVEL": "WARNING"}, "status", "--json"))
    assert "yt-main" in listing and "tt-me" in listing

    home = h.settings.home
    state, sealed = database_text(home / "fabric.db")
    log_db, _ = database_text(home / "log.db")
    assert sealed >= 10  # client secrets and tokens of four accounts, all encrypted
    formatter = JsonFormatter()
    records = [formatter.format(r) for r in caplog.records]
    assert len(records) > 50 and any("token refreshed" in r for r in records)
    haystacks = {
        "events": [orjson.dumps(e).decode() for e in events],
        "logs": records,
        "state db": state,
        "log db": log_db,
        "cli": [listing, report_text, orjson.dumps(report).decode()],
    }
    for where, texts in haystacks.items():
        blob = "\n".join(texts)
        leaked = [s[:12] + "..." for s in secrets if s in blob]
        assert not leaked, f"secrets found in {where}: {leaked}"

    # (g) status: quota used and remaining per account, and the paused one
    quota = {(q["account"], q["bucket"]): q for q in report["quota"]}
    units = quota[("yt-main", "units")]
    assert units["used"] >= 100 and units["remaining"] == units["limit"] - units["used"]
    assert quota[("yt-main", "uploads")]["used"] == 1
    assert quota[("beta", "units")]["used"] == 0  # listed before its first call
    assert [p["account"] for p in report["paused_accounts"]] == ["beta"]


async def _refreshed(app: Any) -> list[dict[str, Any]] | None:
    found = await events_of(app, "account.token_refreshed", "fabric.accounts")
    reauth = await events_of(app, "account.reauth_required", "fabric.accounts")
    return found if len(found) >= 3 and reauth else None


async def _posted(app: Any, task: str) -> list[dict[str, Any]] | None:
    found = await events_of(app, "interaction.posted", subject=task)
    return found if len(found) >= 3 else None


async def _notified(app: Any) -> bool:
    sent = await events_of(app, "notification.sent", "fabric.notifications")
    kinds = sorted(e["data"]["kind"] for e in sent)
    return kinds.count("task_published") >= 2 and "account_reauth" in kinds


async def log_events_all(app: Any) -> list[dict[str, Any]]:
    """Every event of every topic, from offset 0."""
    out: list[dict[str, Any]] = []
    prefix = app.runtime.bus.namespace
    for topic in await app.log.topics():
        if topic.startswith(prefix):
            out += await log_events(app, topic[len(prefix) :])
    assert {e["type"] for e in out} >= {
        "task.created",
        "publish.requested",
        "account.token_refreshed",
        "notification.sent",
    }
    return out
