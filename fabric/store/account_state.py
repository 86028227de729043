"""Operational state of accounts beside the account store: pauses and refresh leases.

**Pauses.** When a platform refuses an account's token for good (a revoked or expired
refresh token, ``invalid_grant``, Instagram's code 190...), retrying uploads only burns
attempts: the owner has to reconnect the account. The publisher and the token refresher
then *pause* the account (a row in ``account_pauses``, written in the same transaction as
the ``account.reauth_required`` event) and the publisher defers that account's uploads
instead of attempting them, while other accounts keep going.

The pause remembers the account's ``token_issued_at`` at the moment it was paused. Both
ways of reconnecting change it: ``fabric account add ... --replace`` stores new tokens (a
new row) and a successful refresh stores a new access token. So ``check`` lifts the pause
by itself as soon as the stored token differs from the one that was refused; nothing has
to remember to "unpause", and a reconnect by any process (the CLI, another host) counts.

**Leases.** TikTok rotates refresh tokens: two processes refreshing the same account at
once would each spend the same refresh token, and the loser would see ``invalid_grant``
and wrongly ask for a reconnect. The refresher takes a short lease per account in
``refresh_leases`` (one conditional write, so it works on SQLite and MySQL alike) around
each refresh; within one process the adapters' own locks serialise refreshes as well.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from fabric.events import utcnow
from fabric.store.accounts import Account, AccountStore
from fabric.store.db import Database, Op, insert_ignore, upsert

__all__ = ["AccountPauses", "Pause", "RefreshLeases", "issued_marker", "reconnect_hint"]


def reconnect_hint(platform: str, account: str) -> str:
    """How the owner reconnects an account (shown in notifications; no secret in it)."""
    if platform == "youtube":
        return f"fabric account add youtube {account} --client-secrets FILE --replace"
    return f"fabric account add {platform} {account} --token TOKEN --replace"


def issued_marker(account: Account | None) -> str:
    """What identifies the account's current token: when it was issued ('' when none)."""
    if account is None or account.token_issued_at is None:
        return ""
    return account.token_issued_at.isoformat()


@dataclasses.dataclass(frozen=True)
class Pause:
    """An account waiting to be reconnected, and why (no secrets: a code and a message)."""

    platform: str
    account: str
    code: str
    message: str
    token_issued_at: str
    paused_at: str

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.account}"

    def error(self) -> dict[str, Any]:
        """The classified error carried by events about work held back by this pause."""
        return {
            "class": "auth",
            "code": "reauth_required",
            "message": (
                f"the {self.platform} account {self.account!r} must be reconnected"
                f" ({self.code}); its uploads wait until then"
            ),
        }

    def as_data(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class AccountPauses:
    """``account_pauses``: read by the publisher before every upload, written by the
    publisher and the refresher (as an ``Op`` inside their own transactions)."""

    def __init__(self, db: Database, accounts: AccountStore) -> None:
        self.db = db
        self.accounts = accounts

    def pause_op(
        self, platform: str, account: str, code: str, message: str, token_issued_at: str
    ) -> Op:
        """The statement that pauses an account, for a handler's or loop's transaction."""
        row = {
            "platform": platform,
            "account": account,
            "code": code[:128],
            "message": message[:2000],
            "token_issued_at": token_issued_at,
            "paused_at": utcnow(),
        }
        return upsert(self.db.dialect, "account_pauses", ("platform", "account"), row)

    async def get(self, platform: str, account: str) -> Pause | None:
        """The stored pause, whether or not the account was reconnected since."""
        rows = await self.db.fetchall(
            "SELECT code, message, token_issued_at, paused_at FROM account_pauses"
            " WHERE platform=? AND account=?",
            (platform, account),
        )
        if not rows:
            return None
        code, message, issued, since = rows[0]
        return Pause(platform, account, code, message, issued or "", since)

    async def check(self, platform: str, account: str) -> Pause | None:
        """The pause in force, or None. A pause whose account has a different token now
        (reconnected, or refreshed by anyone) is lifted here and None is returned; so is
        one whose account no longer exists (the caller reports the unknown account)."""
        pause = await self.get(platform, account)
        if pause is None:
            return None
        current = await self.accounts.get(platform, account)
        if current is None or issued_marker(current) != pause.token_issued_at:
            await self.lift(platform, account)
            return None
        return pause

    async def lift(self, platform: str, account: str) -> bool:
        n = await self.db.execute(
            "DELETE FROM account_pauses WHERE platform=? AND account=?", (platform, account)
        )
        return n > 0

    async def list(self) -> list[Pause]:
        """Pauses in force (reconnected accounts are lifted on the way)."""
        rows = await self.db.fetchall(
            "SELECT platform, account FROM account_pauses ORDER BY platform, account"
        )
        out = []
        for platform, account in rows:
            pause = await self.check(platform, account)
            if pause is not None:
                out.append(pause)
        return out


class RefreshLeases:
    """Short per-account leases so only one refresher process refreshes an account at a
    time. ``owner`` names this process; a lease not released (a crash) expires after
    ``ttl_s``."""

    def __init__(self, db: Database, owner: str, ttl_s: float = 120.0) -> None:
        self.db = db
        self.owner = owner
        self.ttl_s = ttl_s

    async def acquire(self, platform: str, account: str) -> bool:
        now = int(time.time() * 1000)
        until = now + int(self.ttl_s * 1000)
        row = {"platform": platform, "account": account, "owner": self.owner, "until_ms": until}
        if await self.db.execute(*insert_ignore(self.db.dialect, "refresh_leases", row)) > 0:
            return True
        taken = await self.db.execute(
            "UPDATE refresh_leases SET owner=?, until_ms=? WHERE platform=? AND account=?"
            " AND (until_ms<? OR owner=?)",
            (self.owner, until, platform, account, now, self.owner),
        )
        return taken > 0

    async def release(self, platform: str, account: str) -> None:
        await self.db.execute(
            "UPDATE refresh_leases SET until_ms=0 WHERE platform=? AND account=? AND owner=?",
            (platform, account, self.owner),
        )
