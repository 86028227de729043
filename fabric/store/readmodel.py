"""The read model: ``tasks``, ``uploads`` and ``post_interactions`` as projections of the log.

``project(event, dialect)`` turns one event of ``fabric.tasks`` into SQL statements. It is a
pure function of the event: values come from the event (times from event times, ids derived
from task, platform and account), never from the clock or the database, so the live
projector and ``replay`` into an empty database produce the same rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from fabric.events import Event
from fabric.store.db import Op, insert_ignore, upsert
from fabric.timeutil import sql

__all__ = ["PROJECTED", "STATUS", "TABLES", "project", "upload_id"]

TABLES = ("tasks", "uploads", "post_interactions", "voice_runs")

# the original system's four statuses, from the detailed state
STATUS = {
    "pending": "pending",
    "scheduled": "pending",
    "processing": "processing",
    "publishing": "processing",
    "retry_scheduled": "processing",
    "deferred": "processing",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "failed",
    "rejected": "failed",
}

_NS = uuid.UUID("5a2e1f0c-9b7d-4c3e-8a61-2f0d4b9e7c15")


def upload_id(task_id: str, platform: str, account: str) -> str:
    return str(uuid.uuid5(_NS, f"{task_id}|{platform}|{account}"))


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _sched(value: Any) -> str | None:
    try:
        return sql(str(value)) if value else None
    except ValueError:  # naive or malformed: the task is rejected; keep no bogus time
        return None


def _state(ev: Event, state: str, **extra: Any) -> Op:
    sets = ["state=?", "status=?", "updated_at=?"] + [f"{k}=?" for k in extra]
    return (
        f"UPDATE tasks SET {', '.join(sets)} WHERE id=?",
        (state, STATUS[state], sql(ev.time), *extra.values(), ev.subject),
    )


def _task_row(ev: Event, spec: Mapping[str, Any], state: str) -> dict[str, Any]:
    targets = spec.get("targets") or [{"platform": "youtube", "account": ""}]
    options = {
        k: spec[k]
        for k in (
            "voice",
            "comment",
            "like",
            "notify",
            "max_retries",
            "thumbnail",
            "playlist_id",
            "options",
        )
        if k in spec
    }
    return {
        "id": ev.subject,
        "account_name": targets[0]["account"],
        "platform": targets[0]["platform"],
        "targets": _json(targets),
        "video_path": (spec.get("video") or {}).get("path"),
        "title": spec.get("title"),
        "description": spec.get("description"),
        "keywords": ",".join(spec.get("tags", [])),
        "privacy": spec.get("privacy"),
        "scheduled_time": _sched(spec.get("scheduled_at")),
        "status": STATUS[state],
        "state": state,
        "retry_count": 0,
        "error": None,
        "error_code": None,
        "options": _json(options),
        "created_at": sql(ev.time),
        "updated_at": sql(ev.time),
        "completed_at": None,
    }


def _upload_row(
    ev: Event, target: Mapping[str, Any] | None = None, **values: Any
) -> dict[str, Any]:
    """The uploads row of (task, target) with ``values``: ``target`` defaults to the event's."""
    target = target or ev.data["target"]
    return {
        "upload_id": upload_id(ev.subject or "", target["platform"], target["account"]),
        "task_id": ev.subject,
        "platform": target["platform"],
        "account_name": target["account"],
        **values,
        "updated_at": sql(ev.time),
    }


def _upload(ev: Event, dialect: str, target: Mapping[str, Any] | None = None, **values: Any) -> Op:
    """Upsert the uploads row of (task, target): ``target`` defaults to the event's."""
    return upsert(dialect, "uploads", ("upload_id",), _upload_row(ev, target, **values))


def _created(ev: Event, d: str) -> list[Op]:
    return [upsert(d, "tasks", ("id",), _task_row(ev, ev.data, "pending"))]


def _accepted(ev: Event, d: str) -> list[Op]:
    return [
        (
            "UPDATE tasks SET video_path=?, updated_at=? WHERE id=?",
            (ev.data["video"]["path"], sql(ev.time), ev.subject),
        )
    ]


def _rejected(ev: Event, d: str) -> list[Op]:
    # a task a producer rejected before it was ever created still gets its row
    row = _task_row(ev, ev.data.get("task") or {}, "rejected")
    return [
        insert_ignore(d, "tasks", row),
        _state(
            ev,
            "rejected",
            error=ev.data["message"],
            error_code=ev.data["code"],
            completed_at=sql(ev.time),
        ),
    ]


def _scheduled(ev: Event, d: str) -> list[Op]:
    return [_state(ev, "scheduled", scheduled_time=sql(ev.data["due_at"]))]


def _started(ev: Event, d: str) -> list[Op]:
    ops = [_state(ev, ev.data["stage"])]
    for target in ev.data.get("targets", []):
        ops.append(
            _upload(
                ev, d, target, status="queued", error=None, error_class=None, deferred_until=None
            )
        )
    return ops


def _retry(ev: Event, d: str) -> list[Op]:
    err = ev.data["error"]
    return [
        _state(
            ev,
            "retry_scheduled",
            retry_count=ev.data["retry_count"],
            error=err["message"],
            error_code=err["code"],
        ),
        _upload(ev, d, status="retry_scheduled", error=err["message"], error_class=err["class"]),
    ]


def _deferred(ev: Event, d: str) -> list[Op]:
    err = ev.data["error"]
    return [
        _state(ev, "deferred", error=err["message"], error_code=err["code"]),
        _upload(
            ev,
            d,
            status="deferred",
            deferred_until=sql(ev.data["until"]),
            error=err["message"],
            error_class=err["class"],
        ),
    ]


def _pub_started(ev: Event, d: str) -> list[Op]:
    # the row may hold the upload's outcome already: this notice is appended outside the
    # publisher's transaction and can land after it; it must not turn published back into
    # uploading
    row = _upload_row(ev, status="uploading", attempts=ev.data["attempt"])
    uid, at = row["upload_id"], row["updated_at"]
    return [
        insert_ignore(d, "uploads", row),
        (
            "UPDATE uploads SET status=?, attempts=?, updated_at=?"
            " WHERE upload_id=? AND status NOT IN (?, ?)",
            ("uploading", row["attempts"], at, uid, "published", "failed"),
        ),
        ("UPDATE uploads SET started_at=COALESCE(started_at, ?) WHERE upload_id=?", (at, uid)),
    ]


def _progress(ev: Event, d: str) -> list[Op]:
    # An UPDATE, not the upsert: the row exists since task.started, and an INSERT without
    # ``status`` fails its NOT NULL check before ON CONFLICT is considered (SQLite and MySQL
    # strict mode alike), which wedged the projector on the first multi-chunk upload.
    target = ev.data["target"]
    uid = upload_id(ev.subject or "", target["platform"], target["account"])
    return [
        (
            "UPDATE uploads SET bytes_sent=?, updated_at=? WHERE upload_id=?",
            (ev.data["bytes_done"], sql(ev.time), uid),
        )
    ]


def _completed_upload(ev: Event, d: str) -> list[Op]:
    data = ev.data
    return [
        _upload(
            ev,
            d,
            status="published",
            video_id=data["video_id"],
            video_url=data["url"],
            platform_upload_id=data.get("upload_id"),
            attempts=data["attempt"],
            bytes_sent=data.get("bytes_sent", 0),
            published_at=sql(ev.time),
            error=None,
            error_class=None,
        )
    ]


def _failed_upload(ev: Event, d: str) -> list[Op]:
    err = ev.data["error"]
    status = "error" if ev.data["retryable"] else "failed"
    return [
        _upload(
            ev,
            d,
            status=status,
            attempts=ev.data["attempt"],
            error=err["message"],
            error_class=err["class"],
        )
    ]


def _deferred_upload(ev: Event, d: str) -> list[Op]:
    err = ev.data["error"]
    return [
        _upload(
            ev,
            d,
            status="deferred",
            attempts=ev.data["attempt"],
            deferred_until=sql(ev.data["until"]),
            error=err["message"],
            error_class=err["class"],
        )
    ]


def _interaction(ev: Event, d: str) -> list[Op]:
    data = ev.data
    target = data["target"]
    posted = ev.type == "interaction.posted"
    row = {
        "id": data["interaction_id"],
        "upload_id": upload_id(ev.subject or "", target["platform"], target["account"]),
        "task_id": ev.subject,
        "platform": target["platform"],
        "account_name": target["account"],
        "video_id": data["video_id"],
        "interaction_type": data["kind"],
        "content": data.get("content", ""),
        "external_id": data.get("external_id") if posted else None,
        "status": "posted" if posted else "failed",
        "error": None if posted else data["error"]["message"],
        "created_at": sql(ev.time),
        "updated_at": sql(ev.time),
    }
    return [upsert(d, "post_interactions", ("id",), row)]


def _media_prepared(ev: Event, d: str) -> list[Op]:
    return [_upload(ev, d, status="prepared", error=None, error_class=None)]


def _media_rejected(ev: Event, d: str) -> list[Op]:
    err = ev.data["error"]
    return [_upload(ev, d, status="failed", error=err["message"], error_class=err["class"])]


def _voice_assembled(ev: Event, d: str) -> list[Op]:
    data = ev.data
    row = {
        "task_id": ev.subject,
        "engine": data["engine"],
        "chunks": data["chunks"],
        "audio_seconds": data["audio_seconds"],
        "engine_seconds": data["engine_seconds"],
        "wall_seconds": data["wall_seconds"],
        "separation": _json(data["separation"]),
        "created_at": sql(ev.time),
    }
    return [upsert(d, "voice_runs", ("task_id",), row)]


def _completed(ev: Event, d: str) -> list[Op]:
    return [_state(ev, "completed", error=None, error_code=None, completed_at=sql(ev.time))]


def _failed(ev: Event, d: str) -> list[Op]:
    ops = [
        _state(
            ev,
            "failed",
            error=ev.data["message"],
            error_code=ev.data["code"],
            completed_at=sql(ev.time),
        )
    ]
    for target in ev.data["targets"]:
        if target["status"] == "failed":  # retries used up: the upload is over too
            ops.append(
                _upload(
                    ev,
                    d,
                    {"platform": target["platform"], "account": target["account"]},
                    status="failed",
                )
            )
    return ops


def _cancelled(ev: Event, d: str) -> list[Op]:
    reason = ev.data.get("reason") or "no reason given"
    return [
        _state(
            ev,
            "cancelled",
            error=f"cancelled: {reason}",
            error_code="cancelled",
            completed_at=sql(ev.time),
        )
    ]


def _retried(ev: Event, d: str) -> list[Op]:
    return [
        (
            "UPDATE tasks SET state=?, status=?, retry_count=retry_count+1, error=NULL,"
            " error_code=NULL, completed_at=NULL, updated_at=? WHERE id=?",
            ("publishing", "processing", sql(ev.time), ev.subject),
        )
    ]


PROJECTED: dict[str, Callable[[Event, str], list[Op]]] = {
    "task.created": _created,
    "task.accepted": _accepted,
    "task.rejected": _rejected,
    "task.scheduled": _scheduled,
    "task.rescheduled": _scheduled,
    "task.started": _started,
    "task.retry_scheduled": _retry,
    "task.deferred": _deferred,
    "task.completed": _completed,
    "task.failed": _failed,
    "task.cancelled": _cancelled,
    "task.retried": _retried,
    "publish.started": _pub_started,
    "publish.progress": _progress,
    "publish.completed": _completed_upload,
    "publish.failed": _failed_upload,
    "publish.deferred": _deferred_upload,
    "interaction.posted": _interaction,
    "interaction.failed": _interaction,
    "media.prepared": _media_prepared,
    "media.rejected": _media_rejected,
    "voice.assembled": _voice_assembled,
}


def project(event: Event, dialect: str) -> list[Op]:
    fn = PROJECTED.get(event.type)
    return fn(event, dialect) if fn else []
