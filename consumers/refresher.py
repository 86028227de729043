"""refresher: renews OAuth tokens ahead of their expiry, so uploads never start with a token
about to die, and finds dead tokens before an upload does.

A background loop (like the scheduler's clock) looks at every enabled YouTube, Instagram
and TikTok account every ``FABRIC_REFRESH_INTERVAL_S`` (default 60 s) and refreshes the
ones that are due:

* YouTube: the access token (~1 h) expires within ``FABRIC_REFRESH_MARGIN_S`` (default
  600 s) -> ``YouTubePlatform.refresh(force=True)`` (the refresh_token grant; Google sends
  no new refresh token and the store keeps the old one);
* TikTok: the same margin -> ``TikTokPlatform.refresh_token_if_due`` (rotating refresh
  tokens: the adapter stores the new pair in one UPDATE, atomically);
* Instagram: long-lived 60-day tokens -> ``InstagramPlatform.refresh_token_if_due`` with
  the adapter's own margin (``FABRIC_INSTAGRAM_REFRESH_MARGIN``, default 10 days) and its
  24-hour minimum age, which Instagram enforces.

Outcomes are events on ``fabric.accounts`` (keyed by account, never a token):
``account.token_refreshed`` (platform, account, expires_at) or, when the platform refuses
the refresh token for good (``invalid_grant``, revoked, a Testing-status app's 7-day
expiry, Instagram's expired token), ``account.reauth_required``, committed together with
the account's pause (``fabric.store.account_state``) so the publisher defers its uploads.
A paused account is not refreshed again until it is reconnected (its token changes).

One refresh at a time per account: accounts are refreshed one task each, the adapters
serialise refreshes per account in a process, and a short lease in ``refresh_leases``
keeps a second refresher process off the same account (TikTok's rotation would otherwise
let the slower one spend an already-rotated token and wrongly ask for a reconnect). A
refresh that fails for good while the stored token changed under it (someone else
refreshed) is not a reason to ask for a reconnect either. Other accounts keep going when
one fails: each account's refresh is isolated, and transient failures back off per account.

The consumer also reads ``fabric.accounts`` (it accepts no types: the subscription is only
its group membership); its work is the loop, which emits through ``Runtime.transact``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from fabric.events import Event, new_id, utcnow
from fabric.notify.messages import scrub
from fabric.platforms.base import ErrorClass, PlatformError
from fabric.runtime import Consumer, Runtime
from fabric.store.account_state import (
    AccountPauses,
    RefreshLeases,
    issued_marker,
    reconnect_hint,
)
from fabric.store.accounts import Account, AccountError
from fabric.store.db import Unit

if TYPE_CHECKING:
    from fabric.app import App

__all__ = ["Refresher", "consumer"]

log = logging.getLogger("fabric.refresher")

PLATFORMS = ("youtube", "instagram", "tiktok")
INTERVAL_S = 60.0
MARGIN_S = 600.0
CONCURRENCY = 4
BACKOFF_S = (30.0, 900.0)  # transient failures: first wait, longest wait


@dataclasses.dataclass
class _Backoff:
    failures: int = 0
    until: float = 0.0


class Refresher:
    """The loop and one pass over the accounts (``run_once``, also handy for tests)."""

    def __init__(
        self,
        app: App,
        *,
        interval_s: float = INTERVAL_S,
        margin_s: float = MARGIN_S,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.app = app
        self.interval_s = interval_s
        self.margin = dt.timedelta(seconds=margin_s)
        self.pauses = AccountPauses(app.db, app.accounts)
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.leases = RefreshLeases(app.db, owner)
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._busy: set[str] = set()  # accounts being refreshed by this process
        self._backoff: dict[str, _Backoff] = {}
        self._task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()
        self.passes = 0

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, rt: Runtime) -> None:
        self._task = asyncio.create_task(self._loop(rt), name="refresher-loop")

    async def stop(self, rt: Runtime) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self, rt: Runtime) -> None:
        while True:
            try:
                await self.run_once(rt)
            except Exception:
                log.exception("token refresh pass failed; trying again later")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.interval_s)

    # -- one pass ----------------------------------------------------------------------------
    async def run_once(self, rt: Runtime) -> dict[str, str]:
        """Refresh every due account once; returns ``{account_key: outcome}`` where outcome
        is ``refreshed``, ``not_due``, ``reauth_required``, ``paused``, ``busy``,
        ``backing_off`` or ``error``."""
        accounts = [
            a for a in await self.app.accounts.list() if a.enabled and a.platform in PLATFORMS
        ]
        results = await asyncio.gather(*(self._guarded(rt, a) for a in accounts))
        self.passes += 1
        return {a.key: r for a, r in zip(accounts, results, strict=True)}

    async def _guarded(self, rt: Runtime, account: Account) -> str:
        """One account, isolated: whatever happens here never stops the others."""
        key = account.key
        backoff = self._backoff.get(key)
        if backoff is not None and time.monotonic() < backoff.until:
            return "backing_off"
        if key in self._busy:
            return "busy"
        self._busy.add(key)
        try:
            async with self._slots:
                return await self._account(rt, account)
        except Exception:
            log.exception("token refresh crashed", extra={"account": key})
            self._failed(key)
            return "error"
        finally:
            self._busy.discard(key)

    async def _account(self, rt: Runtime, account: Account) -> str:
        if await self.pauses.check(account.platform, account.name) is not None:
            return "paused"  # its refresh token was refused: wait for the reconnect
        if not await self.leases.acquire(account.platform, account.name):
            return "busy"  # another refresher process has it
        try:
            return await self._refresh(rt, account)
        finally:
            await self.leases.release(account.platform, account.name)

    async def _refresh(self, rt: Runtime, account: Account) -> str:
        key = account.key
        before = issued_marker(account)
        try:
            refreshed = await self._call(account)
        except PlatformError as exc:
            if exc.kind != ErrorClass.AUTH:
                self._failed(key)
                log.warning(
                    "token refresh failed; will retry",
                    extra={"account": key, "code": exc.code, "class": str(exc.kind)},
                )
                return "error"
            # read past the account store's short cache: a rotation by another process
            # a moment ago must be seen, or its refresh would look like a revocation
            now = next(
                (
                    a
                    for a in await self.app.accounts.list(account.platform)
                    if a.name == account.name
                ),
                None,
            )
            if now is None:
                return "error"
            if issued_marker(now) != before:  # another process refreshed it meanwhile
                return "refreshed"
            await self._reauth(rt, now, exc)
            return "reauth_required"
        except AccountError as exc:  # removed or disabled under us
            log.info("account vanished during refresh", extra={"account": key, "code": exc.code})
            return "error"
        self._backoff.pop(key, None)
        if not refreshed:
            return "not_due"
        current = await self.app.accounts.get(account.platform, account.name)
        expires = current.token_expires_at if current is not None else None
        event = self._event(
            "account.token_refreshed",
            account,
            {
                "expires_at": expires.astimezone(dt.UTC).isoformat() if expires else None,
            },
        )
        await rt.transact(
            [
                Unit(
                    "refresher",
                    f"refreshed:{key}:{issued_marker(current)}",
                    [],
                    [rt.outbox_row(event)],
                )
            ]
        )
        return "refreshed"

    async def _call(self, account: Account) -> bool:
        """Refresh when due; True when a new token was stored."""
        platform = self.app.platforms.get(account.platform)
        name = account.name
        if account.platform == "youtube":
            expires = account.token_expires_at
            now = dt.datetime.now(dt.UTC)
            if expires is not None and expires - now > self.margin:
                return False
            await platform.refresh(name, force=True)  # type: ignore[attr-defined]
            return True
        if account.platform == "tiktok":
            done: bool = await platform.refresh_token_if_due(  # type: ignore[attr-defined]
                name, margin=self.margin
            )
            return done
        done = await platform.refresh_token_if_due(name)  # type: ignore[attr-defined]
        return done

    async def _reauth(self, rt: Runtime, account: Account, exc: PlatformError) -> None:
        issued = issued_marker(account)
        message = scrub(exc.message)
        log.warning(
            "account needs reconnecting: paused", extra={"account": account.key, "code": exc.code}
        )
        event = self._event(
            "account.reauth_required",
            account,
            {
                "code": exc.code,
                "message": message,
                "detected_by": "refresher",
                "task_id": None,
                "hint": reconnect_hint(account.platform, account.name),
            },
        )
        op = self.pauses.pause_op(account.platform, account.name, exc.code, message, issued)
        # the inbox key makes it once per refused token, even with two refresher processes
        await rt.transact(
            [Unit("refresher", f"reauth:{account.key}:{issued}", [op], [rt.outbox_row(event)])]
        )

    @staticmethod
    def _event(kind: str, account: Account, data: dict[str, Any]) -> Event:
        body = {
            "platform": account.platform,
            "account": account.name,
            "account_key": account.key,
            **data,
        }
        ident = new_id()
        return Event(
            kind,
            body,
            subject=account.key,
            source="refresher",
            id=ident,
            time=utcnow(),
            correlation_id=ident,
            causation_id=None,
        )

    def _failed(self, key: str) -> None:
        state = self._backoff.setdefault(key, _Backoff())
        state.failures += 1
        first, longest = BACKOFF_S
        wait = min(longest, first * 2 ** (state.failures - 1))
        state.until = time.monotonic() + min(wait, self.interval_s * 2**state.failures)


def consumer(app: App) -> Consumer:
    get = app.settings.get
    refresher = Refresher(
        app,
        interval_s=float(get("FABRIC_REFRESH_INTERVAL_S") or INTERVAL_S),
        margin_s=float(get("FABRIC_REFRESH_MARGIN_S") or MARGIN_S),
        concurrency=int(get("FABRIC_REFRESH_CONCURRENCY") or CONCURRENCY),
    )
    app.runtime.services["refresher"] = refresher
    return Consumer(
        "refresher",
        ["fabric.accounts"],
        _ignore,
        accepts=frozenset(),
        on_start=refresher.start,
        on_stop=refresher.stop,
    )


async def _ignore(event: Event, ctx: Any) -> None:
    """Nothing on ``fabric.accounts`` is for the refresher to handle (see the module doc)."""
