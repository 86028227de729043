"""media: prepares the video for each target platform before any upload (issue 8).

For ``media.requested``: per target, probe the file, pick the platform's profile (YouTube
Shorts when the video is vertical or square and short enough), apply the account's profile
overrides, and run the smallest change that makes the file fit (often none: the same file
is passed through, untouched). The result is ``media.prepared`` with the decision and its
reason, or ``media.rejected`` naming the limit and the measured value, before any upload and
before any quota is spent. The ``local`` platform takes any file as it is.

Work files live in a per-task directory (0700, files 0600) under ``$FABRIC_HOME/work``; when
the task ends (completed, failed, cancelled, rejected) the directory is removed and the
cleanup is counted (the original system's "temp file cleanup success" metric).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fabric.events import Event
from fabric.media import (
    MediaError,
    ProfileError,
    WorkDirs,
    prepare,
    probe,
    profile,
    profile_name_for,
    thumbnail,
)
from fabric.runtime import Consumer, Context
from fabric.store.accounts import AccountError

if TYPE_CHECKING:
    from fabric.app import App

__all__ = ["consumer", "work_root"]

log = logging.getLogger("fabric.media")

ENDED = frozenset({"task.completed", "task.failed", "task.cancelled", "task.rejected"})


def work_root(app: App) -> Path:
    return Path(app.settings.get("FABRIC_WORK_DIR") or app.settings.home / "work")


def _rejected(
    ctx: Context,
    target: dict[str, str],
    code: str,
    message: str,
    extra: dict[str, Any] | None = None,
) -> None:
    error = {"class": "permanent", "code": code, "message": message}
    ctx.emit("media.rejected", {"target": target, "error": error, **(extra or {})})


def consumer(app: App) -> Consumer:
    dirs = WorkDirs(work_root(app))

    async def prepare_target(
        event: Event, ctx: Context, target: dict[str, str], source: dict[str, Any]
    ) -> None:
        platform = target["platform"]
        if platform == "local":
            ctx.emit(
                "media.prepared",
                {
                    "target": target,
                    "video": source,
                    "profile": None,
                    "short": False,
                    "thumbnail": None,
                    "decision": {
                        "mode": "passthrough",
                        "reason": "the local platform takes any file",
                    },
                },
            )
            return
        try:
            account = await app.accounts.require(platform, target["account"])
            info = await probe(source["path"])
            name = profile_name_for(platform, info)
            prof = profile(name, account.settings.get("profile_overrides"))
            work = dirs.create(event.subject or "task")
            label = f"{platform}-{target['account']}"
            prepared = await prepare(source["path"], prof, work, info=info, name=f"{label}.mp4")
            thumb = None
            image = event.data.get("thumbnail")
            at = (event.data.get("options") or {}).get("thumbnail_at")
            if image or at is not None:
                made = await thumbnail(
                    prepared.info, prof, work, at=at, image=image, name=f"{label}-thumb"
                )
                thumb = made.as_data()
        except MediaError as exc:
            extra = {
                k: v for k, v in (("limit", exc.limit), ("measured", exc.measured)) if v is not None
            }
            _rejected(ctx, target, exc.code, exc.message, extra)
            return
        except (AccountError, ProfileError) as exc:  # unknown account, bad profile overrides
            _rejected(ctx, target, exc.code, str(exc))
            return
        video = {
            "path": str(prepared.path),
            "sha256": prepared.sha256,
            "size": prepared.size,
            "duration_s": round(prepared.info.duration, 3),
            "width": prepared.info.display_width,
            "height": prepared.info.display_height,
        }
        ctx.emit(
            "media.prepared",
            {
                "target": target,
                "video": video,
                "profile": name,
                "short": name == "youtube_shorts",
                "decision": prepared.decision.as_data(),
                "thumbnail": thumb,
            },
        )

    async def handle(event: Event, ctx: Context) -> None:
        for target in event.data["targets"]:
            await prepare_target(event, ctx, target, dict(event.data["video"]))

    # Tasks are independent here (one media.requested per task at a time), so records run
    # concurrently: a passthrough is not stuck behind another task's transcode.
    return Consumer(
        "media",
        ["fabric.media"],
        handle,
        batch_max=1,
        ordered=False,
        concurrency=int(app.settings.get("FABRIC_MEDIA_CONCURRENCY") or 4),
        accepts=frozenset({"media.requested"}),
    )


def cleanup(app: App) -> Consumer:
    """Removes a task's work directory when the task ends (success, failure, cancellation,
    rejection) and counts the cleanups: the "temp file cleanup success" metric."""
    dirs = WorkDirs(work_root(app))

    async def handle(event: Event, ctx: Context) -> None:
        task_id = event.subject or ""
        if dirs.path(task_id).exists():  # nothing to clean is not counted
            key = "cleanup:removed" if dirs.remove(task_id) else "cleanup:failed"
            ctx.put(key, (await ctx.get(key) or 0) + 1)

    return Consumer("cleanup", ["fabric.tasks"], handle, accepts=ENDED, precheck=False)
