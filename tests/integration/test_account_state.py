"""Account pauses and refresh leases on both SQL dialects (SQLite, MariaDB): a pause holds
until the account's token changes; a lease keeps a second refresher off an account until
it is released or expires."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import time_machine

from fabric.secrets import Cipher
from fabric.store.account_state import AccountPauses, RefreshLeases, issued_marker
from fabric.store.accounts import AccountStore
from fabric.store.db import MysqlDatabase, SqliteDatabase


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mariadb)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        database: Any = SqliteDatabase(str(tmp_path / "state.db"))
    else:
        database = MysqlDatabase(request.getfixturevalue("mysql_url"))
    await database.start()
    yield database
    await database.close()


async def test_a_pause_holds_until_the_token_changes(db: Any) -> None:
    accounts = AccountStore(db, Cipher(os.urandom(32)), ttl=0)
    await accounts.add("tiktok", "me", access_token="a1", refresh_token="r1")
    await accounts.add("tiktok", "other", access_token="a2", refresh_token="r2")
    pauses = AccountPauses(db, accounts)
    issued = issued_marker(await accounts.get("tiktok", "me"))
    await db.run([pauses.pause_op("tiktok", "me", "refresh_token_invalid", "refused", issued)])

    pause = await pauses.check("tiktok", "me")
    assert pause is not None and pause.code == "refresh_token_invalid"
    assert pause.error()["class"] == "auth" and pause.error()["code"] == "reauth_required"
    assert await pauses.check("tiktok", "other") is None  # other accounts keep going
    assert [p.key for p in await pauses.list()] == ["tiktok:me"]

    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    with time_machine.travel(later, tick=False):  # a refresh, later than the refused token
        await accounts.save_tokens(
            "tiktok",
            "me",
            access_token="a3",
            refresh_token="r3",
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        )
    assert await pauses.check("tiktok", "me") is None  # refreshed: lifted
    assert await pauses.get("tiktok", "me") is None and await pauses.list() == []


async def test_a_refresh_lease_has_one_holder_at_a_time(db: Any) -> None:
    first, second = RefreshLeases(db, "host-a:1"), RefreshLeases(db, "host-b:2")
    assert await first.acquire("youtube", "main")
    assert await first.acquire("youtube", "main")  # its own lease: renewed
    assert not await second.acquire("youtube", "main")
    assert await second.acquire("youtube", "other")
    await first.release("youtube", "main")
    assert await second.acquire("youtube", "main")
    crashed = RefreshLeases(db, "host-c:3", ttl_s=-1)  # a holder that died: lease expired
    assert await crashed.acquire("tiktok", "me")
    assert await first.acquire("tiktok", "me")
