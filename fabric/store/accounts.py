"""The account store: one place for every platform's accounts and their OAuth tokens.

YouTube channels live in ``youtube_channels`` (the table users of the original system know),
the other platforms (instagram, tiktok, local) in ``accounts``; the API is the same for all.
Client secrets and tokens are AES-GCM encrypted (``fabric.secrets``) and only decrypted into
a ``Credentials`` value whose repr hides them. Token updates are one UPDATE statement, so the
new access/refresh pair replaces the old one atomically, and an empty refresh token (most
refresh responses carry none) never overwrites a good one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

import orjson

from fabric.events import utcnow
from fabric.secrets import Cipher
from fabric.store.db import Database

__all__ = ["Account", "AccountError", "AccountStore", "Credentials"]

SECRET_FIELDS = ("client_secret", "access_token", "refresh_token")


class AccountError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class Account:
    platform: str
    name: str
    external_id: str | None = None
    enabled: bool = True
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    token_expires_at: dt.datetime | None = None
    token_issued_at: dt.datetime | None = None
    has_refresh_token: bool = False

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.name}"


@dataclasses.dataclass(frozen=True)
class Credentials:
    client_id: str | None = None
    client_secret: str | None = dataclasses.field(default=None, repr=False)
    access_token: str | None = dataclasses.field(default=None, repr=False)
    refresh_token: str | None = dataclasses.field(default=None, repr=False)
    expires_at: dt.datetime | None = None
    issued_at: dt.datetime | None = None


def _ts(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


def _parse(value: str | None) -> dt.datetime | None:
    return None if not value else dt.datetime.fromisoformat(value)


class AccountStore:
    def __init__(self, db: Database, cipher: Cipher, ttl: float = 1.0) -> None:
        self.db = db
        self.cipher = cipher
        self.ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, Account | None]] = {}

    # -- where each platform lives -----------------------------------------------------------
    @staticmethod
    def _table(platform: str) -> tuple[str, str, str, tuple[Any, ...]]:
        """(table, external id column, WHERE clause, key params) for a platform."""
        if platform == "youtube":
            return "youtube_channels", "channel_id", "name=?", ()
        return "accounts", "external_id", "platform=? AND name=?", (platform,)

    def _where(self, platform: str, name: str) -> tuple[str, str, str, tuple[Any, ...]]:
        table, ext, where, params = self._table(platform)
        return table, ext, where, (*params, name)

    def _forget(self, platform: str, name: str) -> None:
        self._cache.pop((platform, name), None)

    def _seal(self, platform: str, name: str, field: str, value: str | None) -> str | None:
        return None if value is None else self.cipher.encrypt(value, f"{platform}:{name}:{field}")

    def _open(self, platform: str, name: str, field: str, value: str | None) -> str | None:
        return None if value is None else self.cipher.decrypt(value, f"{platform}:{name}:{field}")

    # -- accounts ------------------------------------------------------------------------------
    async def add(
        self,
        platform: str,
        name: str,
        *,
        external_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        expires_at: dt.datetime | None = None,
        settings: dict[str, Any] | None = None,
        replace: bool = False,
    ) -> Account:
        if not name or ":" in name:
            raise AccountError("bad_account_name", f"account name {name!r} is empty or has ':'")
        if await self.get(platform, name) is not None:
            if not replace:
                raise AccountError("account_exists", f"{platform} account {name!r} exists")
            await self.remove(platform, name)
        table, ext, _, _ = self._table(platform)
        now = utcnow()
        row: dict[str, Any] = {
            "name": name,
            ext: external_id,
            "client_id": client_id,
            "client_secret": self._seal(platform, name, "client_secret", client_secret),
            "access_token": self._seal(platform, name, "access_token", access_token),
            "refresh_token": self._seal(platform, name, "refresh_token", refresh_token),
            "token_expires_at": _ts(expires_at),
            "token_issued_at": now if access_token else None,
            "enabled": 1,
            "settings": orjson.dumps(settings or {}).decode(),
            "created_at": now,
            "updated_at": now,
        }
        if table == "accounts":
            row["platform"] = platform
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        await self.db.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(row.values()))
        self._forget(platform, name)
        account = await self.get(platform, name)
        assert account is not None
        return account

    async def get(self, platform: str, name: str) -> Account | None:
        """The account (no secrets). Cached for ``ttl`` seconds: every publish, validation
        and preparation asks, and a change (disable, settings) applies within the ttl; this
        store's own writes apply at once."""
        now = time.monotonic()
        hit = self._cache.get((platform, name))
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        account = await self._get(platform, name)
        self._cache[(platform, name)] = (now, account)
        return account

    async def _get(self, platform: str, name: str) -> Account | None:
        table, ext, where, params = self._where(platform, name)
        rows = await self.db.fetchall(
            f"SELECT name, {ext}, enabled, settings, token_expires_at, token_issued_at,"
            f" refresh_token FROM {table} WHERE {where}",
            params,
        )
        return self._account(platform, rows[0]) if rows else None

    def _account(self, platform: str, row: tuple[Any, ...]) -> Account:
        name, external, enabled, settings, expires, issued, refresh = row
        return Account(
            platform=platform,
            name=name,
            external_id=external,
            enabled=bool(enabled),
            settings=orjson.loads(settings or "{}"),
            token_expires_at=_parse(expires),
            token_issued_at=_parse(issued),
            has_refresh_token=bool(refresh),
        )

    async def require(self, platform: str, name: str) -> Account:
        account = await self.get(platform, name)
        if account is None:
            raise AccountError("unknown_account", f"no {platform} account named {name!r}")
        if not account.enabled:
            raise AccountError("account_disabled", f"{platform} account {name!r} is disabled")
        return account

    async def list(self, platform: str | None = None) -> list[Account]:
        out = []
        if platform in (None, "youtube"):
            rows = await self.db.fetchall(
                "SELECT name, channel_id, enabled, settings, token_expires_at, token_issued_at,"
                " refresh_token FROM youtube_channels ORDER BY name"
            )
            out += [self._account("youtube", r) for r in rows]
        if platform != "youtube":
            sql = (
                "SELECT platform, name, external_id, enabled, settings, token_expires_at,"
                " token_issued_at, refresh_token FROM accounts"
            )
            params: tuple[Any, ...] = ()
            if platform is not None:
                sql += " WHERE platform=?"
                params = (platform,)
            rows = await self.db.fetchall(sql + " ORDER BY platform, name", params)
            out += [self._account(r[0], r[1:]) for r in rows]
        return out

    async def set_enabled(self, platform: str, name: str, enabled: bool) -> None:
        table, _, where, params = self._where(platform, name)
        n = await self.db.execute(
            f"UPDATE {table} SET enabled=?, updated_at=? WHERE {where}",
            (int(enabled), utcnow(), *params),
        )
        self._forget(platform, name)
        if n == 0 and await self.get(platform, name) is None:
            raise AccountError("unknown_account", f"no {platform} account named {name!r}")

    async def remove(self, platform: str, name: str) -> bool:
        table, _, where, params = self._where(platform, name)
        removed = await self.db.execute(f"DELETE FROM {table} WHERE {where}", params) > 0
        self._forget(platform, name)
        return removed

    async def update_settings(self, platform: str, name: str, **changes: Any) -> Account:
        account = await self.require(platform, name)
        table, _, where, params = self._where(platform, name)
        settings = {**account.settings, **changes}
        await self.db.execute(
            f"UPDATE {table} SET settings=?, updated_at=? WHERE {where}",
            (orjson.dumps(settings).decode(), utcnow(), *params),
        )
        self._forget(platform, name)
        return await self.require(platform, name)

    # -- secrets ---------------------------------------------------------------------------------
    async def credentials(self, platform: str, name: str) -> Credentials:
        table, _, where, params = self._where(platform, name)
        rows = await self.db.fetchall(
            f"SELECT client_id, client_secret, access_token, refresh_token, token_expires_at,"
            f" token_issued_at FROM {table} WHERE {where}",
            params,
        )
        if not rows:
            raise AccountError("unknown_account", f"no {platform} account named {name!r}")
        client_id, secret, access, refresh, expires, issued = rows[0]
        return Credentials(
            client_id=client_id,
            client_secret=self._open(platform, name, "client_secret", secret),
            access_token=self._open(platform, name, "access_token", access),
            refresh_token=self._open(platform, name, "refresh_token", refresh),
            expires_at=_parse(expires),
            issued_at=_parse(issued),
        )

    async def save_tokens(
        self,
        platform: str,
        name: str,
        *,
        access_token: str,
        expires_at: dt.datetime | None,
        refresh_token: str | None = None,
    ) -> None:
        """Store a refreshed pair in one statement. No refresh token in the response (the
        usual case for Google) keeps the stored one; a new one (TikTok rotates them)
        replaces it in the same UPDATE, so there is never a moment with neither."""
        table, _, where, params = self._where(platform, name)
        sets = ["access_token=?", "token_expires_at=?", "token_issued_at=?", "updated_at=?"]
        now = utcnow()
        values: list[Any] = [
            self._seal(platform, name, "access_token", access_token),
            _ts(expires_at),
            now,
            now,
        ]
        if refresh_token:
            sets.append("refresh_token=?")
            values.append(self._seal(platform, name, "refresh_token", refresh_token))
        n = await self.db.execute(
            f"UPDATE {table} SET {', '.join(sets)} WHERE {where}", (*values, *params)
        )
        self._forget(platform, name)
        if n == 0:
            raise AccountError("unknown_account", f"no {platform} account named {name!r}")
