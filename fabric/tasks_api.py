"""Task operations shared by the CLI and the producers: submit, list, show, command, status."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from fabric.events import Event, loads, new_event, new_id
from fabric.log import partition_for
from fabric.schemas import SchemaError
from fabric.tasks.validate import validate
from fabric.timeutil import parse

if TYPE_CHECKING:
    from fabric.app import App

__all__ = [
    "Outcome",
    "Rejected",
    "account_status",
    "build",
    "command",
    "history",
    "list_tasks",
    "show",
    "status",
    "submit",
]


class Rejected(Exception):
    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


@dataclasses.dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str


def build(spec: dict[str, Any], source: str) -> Event:
    """A validated ``task.created`` event (raises Rejected on a schema violation)."""
    task_id = str(spec.get("task_id") or new_id())
    data = {**spec, "task_id": task_id}
    event = new_event("task.created", data, subject=task_id, source=source)
    return event


async def submit(app: App, spec: dict[str, Any], source: str = "cli") -> str:
    """Validate now (schema and ingress checks) and publish ``task.created``; nothing is
    published when the task is invalid, and the caller gets the reason."""
    event = build(spec, source)
    try:
        message = app.runtime.bus.message(event)
    except SchemaError as exc:
        raise Rejected("invalid_task", str(exc)) from None
    verdict = await validate(
        event.data,
        accounts=app.accounts,
        platforms=app.platforms.names(),
        now=dt.datetime.now(dt.UTC),
        policy=app.policy,
    )
    if not verdict.ok:
        raise Rejected(verdict.code or "invalid_task", verdict.message or "", verdict.field)
    await app.log.publish(message.topic, message.key, message.value, message.partition)
    return str(event.data["task_id"])


LIST_COLUMNS = (
    "id",
    "status",
    "state",
    "platform",
    "account_name",
    "title",
    "scheduled_time",
    "retry_count",
    "error",
)
"""What ``list_tasks`` returns per task (and ``fabric task list`` shows), in order."""


async def list_tasks(
    app: App, *, status: str | None = None, account: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    where, params = [], []
    if status:
        where.append("(status=? OR state=?)")
        params += [status, status]
    if account:
        where.append("account_name=?")
        params.append(account)
    sql = f"SELECT {', '.join(LIST_COLUMNS)} FROM tasks"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = await app.db.fetchall(sql + f" ORDER BY created_at DESC LIMIT {int(limit)}", params)
    return [dict(zip(LIST_COLUMNS, r, strict=True)) for r in rows]


async def _row(
    app: App, sql: str, params: tuple[Any, ...], keys: list[str]
) -> list[dict[str, Any]]:
    return [dict(zip(keys, r, strict=True)) for r in await app.db.fetchall(sql, params)]


async def history(app: App, task_id: str) -> list[dict[str, Any]]:
    """Every event about the task on fabric.tasks and fabric.timers, in log order."""
    events = []
    topics = await app.log.topics()
    for topic in (app.runtime.bus.topic("fabric.tasks"), app.runtime.bus.topic("fabric.timers")):
        if topic not in topics:
            continue
        partition = partition_for(task_id, topics[topic], None, 0)
        offset = 0
        while batch := await app.log.read(topic, partition, offset, 5000):
            for rec in batch:
                if rec.key == task_id:
                    obj = loads(rec.value)
                    events.append(
                        {
                            "offset": f"{topic}/{partition}@{rec.offset}",
                            "time": obj.get("time"),
                            "type": obj.get("type"),
                            "source": obj.get("source"),
                            "data": obj.get("data"),
                        }
                    )
            offset = batch[-1].offset + 1
    return sorted(events, key=lambda e: (e["time"] or "", e["offset"]))


async def show(app: App, task_id: str) -> dict[str, Any] | None:
    cols = [
        "id",
        "status",
        "state",
        "platform",
        "account_name",
        "targets",
        "video_path",
        "title",
        "description",
        "keywords",
        "privacy",
        "scheduled_time",
        "retry_count",
        "error",
        "error_code",
        "created_at",
        "updated_at",
        "completed_at",
    ]
    rows = await _row(app, f"SELECT {', '.join(cols)} FROM tasks WHERE id=?", (task_id,), cols)
    events = await history(app, task_id)
    if not rows and not events:
        return None
    ucols = [
        "platform",
        "account_name",
        "status",
        "attempts",
        "video_id",
        "video_url",
        "bytes_sent",
        "error",
        "deferred_until",
        "published_at",
    ]
    icols = ["interaction_type", "status", "content", "external_id", "error"]
    return {
        "task": rows[0] if rows else None,
        "uploads": await _row(
            app,
            f"SELECT {', '.join(ucols)} FROM uploads WHERE task_id=?"
            " ORDER BY platform, account_name",
            (task_id,),
            ucols,
        ),
        "interactions": await _row(
            app,
            f"SELECT {', '.join(icols)} FROM post_interactions WHERE task_id=? ORDER BY id",
            (task_id,),
            icols,
        ),
        "events": events,
    }


async def command(
    app: App, task_id: str, kind: str, data: dict[str, Any], wait_s: float = 5.0
) -> Outcome:
    """Publish a command and wait (a little) for the orchestrator's answer to it."""
    known = await app.db.fetchall("SELECT state FROM tasks WHERE id=?", (task_id,))
    if not known:
        return Outcome(False, f"no task {task_id!r}")
    topics = await app.log.topics()
    tasks_topic = app.runtime.bus.topic("fabric.tasks")
    partition = partition_for(task_id, topics[tasks_topic], None, 0)
    start = (await app.log.end_offsets(tasks_topic)).get(partition, 0)
    cmd = new_event(kind, data, subject=task_id, source="cli")
    await app.runtime.bus.publish(cmd)
    deadline = time.monotonic() + wait_s
    offset = start
    answers: list[str] = []
    while time.monotonic() < deadline:
        for rec in await app.log.read(tasks_topic, partition, offset, 1000):
            offset = rec.offset + 1
            obj = loads(rec.value)
            if obj.get("causation_id") != cmd.id:
                continue
            if obj["type"] == "task.command_rejected":
                return Outcome(False, f"refused: {obj['data']['message']}")
            answers.append(obj["type"])
        if answers:
            return Outcome(True, f"{kind}: {', '.join(answers)}")
        await asyncio.sleep(0.1)
    return Outcome(
        True, f"{kind} queued (no answer within {wait_s:g} s: is the orchestrator running?)"
    )


async def status(app: App) -> dict[str, Any]:
    """The original system's metrics, from the read model and the runtime."""
    db = app.db
    by_state = {
        s or "submitted": n
        for s, n in await db.fetchall(
            "SELECT state, COUNT(*) FROM tasks GROUP BY state ORDER BY state"
        )
    }
    total = sum(by_state.values())
    done = await db.fetchall("SELECT created_at, completed_at FROM tasks WHERE state='completed'")
    durations = [(_t(c) - _t(a)).total_seconds() for a, c in done if a and c]
    retried = (
        await db.fetchall(
            "SELECT COUNT(*), COALESCE(SUM(retry_count), 0) FROM tasks WHERE retry_count > 0"
        )
    )[0]
    uploads = await db.fetchall(
        "SELECT platform, status, COUNT(*) FROM uploads"
        " GROUP BY platform, status ORDER BY platform, status"
    )
    published = sum(n for _, s, n in uploads if s == "published")
    failed = sum(n for _, s, n in uploads if s == "failed")
    metrics: dict[str, Any] = {
        "tasks": total,
        "mean_completion_s": round(sum(durations) / len(durations), 3) if durations else None,
        "retry_rate": round(retried[0] / total, 4) if total else None,
        "retries": int(retried[1]),
        "upload_success_rate": round(published / (published + failed), 4)
        if published + failed
        else None,
        **await _voice_and_cleanup(app),
    }
    return {
        "tasks_by_state": by_state,
        "metrics": metrics,
        "uploads_by_platform": [{"platform": p, "status": s, "uploads": n} for p, s, n in uploads],
        **await account_status(app),
    }


# -- accounts: quota and pauses (issues 6, 7) ------------------------------------------------
async def account_status(app: App) -> dict[str, Any]:
    """Today's quota per account and bucket (each platform's own day: YouTube's resets at
    midnight Pacific), with every YouTube account listed even before its first call, and the
    accounts whose uploads wait for a reconnect. No secrets: names and numbers only."""
    from fabric.store.account_state import AccountPauses

    tracker = app.platforms.quota
    usage = await tracker.usage()
    seen = {(u.platform, u.account) for u in usage}
    for account in await app.accounts.list("youtube"):
        if ("youtube", account.name) not in seen:
            usage += await tracker.usage(account.name, "youtube")
    quota = [u.as_data() for u in sorted(usage, key=lambda u: (u.platform, u.account, u.bucket))]
    paused = await AccountPauses(app.db, app.accounts).list()
    return {
        "quota": quota,
        "paused_accounts": [
            {"platform": p.platform, "account": p.account, "code": p.code, "since": p.paused_at}
            for p in paused
        ],
    }


async def _voice_and_cleanup(app: App) -> dict[str, Any]:
    """Seconds of processing per minute of audio and the parallel speedup (engine seconds
    over wall seconds) of real voice runs; the share of work-dir cleanups that succeeded."""
    runs = await app.db.fetchall(
        "SELECT COUNT(*), COALESCE(SUM(audio_seconds), 0), COALESCE(SUM(engine_seconds), 0),"
        " COALESCE(SUM(wall_seconds), 0) FROM voice_runs"
    )
    count, audio, engine, wall = runs[0]
    kv = dict(
        await app.db.fetchall(
            "SELECT k, v FROM kv WHERE consumer='cleanup'"
            " AND k IN ('cleanup:removed', 'cleanup:failed')"
        )
    )
    removed = int(kv.get("cleanup:removed", b"0") or 0)
    failed = int(kv.get("cleanup:failed", b"0") or 0)
    return {
        "voice_runs": int(count),
        "seconds_per_audio_minute": round(float(wall) / (float(audio) / 60), 3) if audio else None,
        "voice_parallel_speedup": round(float(engine) / float(wall), 3) if wall else None,
        "temp_cleanups": removed + failed,
        "temp_cleanup_success_rate": round(removed / (removed + failed), 4)
        if removed + failed
        else None,
    }


def _t(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC)
    return parse(str(value).replace(" ", "T") + "+00:00")
