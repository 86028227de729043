"""The ``local`` platform: "publishes" by copying the video and a metadata JSON into a folder.

It needs no credentials, so the demo and the tests run the whole flow with it, and it is a
documented, public test double like the other adapters' fakes. Layout:

    <root>/<account>/<video_id>/video<ext>, metadata.json, interactions.json

``video_id`` is derived from the task and account, so a redelivered job finds its earlier
copy (same sha256) and returns it instead of publishing twice; the copy is written to a
temporary name and renamed, so a crash never leaves a half video under the final name.

Account settings (``fabric account add local NAME --set key=value``) inject failures for
demos and tests: ``fail_first`` (the first N attempts of each task fail, transient),
``fail_rate`` (a deterministic share of attempts fail, transient), ``fail_permanent``
(every attempt fails for good), ``daily_limit`` (uploads per UTC day, then quota deferral).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import orjson

from fabric.platforms.base import (
    ErrorClass,
    Intent,
    IntentStore,
    InteractionJob,
    InteractionResult,
    PlatformError,
    Progress,
    PublishJob,
    PublishResult,
)
from fabric.store.accounts import AccountStore

__all__ = ["LocalPlatform"]

_NS = uuid.UUID("1b0c52f6-3a0e-4c7f-8f0e-4c1d9a0e7b21")


def _chance(*parts: object) -> float:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class LocalPlatform:
    name = "local"

    def __init__(self, root: Path, accounts: AccountStore, chunk: int = 8 << 20) -> None:
        self.root = Path(root)
        self.accounts = accounts
        self.chunk = chunk

    def _folder(self, account: str, video_id: str) -> Path:
        return self.root / account / video_id

    async def publish(
        self, job: PublishJob, intent: Intent, intents: IntentStore, progress: Progress
    ) -> PublishResult:
        account = await self.accounts.require("local", job.account)
        settings = account.settings
        video_id = uuid.uuid5(_NS, f"{job.task_id}|{job.account}").hex[:16]
        folder = self._folder(job.account, video_id)
        url = f"file://{folder}"
        meta_path = folder / "metadata.json"
        if await asyncio.to_thread(_published, meta_path, job.video_sha256):
            return PublishResult(video_id, url, recovered=True, details={"folder": str(folder)})
        self._inject(job, settings)
        await self._quota(job.account, settings)
        meta = {
            "task_id": job.task_id,
            "account": job.account,
            "video_id": video_id,
            "title": job.title,
            "description": job.description,
            "tags": list(job.tags),
            "privacy": job.privacy,
            "sha256": job.video_sha256,
            "size": job.video_size,
            "file": "video" + (Path(job.video_path).suffix or ".mp4"),
            "attempt": job.attempt,
        }
        # no intent needed: the folder is the record (metadata.json with the sha256 = done)
        sent = await self._copy(job.video_path, folder, meta, job.video_size, progress)
        return PublishResult(video_id, url, bytes_sent=sent, details={"folder": str(folder)})

    def _inject(self, job: PublishJob, settings: dict[str, Any]) -> None:
        if settings.get("fail_permanent"):
            raise PlatformError(
                ErrorClass.PERMANENT,
                "injected_permanent",
                f"local account {job.account} rejects every upload (fail_permanent)",
            )
        if job.attempt <= int(settings.get("fail_first", 0)):
            raise PlatformError(
                ErrorClass.TRANSIENT,
                "injected_transient",
                f"injected failure of attempt {job.attempt} (fail_first)",
            )
        rate = float(settings.get("fail_rate", 0))
        if rate and _chance(job.task_id, job.attempt) < rate:
            raise PlatformError(
                ErrorClass.TRANSIENT,
                "injected_transient",
                f"injected failure of attempt {job.attempt} (fail_rate {rate})",
            )

    async def _quota(self, account: str, settings: dict[str, Any]) -> None:
        limit = settings.get("daily_limit")
        if limit is None:
            return
        today = dt.datetime.now(dt.UTC).date().isoformat()
        folder = self.root / account
        count = 0
        if folder.exists():
            for meta in folder.glob("*/metadata.json"):
                stamp = dt.datetime.fromtimestamp(meta.stat().st_mtime, dt.UTC).date().isoformat()
                count += stamp == today
        if count >= int(limit):
            reset = dt.datetime.combine(
                dt.date.fromisoformat(today) + dt.timedelta(days=1), dt.time(), dt.UTC
            )
            raise PlatformError(
                ErrorClass.QUOTA,
                "daily_limit",
                f"local account {account} published {count} of {limit} today",
                reset_at=reset,
            )

    async def _copy(
        self, src: str, folder: Path, meta: dict[str, Any], total: int, progress: Progress
    ) -> int:
        """Copy in a worker thread, block by block, fsync'd, then write the metadata (its
        arrival is the publish); progress after each block. All file work is in the thread:
        none of it blocks the event loop."""
        loop = asyncio.get_running_loop()
        done = 0
        reports: list[asyncio.Task[None]] = []

        def _report(n: int) -> None:
            reports.append(asyncio.ensure_future(progress(n, total)))

        def copy() -> int:
            nonlocal done
            if not os.path.exists(src):
                raise PlatformError(
                    ErrorClass.PERMANENT, "video_missing", f"{src} does not exist any more"
                )
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / meta["file"]
            tmp = folder / f".{final.name}.part"
            with open(src, "rb") as fin, open(tmp, "wb") as fout:
                while block := fin.read(self.chunk):
                    fout.write(block)
                    done += len(block)
                    if done < total:
                        loop.call_soon_threadsafe(_report, done)
                fout.flush()
                os.fsync(fout.fileno())
            os.replace(tmp, final)
            _write_json(folder / "metadata.json", meta)
            return done

        sent = await asyncio.to_thread(copy)
        await asyncio.gather(*reports)
        await progress(sent, total)
        return sent

    async def interact(
        self, job: InteractionJob, intent: Intent, intents: IntentStore
    ) -> InteractionResult:
        folder = self._folder(job.account, job.video_id)
        result = await asyncio.to_thread(_interact, folder, job)
        if result is None:
            raise PlatformError(
                ErrorClass.PERMANENT,
                "video_not_found",
                f"no local video {job.video_id} for {job.account}",
            )
        return result

    async def close(self) -> None:
        return None


def _published(meta_path: Path, sha256: str | None) -> bool:
    """Is this exact video already in its folder (a publish that finished before a crash)?"""
    if not meta_path.exists():
        return False
    return bool(orjson.loads(meta_path.read_bytes()).get("sha256") == sha256)


def _write_json(path: Path, value: Any) -> None:
    """Whole or not at all: a temporary file renamed over ``path``."""
    part = path.with_name(f".{path.name}.part")
    part.write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2))
    os.replace(part, path)


def _interact(folder: Path, job: InteractionJob) -> InteractionResult | None:
    """Record a comment or like in ``interactions.json``; None when the video is not there.
    Seen before (same interaction id): recovered, not added twice."""
    if not (folder / "metadata.json").exists():
        return None
    path = folder / "interactions.json"
    existing = orjson.loads(path.read_bytes()) if path.exists() else []
    for item in existing:
        if item["id"] == job.interaction_id:
            return InteractionResult(item["id"], recovered=True)
    existing.append({"id": job.interaction_id, "kind": job.kind, "content": job.content})
    _write_json(path, existing)
    return InteractionResult(job.interaction_id)
