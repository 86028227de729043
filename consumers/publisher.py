"""publisher: uploads videos and posts interactions through the platform adapters.

Reads ``fabric.publish``, keyed by account: one account's uploads, quota and token are
handled by one consumer at a time, in order; different accounts proceed in parallel. Each
record is its own transaction (``batch_max=1``) so a finished upload's result is committed
before the next one starts. Every outcome becomes an event, classified:

* published -> ``publish.completed``; quota out -> ``publish.deferred`` until the reset;
* transient / rate limit -> ``publish.failed`` retryable (the orchestrator backs off);
* auth, permanent, unknown account -> ``publish.failed`` not retryable;
* an unexpected exception -> ``publish.failed`` retryable, logged with its traceback, so
  the task is never stuck in "publishing".

Outside side effects are guarded by the adapter's persisted intent: a redelivered request
resumes or recovers instead of uploading twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any

from fabric.events import Event
from fabric.platforms.base import (
    ErrorClass,
    InteractionJob,
    PlatformError,
    PublishJob,
)
from fabric.runtime import Consumer, Context
from fabric.store.accounts import AccountError
from fabric.timeutil import wire

if TYPE_CHECKING:
    from fabric.app import App

__all__ = ["consumer"]

log = logging.getLogger("fabric.publisher")

PROGRESS_EVERY_S = 1.0
INTERACTION_ATTEMPTS = 5


def _error(code: str, message: str, kind: ErrorClass) -> dict[str, Any]:
    return {"class": str(kind), "code": code, "message": message[:2000]}


def consumer(app: App) -> Consumer:
    async def publish(event: Event, ctx: Context) -> None:
        data = event.data
        target = data["target"]
        attempt = data["attempt"]
        base = {"target": target, "attempt": attempt}
        video = data["video"]
        job = PublishJob(
            task_id=event.subject or "", platform=target["platform"], account=target["account"],
            video_path=video["path"], video_sha256=video["sha256"], video_size=video["size"],
            title=data["title"], description=data.get("description", ""),
            tags=tuple(data.get("tags", [])), privacy=data.get("privacy", "private"),
            attempt=attempt, thumbnail_path=data.get("thumbnail"),
            playlist_id=data.get("playlist_id"), options=data.get("options", {}),
        )
        intent = await app.intents.load(f"publish:{job.task_id}:{target['platform']}:{target['account']}")
        await ctx.emit_now("publish.started", {**base, "resuming": bool(intent.state)})
        last = [0.0]

        async def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_S and done < total:
                last[0] = now
                await ctx.emit_now("publish.progress",
                                   {**base, "bytes_done": done, "bytes_total": total})

        try:
            await app.accounts.require(target["platform"], target["account"])
            adapter = app.platforms.get(target["platform"])
            result = await adapter.publish(job, intent, app.intents, progress)
        except PlatformError as exc:
            if exc.kind == ErrorClass.QUOTA:
                until = exc.reset_at or dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
                ctx.emit("publish.deferred", {**base, "until": wire(until), "error": exc.as_data()})
            else:
                ctx.emit("publish.failed", {**base, "error": exc.as_data(),
                                            "retryable": exc.retryable})
            return
        except AccountError as exc:
            ctx.emit("publish.failed", {**base, "retryable": False,
                                        "error": _error(exc.code, str(exc), ErrorClass.PERMANENT)})
            return
        except KeyError as exc:
            ctx.emit("publish.failed", {**base, "retryable": False, "error": _error(
                "platform_not_configured", str(exc.args[0]), ErrorClass.PERMANENT)})
            return
        except Exception as exc:
            log.exception("publish crashed", extra={"task_id": job.task_id, "event_id": event.id})
            ctx.emit("publish.failed", {**base, "retryable": True, "error": _error(
                type(exc).__name__, str(exc) or type(exc).__name__, ErrorClass.TRANSIENT)})
            return
        ctx.emit("publish.completed", {
            **base, "video_id": result.video_id, "url": result.url, "upload_id": result.upload_id,
            "resumed": result.resumed, "recovered": result.recovered,
            "bytes_sent": result.bytes_sent, "details": dict(result.details),
        })

    async def interact(event: Event, ctx: Context) -> None:
        data = event.data
        target = data["target"]
        job = InteractionJob(
            task_id=event.subject or "", platform=target["platform"], account=target["account"],
            video_id=data["video_id"], kind=data["kind"], content=data.get("content", ""),
            interaction_id=data["interaction_id"],
        )
        base = {"target": target, "interaction_id": job.interaction_id, "kind": job.kind,
                "video_id": job.video_id, "content": job.content}
        intent = await app.intents.load(f"interaction:{job.interaction_id}")
        try:
            adapter = app.platforms.get(target["platform"])
            result = await adapter.interact(job, intent, app.intents)
        except PlatformError as exc:
            if exc.retryable and ctx.attempt < INTERACTION_ATTEMPTS:
                raise  # the runtime retries with backoff
            ctx.emit("interaction.failed", {**base, "error": exc.as_data()})
            return
        ctx.emit("interaction.posted", {**base, "external_id": result.external_id,
                                        "recovered": result.recovered})

    async def handle(event: Event, ctx: Context) -> None:
        if event.type == "publish.requested":
            await publish(event, ctx)
        else:
            await interact(event, ctx)

    return Consumer("publisher", ["fabric.publish"], handle, batch_max=1,
                    max_attempts=INTERACTION_ATTEMPTS,
                    accepts=frozenset({"publish.requested", "interaction.requested"}))
