"""Daily API quota, tracked per account and platform, in the platform's own time zone.

Platforms meter calls per day and reset at *their* midnight (YouTube: midnight Pacific time,
which moves against UTC twice a year). A call that must fail for lack of quota still costs
quota on YouTube ("invalid requests cost quota too"), and a failed upload costs an hour of
retries, so adapters ask *before* a metered call (``can_spend``) and defer the work to the
reset instant instead of burning the call; after the call they record what it cost
(``spend``). The platform stays authoritative: when it says the quota is gone although our
count disagrees (another tool shares the project, the count was lost), ``exhaust`` pins the
bucket at its limit until the reset.

Costs live in buckets: YouTube's ``videos.insert`` has its own bucket of 100 calls/day, the
other methods share 10,000 units/day. Everything is configurable through ``QuotaPolicy``.

Usage is one row per (platform, account, day, bucket) in ``quota_usage`` of the state
database (created by the migration ``0006_quota.sql``), incremented by a single upsert, so
several publisher processes may share it. The check-then-spend pair is not a reservation:
two processes can both see the last unit free. That is fine here: the platform then answers
``quotaExceeded`` and the adapter defers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from fabric.events import utcnow
from fabric.store.db import Database

__all__ = [
    "YOUTUBE",
    "QuotaPolicy",
    "QuotaTracker",
    "QuotaUsage",
    "next_reset",
]

UNITS = "units"


@dataclasses.dataclass(frozen=True)
class QuotaPolicy:
    """How one platform meters calls.

    ``limits``: bucket -> daily limit. ``costs``: operation -> (bucket, cost); operations not
    listed cost ``default_cost`` in ``default_bucket`` (YouTube: every read is 1 unit).
    """

    platform: str
    timezone: str
    limits: Mapping[str, int]
    costs: Mapping[str, tuple[str, int]]
    default_bucket: str = UNITS
    default_cost: int = 1

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def cost(self, op: str) -> tuple[str, int]:
        return self.costs.get(op, (self.default_bucket, self.default_cost))

    def with_changes(
        self,
        *,
        limits: Mapping[str, int] | None = None,
        costs: Mapping[str, tuple[str, int]] | None = None,
    ) -> QuotaPolicy:
        """A copy with some limits/costs changed (e.g. a project granted a higher quota)."""
        return dataclasses.replace(
            self,
            limits={**self.limits, **(limits or {})},
            costs={**self.costs, **(costs or {})},
        )


YOUTUBE = QuotaPolicy(
    platform="youtube",
    timezone="America/Los_Angeles",
    limits={UNITS: 10_000, "uploads": 100, "search": 100},
    costs={
        "videos.insert": ("uploads", 1),
        "search.list": ("search", 1),
        "commentThreads.insert": (UNITS, 50),
        "videos.rate": (UNITS, 50),
        "thumbnails.set": (UNITS, 50),
        "playlistItems.insert": (UNITS, 50),
        "videos.update": (UNITS, 50),
        "videos.delete": (UNITS, 50),
    },
)
"""YouTube Data API v3 defaults for a Google Cloud project (see shared/PLATFORMS.md)."""


def next_reset(policy: QuotaPolicy, now: dt.datetime | None = None) -> dt.datetime:
    """The next local midnight of the platform, as an aware UTC datetime.

    Computed on the local calendar, not by adding 24 h: on DST days the Pacific day has 23
    or 25 hours, and midnight itself always exists there (the shifts happen at 02:00).
    """
    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    tz = policy.tz
    tomorrow = now.astimezone(tz).date() + dt.timedelta(days=1)
    return dt.datetime.combine(tomorrow, dt.time(0), tzinfo=tz).astimezone(dt.UTC)


def quota_day(policy: QuotaPolicy, now: dt.datetime) -> str:
    """The platform's calendar day ``now`` falls in (YYYY-MM-DD), the key of a usage row."""
    return now.astimezone(policy.tz).date().isoformat()


@dataclasses.dataclass(frozen=True)
class QuotaUsage:
    platform: str
    account: str
    bucket: str
    day: str
    used: int
    limit: int
    reset_at: dt.datetime

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def as_data(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "account": self.account,
            "bucket": self.bucket,
            "day": self.day,
            "used": self.used,
            "limit": self.limit,
            "remaining": self.remaining,
            "reset_at": self.reset_at.isoformat(),
        }


# ``used = used + ?`` in one statement: concurrent spenders in other processes never lose
# an increment (no read-modify-write in Python).
_ADD = {
    "sqlite": (
        "INSERT INTO quota_usage (platform, account, day, bucket, used, calls, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(platform, account, day, bucket) DO UPDATE"
        " SET used = used + excluded.used, calls = calls + excluded.calls,"
        " updated_at = excluded.updated_at"
    ),
    "mysql": (
        "INSERT INTO quota_usage (platform, account, day, bucket, used, calls, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE"
        " used = used + VALUES(used), calls = calls + VALUES(calls),"
        " updated_at = VALUES(updated_at)"
    ),
}
_PIN = {
    "sqlite": (
        "INSERT INTO quota_usage (platform, account, day, bucket, used, calls, updated_at)"
        " VALUES (?, ?, ?, ?, ?, 0, ?) ON CONFLICT(platform, account, day, bucket) DO UPDATE"
        " SET used = MAX(used, excluded.used), updated_at = excluded.updated_at"
    ),
    "mysql": (
        "INSERT INTO quota_usage (platform, account, day, bucket, used, calls, updated_at)"
        " VALUES (?, ?, ?, ?, ?, 0, ?) ON DUPLICATE KEY UPDATE"
        " used = GREATEST(used, VALUES(used)), updated_at = VALUES(updated_at)"
    ),
}


class QuotaTracker:
    """Per-account, per-platform daily quota in the state database.

    ``clock`` returns the current aware time; tests freeze it with time_machine instead.
    """

    def __init__(
        self,
        db: Database,
        policies: Mapping[str, QuotaPolicy] | None = None,
        *,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.db = db
        self.policies: dict[str, QuotaPolicy] = dict(policies or {"youtube": YOUTUBE})
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._ready = False

    async def ensure(self) -> None:
        """Check once that ``quota_usage`` exists.

        The table is created by the versioned migration ``0006_quota.sql`` when the
        database starts (both dialects), so there is nothing to create here; a database
        that was never started (or migrated) fails now with a clear message instead of at
        the first metered call of an upload.
        """
        if self._ready:
            return
        try:
            await self.db.fetchall("SELECT 1 FROM quota_usage WHERE 1=0")
        except Exception as exc:
            raise RuntimeError(
                "the quota_usage table is missing: start the database (it runs the"
                f" migrations) before using the quota tracker ({type(exc).__name__})"
            ) from None
        self._ready = True

    def policy(self, platform: str) -> QuotaPolicy:
        try:
            return self.policies[platform]
        except KeyError:
            raise KeyError(f"no quota policy for platform {platform!r}") from None

    def next_reset(self, platform: str, now: dt.datetime | None = None) -> dt.datetime:
        return next_reset(self.policy(platform), now or self._clock())

    async def _used(self, platform: str, account: str, day: str, bucket: str) -> int:
        rows = await self.db.fetchall(
            "SELECT used FROM quota_usage WHERE platform=? AND account=? AND day=? AND bucket=?",
            (platform, account, day, bucket),
        )
        return int(rows[0][0]) if rows else 0

    async def can_spend(
        self, account: str, platform: str, op: str, n: int = 1
    ) -> tuple[bool, dt.datetime | None]:
        """May ``n`` calls of ``op`` be made now? ``(True, None)``, or ``(False, reset_at)``
        with the instant the bucket refills (the platform's next midnight, in UTC)."""
        await self.ensure()
        policy = self.policy(platform)
        bucket, cost = policy.cost(op)
        limit = policy.limits.get(bucket)
        if limit is None:  # an unmetered bucket
            return True, None
        now = self._clock()
        used = await self._used(platform, account, quota_day(policy, now), bucket)
        if used + cost * n <= limit:
            return True, None
        return False, next_reset(policy, now)

    async def spend(self, account: str, platform: str, op: str, n: int = 1) -> None:
        """Record ``n`` calls of ``op`` made (successful or not: the platform charged them)."""
        await self.ensure()
        policy = self.policy(platform)
        bucket, cost = policy.cost(op)
        day = quota_day(policy, self._clock())
        await self.db.execute(
            _ADD[self.db.dialect], (platform, account, day, bucket, cost * n, n, utcnow())
        )

    async def exhaust(self, account: str, platform: str, op: str) -> dt.datetime:
        """The platform said the quota of ``op``'s bucket is gone: believe it until the reset.
        Returns the reset instant."""
        await self.ensure()
        policy = self.policy(platform)
        bucket, _ = policy.cost(op)
        now = self._clock()
        limit = policy.limits.get(bucket, 0)
        await self.db.execute(
            _PIN[self.db.dialect],
            (platform, account, quota_day(policy, now), bucket, limit, utcnow()),
        )
        return next_reset(policy, now)

    async def usage(
        self, account: str | None = None, platform: str | None = None
    ) -> list[QuotaUsage]:
        """Today's usage (each platform's own today) for the ``status`` command.

        Every bucket of a platform is listed for each account that used any of them today;
        naming ``account`` and ``platform`` lists that account even when it used nothing.
        """
        await self.ensure()
        now = self._clock()
        out: list[QuotaUsage] = []
        for name, policy in sorted(self.policies.items()):
            if platform is not None and name != platform:
                continue
            day = quota_day(policy, now)
            sql = "SELECT account, bucket, used FROM quota_usage WHERE platform=? AND day=?"
            params: tuple[Any, ...] = (name, day)
            if account is not None:
                sql += " AND account=?"
                params += (account,)
            used: dict[str, dict[str, int]] = {}
            for acct, bucket, n in await self.db.fetchall(sql, params):
                used.setdefault(acct, {})[bucket] = int(n)
            if account is not None and platform is not None:
                used.setdefault(account, {})
            reset = next_reset(policy, now)
            for acct in sorted(used):
                for bucket, limit in sorted(policy.limits.items()):
                    out.append(
                        QuotaUsage(name, acct, bucket, day, used[acct].get(bucket, 0), limit, reset)
                    )
        return out
