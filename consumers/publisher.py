"""publisher: uploads videos, posts interactions and applies metadata changes through the
platform adapters.

Reads ``fabric.publish``, keyed by account: one account's uploads, quota and token are
handled by one consumer at a time, in order; different accounts proceed in parallel. Each
record is its own transaction (``batch_max=1``) so a finished upload's result is committed
before the next one starts. Every outcome becomes an event, classified:

* published -> ``publish.completed``; quota out -> ``publish.deferred`` until the reset;
* transient / rate limit -> ``publish.failed`` retryable (the orchestrator backs off);
* permanent, unknown account -> ``publish.failed`` not retryable;
* auth (the token was refused for good, after the adapter's one refresh) ->
  ``account.reauth_required`` and the account is *paused* (``fabric.store.account_state``):
  this upload and every later one for that account become ``publish.deferred`` (re-checked
  every ``FABRIC_REAUTH_RECHECK_S``) instead of burning attempts, while other accounts keep
  going. Reconnecting the account (``account add --replace``) or any successful refresh
  changes its token, which lifts the pause: the next re-check publishes;
* an unexpected exception -> ``publish.failed`` retryable, logged with its traceback, so
  the task is never stuck in "publishing".

``metadata.update`` (scheduled changes of a published video) goes to the adapter's
``update_video`` / ``set_thumbnail`` (YouTube: ``videos.update`` and ``thumbnails.set``,
quota checked and counted by the adapter): quota -> ``metadata.failed`` class quota with
``reset_at`` (the orchestrator reschedules it at the reset); transient -> raised, so the
runtime retries with backoff, then ``metadata.failed``; permanent -> ``metadata.failed``;
a platform whose adapter cannot change metadata -> ``metadata.failed`` ``unsupported``.

Outside side effects are guarded by persisted intents: a redelivered request resumes or
recovers instead of uploading twice, and a metadata change done before a crash is not
repeated.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any

from fabric.events import Event
from fabric.notify.messages import scrub
from fabric.platforms.base import (
    ErrorClass,
    InteractionJob,
    PlatformError,
    PublishJob,
)
from fabric.runtime import Consumer, Context
from fabric.store.account_state import AccountPauses, issued_marker, reconnect_hint
from fabric.store.accounts import AccountError
from fabric.timeutil import wire

if TYPE_CHECKING:
    from fabric.app import App

__all__ = ["consumer"]

log = logging.getLogger("fabric.publisher")

PROGRESS_EVERY_S = 1.0
INTERACTION_ATTEMPTS = 5
REAUTH_RECHECK_S = 600.0  # a paused account's uploads look again this often (default)


def _error(code: str, message: str, kind: ErrorClass) -> dict[str, Any]:
    return {"class": str(kind), "code": code, "message": message[:2000]}


def consumer(app: App) -> Consumer:
    pauses = AccountPauses(app.db, app.accounts)
    recheck_s = float(app.settings.get("FABRIC_REAUTH_RECHECK_S") or REAUTH_RECHECK_S)

    def recheck_at() -> str:
        return wire(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=recheck_s))

    async def needs_reauth(
        ctx: Context, platform: str, account: str, exc: PlatformError, task_id: str | None
    ) -> None:
        """Pause the account (in this handler's transaction) and say so, once per refused
        token: a second task finding the same dead token adds no second notice."""
        current = await app.accounts.get(platform, account)
        issued = issued_marker(current)
        earlier = await pauses.get(platform, account)
        message = scrub(exc.message)
        ctx.sql(*pauses.pause_op(platform, account, exc.code, message, issued))
        if earlier is not None and earlier.token_issued_at == issued:
            return
        log.warning(
            "account needs reconnecting: paused",
            extra={"platform": platform, "account": account, "code": exc.code},
        )
        key = f"{platform}:{account}"
        ctx.emit(
            "account.reauth_required",
            {
                "platform": platform,
                "account": account,
                "account_key": key,
                "code": exc.code,
                "message": message,
                "detected_by": "publisher",
                "task_id": task_id,
                "hint": reconnect_hint(platform, account),
            },
            subject=key,
        )

    async def publish(event: Event, ctx: Context) -> None:
        data = event.data
        target = data["target"]
        attempt = data["attempt"]
        base = {"target": target, "attempt": attempt}
        pause = await pauses.check(target["platform"], target["account"])
        if pause is not None:  # waiting for a reconnect: no attempt, no started/progress
            ctx.emit("publish.deferred", {**base, "until": recheck_at(), "error": pause.error()})
            return
        video = data["video"]
        job = PublishJob(
            task_id=event.subject or "",
            platform=target["platform"],
            account=target["account"],
            video_path=video["path"],
            video_sha256=video["sha256"],
            video_size=video["size"],
            title=data["title"],
            description=data.get("description", ""),
            tags=tuple(data.get("tags", [])),
            privacy=data.get("privacy", "private"),
            attempt=attempt,
            thumbnail_path=data.get("thumbnail"),
            playlist_id=data.get("playlist_id"),
            options=data.get("options", {}),
        )
        intent = await app.intents.load(f"publish:{job.task_id}:{job.platform}:{job.account}")
        await ctx.emit_now("publish.started", {**base, "resuming": bool(intent.state)})
        last = [0.0]

        async def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_S and done < total:
                last[0] = now
                await ctx.emit_now(
                    "publish.progress", {**base, "bytes_done": done, "bytes_total": total}
                )

        try:
            await app.accounts.require(target["platform"], target["account"])
            adapter = app.platforms.get(target["platform"])
            result = await adapter.publish(job, intent, app.intents, progress)
        except PlatformError as exc:
            if exc.kind == ErrorClass.QUOTA:
                until = exc.reset_at or dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
                ctx.emit("publish.deferred", {**base, "until": wire(until), "error": exc.as_data()})
            elif exc.kind == ErrorClass.AUTH:
                await needs_reauth(ctx, job.platform, job.account, exc, job.task_id)
                ctx.emit(
                    "publish.deferred", {**base, "until": recheck_at(), "error": exc.as_data()}
                )
            else:
                ctx.emit(
                    "publish.failed", {**base, "error": exc.as_data(), "retryable": exc.retryable}
                )
            return
        except AccountError as exc:
            ctx.emit(
                "publish.failed",
                {
                    **base,
                    "retryable": False,
                    "error": _error(exc.code, str(exc), ErrorClass.PERMANENT),
                },
            )
            return
        except KeyError as exc:
            ctx.emit(
                "publish.failed",
                {
                    **base,
                    "retryable": False,
                    "error": _error(
                        "platform_not_configured", str(exc.args[0]), ErrorClass.PERMANENT
                    ),
                },
            )
            return
        except Exception as exc:
            log.exception("publish crashed", extra={"task_id": job.task_id, "event_id": event.id})
            ctx.emit(
                "publish.failed",
                {
                    **base,
                    "retryable": True,
                    "error": _error(
                        type(exc).__name__, str(exc) or type(exc).__name__, ErrorClass.TRANSIENT
                    ),
                },
            )
            return
        ctx.emit(
            "publish.completed",
            {
                **base,
                "video_id": result.video_id,
                "url": result.url,
                "upload_id": result.upload_id,
                "resumed": result.resumed,
                "recovered": result.recovered,
                "bytes_sent": result.bytes_sent,
                "details": dict(result.details),
            },
        )

    async def interact(event: Event, ctx: Context) -> None:
        data = event.data
        target = data["target"]
        job = InteractionJob(
            task_id=event.subject or "",
            platform=target["platform"],
            account=target["account"],
            video_id=data["video_id"],
            kind=data["kind"],
            content=data.get("content", ""),
            interaction_id=data["interaction_id"],
        )
        base = {
            "target": target,
            "interaction_id": job.interaction_id,
            "kind": job.kind,
            "video_id": job.video_id,
            "content": job.content,
        }
        pause = await pauses.check(job.platform, job.account)
        if pause is not None:  # the token is known dead: no call that must fail
            ctx.emit("interaction.failed", {**base, "error": pause.error()})
            return
        intent = await app.intents.load(f"interaction:{job.interaction_id}")
        try:
            adapter = app.platforms.get(target["platform"])
            result = await adapter.interact(job, intent, app.intents)
        except PlatformError as exc:
            if exc.retryable and ctx.attempt < INTERACTION_ATTEMPTS:
                raise  # the runtime retries with backoff
            if exc.kind == ErrorClass.AUTH:
                await needs_reauth(ctx, job.platform, job.account, exc, job.task_id)
            ctx.emit("interaction.failed", {**base, "error": exc.as_data()})
            return
        ctx.emit(
            "interaction.posted",
            {**base, "external_id": result.external_id, "recovered": result.recovered},
        )

    async def metadata(event: Event, ctx: Context) -> None:
        data = event.data
        target = data["target"]
        platform, account = target["platform"], target["account"]
        changes: dict[str, Any] = dict(data["changes"])
        base = {"update_id": data["update_id"], "target": target, "video_id": data["video_id"]}

        def failed(error: dict[str, Any], retryable: bool = False) -> None:
            ctx.emit(
                "metadata.failed",
                {**base, "error": error, "retryable": retryable, "attempt": data["attempt"]},
            )

        try:
            adapter = app.platforms.get(platform)
        except KeyError as exc:
            failed(_error("platform_not_configured", str(exc.args[0]), ErrorClass.PERMANENT))
            return
        update = getattr(adapter, "update_video", None)
        set_thumbnail = getattr(adapter, "set_thumbnail", None)
        fields = {
            k: changes[k] for k in ("title", "description", "tags", "privacy") if k in changes
        }
        if (fields and update is None) or (changes.get("thumbnail") and set_thumbnail is None):
            failed(
                _error(
                    "unsupported",
                    f"{platform} videos cannot be changed after publishing through its API",
                    ErrorClass.PERMANENT,
                )
            )
            return
        pause = await pauses.check(platform, account)
        if pause is not None:
            failed(pause.error())
            return
        # what is done survives a crash and a retry: each call is made once per update
        intent = await app.intents.load(f"metadata:{data['update_id']}:{platform}:{account}")
        state = intent.state
        try:
            if fields and not state.get("updated"):
                assert update is not None
                state["details"] = await update(account, data["video_id"], **fields)
                state["updated"] = True
                await app.intents.save(intent)
            if changes.get("thumbnail") and not state.get("thumbnail_set"):
                assert set_thumbnail is not None
                await set_thumbnail(account, data["video_id"], changes["thumbnail"])
                state["thumbnail_set"] = True
                await app.intents.save(intent)
        except PlatformError as exc:
            error = exc.as_data()
            if exc.kind == ErrorClass.QUOTA:
                reset = exc.reset_at or dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
                failed({**error, "reset_at": reset.astimezone(dt.UTC).isoformat()}, True)
                return
            if exc.retryable and ctx.attempt < INTERACTION_ATTEMPTS:
                raise  # the runtime retries with backoff; then metadata.failed below
            if exc.kind == ErrorClass.AUTH:
                await needs_reauth(ctx, platform, account, exc, event.subject)
            failed(error)
            return
        except AccountError as exc:
            failed(_error(exc.code, str(exc), ErrorClass.PERMANENT))
            return
        details = state.get("details") or {}
        ctx.emit(
            "metadata.updated",
            {
                **base,
                "changes": changes,
                "details": {
                    k: v
                    for k, v in details.items()
                    if k in ("updated", "privacy", "forced_private", "notice")
                },
            },
        )

    async def handle(event: Event, ctx: Context) -> None:
        if event.type == "publish.requested":
            await publish(event, ctx)
        elif event.type == "metadata.update":
            await metadata(event, ctx)
        else:
            await interact(event, ctx)

    return Consumer(
        "publisher",
        ["fabric.publish"],
        handle,
        batch_max=1,
        max_attempts=INTERACTION_ATTEMPTS,
        accepts=frozenset({"publish.requested", "interaction.requested", "metadata.update"}),
    )
