"""One small async SQL seam over SQLite (embedded default) and MySQL/MariaDB (aiomysql).

Code writes SQL once with ``?`` placeholders and the few dialect differences behind helpers
(``upsert``, ``insert_ignore``). A ``Unit`` is the consumer runtime's unit of work: the
statements a handler produced, guarded by the inbox row of the event that caused them, plus
the events it emitted (outbox). ``apply`` writes many units in one transaction; a unit whose
inbox row already exists (a redelivery, or a rival member that got there first) is skipped
whole, which is what makes every consumer idempotent.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from pymysql.constants.CLIENT import FOUND_ROWS

from fabric._sqlite import GroupCommit, SqliteThread
from fabric.events import utcnow

__all__ = ["Database", "MysqlDatabase", "OutboxRow", "SqliteDatabase", "Unit", "open_db"]

Params = Sequence[Any]
Op = tuple[str, Params]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxRow:
    event_id: str
    topic: str
    key: str | None
    partition: int | None
    value: bytes


@dataclasses.dataclass(slots=True)
class Unit:
    """What one handled event changes. ``inbox=None`` writes without an inbox guard (DLQ)."""

    consumer: str
    inbox: str | None
    ops: list[Op] = dataclasses.field(default_factory=list)
    outbox: list[OutboxRow] = dataclasses.field(default_factory=list)


class Database(Protocol):
    dialect: str
    url: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def execute(self, sql: str, params: Params = ()) -> int: ...

    async def executemany(self, sql: str, rows: Sequence[Params]) -> int: ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]: ...

    async def run(self, ops: Sequence[Op]) -> None:
        """Run statements in one transaction."""
        ...

    async def apply(self, units: Sequence[Unit]) -> list[bool]:
        """Write units in one transaction; True for each unit that was new."""
        ...

    async def outbox_done(self, event_ids: Sequence[str]) -> None:
        """The outbox rows were published: they may go."""
        ...


def upsert(dialect: str, table: str, keys: Sequence[str], row: dict[str, Any]) -> Op:
    """INSERT, or UPDATE the non-key columns when the key exists."""
    cols = list(row)
    marks = ", ".join("?" for _ in cols)
    rest = [c for c in cols if c not in keys]
    if dialect == "mysql":
        sets = ", ".join(f"{c}=VALUES({c})" for c in rest) or f"{keys[0]}={keys[0]}"
        sql = (
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})"
            f" ON DUPLICATE KEY UPDATE {sets}"
        )
    else:
        sets = ", ".join(f"{c}=excluded.{c}" for c in rest)
        action = f"DO UPDATE SET {sets}" if rest else "DO NOTHING"
        sql = (
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})"
            f" ON CONFLICT({', '.join(keys)}) {action}"
        )
    return sql, tuple(row.values())


def insert_ignore(dialect: str, table: str, row: dict[str, Any]) -> Op:
    cols = list(row)
    verb = "INSERT IGNORE" if dialect == "mysql" else "INSERT OR IGNORE"
    marks = ", ".join("?" for _ in cols)
    return f"{verb} INTO {table} ({', '.join(cols)}) VALUES ({marks})", tuple(row.values())


_OUTBOX_INSERT = (
    "INTO outbox (event_id, consumer, topic, msg_key, part, value, created_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _outbox_params(unit: Unit, row: OutboxRow, now_ms: int) -> Params:
    return (row.event_id, unit.consumer, row.topic, row.key, row.partition, row.value, now_ms)


class SqliteDatabase:
    dialect = "sqlite"

    def __init__(self, path: str, url: str | None = None) -> None:
        self.path = path
        self.url = url or f"sqlite:///{path}"
        self._t = SqliteThread(path, "db", "FULL")
        # reads on their own connection: in WAL mode they run beside the writer instead of
        # queueing behind its transactions
        self._r = SqliteThread(path, "db-read", "FULL")
        self._units: GroupCommit[Unit, bool] = GroupCommit(self._t, self._apply)
        self._published: list[str] = []  # outbox rows to delete with the next transaction

    async def start(self) -> None:
        await migrate(self)

    async def close(self) -> None:
        await self._units.wait_idle()
        if self._published:
            await self._units.submit([])
        await self._t.close()
        await self._r.close()

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._t.transaction(lambda c: c.execute(sql, params).rowcount)

    async def executemany(self, sql: str, rows: Sequence[Params]) -> int:
        return await self._t.transaction(lambda c: c.executemany(sql, rows).rowcount)

    async def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        return await self._r.call(lambda c: c.execute(sql, params).fetchall())

    async def run(self, ops: Sequence[Op]) -> None:
        def work(conn: sqlite3.Connection) -> None:
            for sql, params in ops:
                conn.execute(sql, params)

        await self._t.transaction(work)

    async def script(self, sql: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.executescript(sql)

        await self._t.call(work, inline=False)

    async def apply(self, units: Sequence[Unit]) -> list[bool]:
        return await self._units.submit(list(units))

    async def outbox_done(self, event_ids: Sequence[str]) -> None:
        """Published outbox rows: deleted with the next transaction (a crash re-publishes
        them; consumers drop the duplicates by event id)."""
        self._published.extend(event_ids)

    def published_pending(self) -> set[str]:
        """Outbox rows already published whose deletion waits for the next transaction."""
        return set(self._published)

    def _apply(self, conn: sqlite3.Connection, items: list[Unit]) -> list[bool]:
        now_ms = int(time.time() * 1000)
        if self._published:
            done, self._published = self._published, []
            conn.executemany("DELETE FROM outbox WHERE event_id=?", [(i,) for i in done])
        out = []
        for unit in items:
            if unit.inbox is not None:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO inbox (consumer, event_id) VALUES (?, ?)",
                    (unit.consumer, unit.inbox),
                )
                if cur.rowcount == 0:
                    out.append(False)
                    continue
            for sql, params in unit.ops:
                conn.execute(sql, params)
            if unit.outbox:
                conn.executemany(
                    "INSERT OR IGNORE " + _OUTBOX_INSERT,
                    [_outbox_params(unit, r, now_ms) for r in unit.outbox],
                )
            out.append(True)
        return out


class MysqlDatabase:
    dialect = "mysql"

    def __init__(self, url: str, **connect: Any) -> None:
        self.url = url
        u = urlparse(url)
        self._kw: dict[str, Any] = dict(
            host=u.hostname or "127.0.0.1",
            port=u.port or 3306,
            user=unquote(u.username or ""),
            password=unquote(u.password or ""),
            db=u.path.lstrip("/"),
            autocommit=False,
            charset="utf8mb4",
            # UPDATE counts matched rows, as SQLite does, not only rows whose values changed
            # (a lease renewed within the same millisecond "changes" nothing)
            client_flag=FOUND_ROWS,
            **connect,
        )
        self._pool: Any = None

    async def start(self) -> None:
        import aiomysql

        if self._pool is None:
            self._pool = await aiomysql.create_pool(minsize=1, maxsize=8, **self._kw)
        await migrate(self)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None

    @staticmethod
    def _q(sql: str) -> str:
        return sql.replace("?", "%s")

    async def _tx(self, work: Any) -> Any:
        async with self._pool.acquire() as conn:
            await conn.begin()
            try:
                async with conn.cursor() as cur:
                    result = await work(cur)
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()
            return result

    async def execute(self, sql: str, params: Params = ()) -> int:
        async def work(cur: Any) -> int:
            return int(await cur.execute(self._q(sql), tuple(params)))

        return int(await self._tx(work))

    async def executemany(self, sql: str, rows: Sequence[Params]) -> int:
        async def work(cur: Any) -> int:
            return int(await cur.executemany(self._q(sql), [tuple(r) for r in rows]) or 0)

        return int(await self._tx(work))

    async def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        async with self._pool.acquire() as conn:
            async with conn.cursor() as cur:
                await cur.execute(self._q(sql), tuple(params))
                rows = await cur.fetchall()
            await conn.commit()  # end the read snapshot so the next read sees new rows
        return [tuple(r) for r in rows]

    async def run(self, ops: Sequence[Op]) -> None:
        async def work(cur: Any) -> None:
            for sql, params in ops:
                await cur.execute(self._q(sql), tuple(params))

        await self._tx(work)

    async def script(self, sql: str) -> None:
        async def work(cur: Any) -> None:
            for stmt in _split_sql(sql):
                await cur.execute(stmt)

        await self._tx(work)

    async def outbox_done(self, event_ids: Sequence[str]) -> None:
        for i in range(0, len(event_ids), 500):
            chunk = list(event_ids[i : i + 500])
            await self.execute(
                f"DELETE FROM outbox WHERE event_id IN ({','.join('?' * len(chunk))})", chunk
            )

    async def apply(self, units: Sequence[Unit]) -> list[bool]:
        async def work(cur: Any) -> list[bool]:
            now_ms = int(time.time() * 1000)
            out = []
            for unit in units:
                if unit.inbox is not None:
                    n = await cur.execute(
                        "INSERT IGNORE INTO inbox (consumer, event_id) VALUES (%s, %s)",
                        (unit.consumer, unit.inbox),
                    )
                    if n == 0:
                        out.append(False)
                        continue
                for sql, params in unit.ops:
                    await cur.execute(self._q(sql), tuple(params))
                if unit.outbox:
                    await cur.executemany(
                        "INSERT IGNORE " + self._q(_OUTBOX_INSERT),
                        [_outbox_params(unit, r, now_ms) for r in unit.outbox],
                    )
                out.append(True)
            return out

        result: list[bool] = await self._tx(work)
        return result


def _split_sql(sql: str) -> list[str]:
    body = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in body.split(";") if s.strip()]


async def migrate(db: SqliteDatabase | MysqlDatabase) -> list[str]:
    """Apply ``migrations/<dialect>/NNNN_name.sql`` files not applied yet, in order."""
    await db.script(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version VARCHAR(64) PRIMARY KEY, applied_at VARCHAR(32) NOT NULL)"
    )
    done = {v for (v,) in await db.fetchall("SELECT version FROM schema_migrations")}
    applied = []
    for path in sorted((MIGRATIONS / db.dialect).glob("*.sql")):
        version = path.stem
        if version in done:
            continue
        try:
            await db.script(path.read_text())
        except Exception as exc:
            # CREATE is IF NOT EXISTS, so a racing process is harmless there; ADD COLUMN has
            # no such clause on SQLite or MySQL: the racer that lost sees a duplicate column
            if "duplicate column" not in str(exc).lower():
                raise
        await db.execute(
            *insert_ignore(
                db.dialect, "schema_migrations", {"version": version, "applied_at": utcnow()}
            )
        )
        applied.append(version)
    return applied


def open_db(url: str) -> SqliteDatabase | MysqlDatabase:
    """``sqlite:///rel.db``, ``sqlite:////abs.db`` or ``mysql://user:pass@host:port/db``."""
    scheme = url.partition("://")[0]
    if scheme == "sqlite":
        from fabric.log import sqlite_path

        return SqliteDatabase(sqlite_path(url), url)
    if scheme in ("mysql", "mariadb"):
        return MysqlDatabase(url)
    raise ValueError(
        f"unknown database URL {url!r}: use sqlite:///path or mysql://user:pass@host/db"
    )
