"""Ingress validation of a task: everything that can be known before anything is attempted.

Used by the orchestrator (authoritative: its verdict becomes ``task.accepted`` or
``task.rejected``) and by the CLI and HTTP producers (to answer the caller at once). Each
failure has a machine-readable code and a message that names the limit and the value.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from fabric.store.accounts import AccountError, AccountStore
from fabric.tasks.decide import Policy, Verdict
from fabric.timeutil import wire

__all__ = ["LIMITS", "file_facts", "validate"]

# Metadata limits per platform (published limits; see ../shared/PLATFORMS.md)
LIMITS: dict[str, dict[str, int]] = {
    "youtube": {"title": 100, "description_bytes": 5000, "tags_chars": 500},
    "instagram": {"title": 2200, "description_bytes": 2200 * 4, "tags_chars": 2200},
    "tiktok": {"title": 2200, "description_bytes": 2200 * 4, "tags_chars": 2200},
    "local": {"title": 1000, "description_bytes": 100_000, "tags_chars": 10_000},
}


def _reject(code: str, message: str, field: str | None = None) -> Verdict:
    return Verdict(ok=False, code=code, message=message, field=field)


def _sha256(path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


async def _ffprobe(path: str) -> dict[str, Any] | None:
    proc = await asyncio.create_subprocess_exec(
        "ffprobe",
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        return None
    if proc.returncode != 0:
        return None
    try:
        parsed: dict[str, Any] = json.loads(out)
    except ValueError:
        return None
    return parsed


_FACTS: dict[tuple[str, int, int, int], dict[str, Any]] = {}


async def file_facts(path: str) -> Verdict | dict[str, Any]:
    """sha256, size and stream facts of a video, or a rejecting Verdict.

    Facts are cached by (path, inode, size, mtime): a file posted to many accounts or many
    times is probed and hashed once, and any change to it makes a new key.
    """
    try:
        st = os.stat(path)
    except OSError:
        st = None
    key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns) if st else None
    if key is not None and key in _FACTS:
        return dict(_FACTS[key])
    facts = await _file_facts(path)
    if key is not None and not isinstance(facts, Verdict):
        if len(_FACTS) > 10_000:
            _FACTS.clear()
        _FACTS[key] = dict(facts)
    return facts


async def _file_facts(path: str) -> Verdict | dict[str, Any]:
    if not os.path.exists(path):
        return _reject("video_missing", f"video file {path} does not exist", "video.path")
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        return _reject(
            "video_unreadable", f"video file {path} is not a readable file", "video.path"
        )
    probe = await _ffprobe(path)
    if probe is None or "format" not in probe:
        return _reject(
            "video_corrupt",
            f"ffprobe cannot read {path}: not a media file or damaged",
            "video.path",
        )
    videos = [
        s
        for s in probe.get("streams", [])
        if s.get("codec_type") == "video" and s.get("disposition", {}).get("attached_pic", 0) == 0
    ]
    if not videos:
        return _reject("no_video_stream", f"{path} has no video stream", "video.path")
    sha, size = await asyncio.to_thread(_sha256, path)
    if size == 0:
        return _reject("video_corrupt", f"{path} is empty", "video.path")
    facts: dict[str, Any] = {"path": os.path.abspath(path), "sha256": sha, "size": size}
    duration = probe["format"].get("duration")
    if duration is not None:
        facts["duration_s"] = round(float(duration), 3)
    facts["width"] = int(videos[0].get("width", 0))
    facts["height"] = int(videos[0].get("height", 0))
    return facts


def _due(spec: Mapping[str, Any], now: dt.datetime, policy: Policy) -> Verdict | str:
    raw = spec.get("scheduled_at")
    if not raw:
        return wire(now)
    try:
        when = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return _reject(
            "bad_scheduled_time", f"scheduled_at {raw!r} is not an ISO 8601 time", "scheduled_at"
        )
    if when.tzinfo is None:
        return _reject(
            "naive_scheduled_time",
            f"scheduled_at {raw!r} has no time zone: write it with an offset, "
            "e.g. 2026-12-01T18:00:00+01:00 or ...Z",
            "scheduled_at",
        )
    if when < now - dt.timedelta(seconds=policy.past_grace_s):
        return _reject(
            "scheduled_in_past",
            f"scheduled_at {raw} is more than {int(policy.past_grace_s)} s in the past",
            "scheduled_at",
        )
    return wire(max(when, now))  # within the grace window: due now


async def validate(
    spec: Mapping[str, Any],
    *,
    accounts: AccountStore,
    platforms: Sequence[str],
    now: dt.datetime,
    policy: Policy,
) -> Verdict:
    for i, target in enumerate(spec.get("targets", [])):
        platform, name = target["platform"], target["account"]
        if platform not in platforms:
            return _reject(
                "unknown_platform",
                f"platform {platform!r} is not configured "
                f"(configured: {', '.join(sorted(platforms))})",
                f"targets[{i}].platform",
            )
        try:
            await accounts.require(platform, name)
        except AccountError as exc:
            return _reject(exc.code, str(exc), f"targets[{i}].account")
    title = str(spec.get("title", ""))
    if not title.strip():
        return _reject("title_missing", "the title is empty", "title")
    description = str(spec.get("description", ""))
    tags = list(spec.get("tags", []))
    for target in spec.get("targets", []):
        limits = LIMITS.get(target["platform"], LIMITS["local"])
        where = target["platform"]
        if len(title) > limits["title"]:
            return _reject(
                "title_too_long",
                f"{where} titles are at most {limits['title']} "
                f"characters; this one has {len(title)}",
                "title",
            )
        if len(description.encode()) > limits["description_bytes"]:
            return _reject(
                "description_too_long",
                f"{where} descriptions are at most "
                f"{limits['description_bytes']} bytes; this one has "
                f"{len(description.encode())}",
                "description",
            )
        if sum(len(t) for t in tags) > limits["tags_chars"]:
            return _reject(
                "tags_too_long",
                f"{where} tags are at most {limits['tags_chars']} characters in all",
                "tags",
            )
    due = _due(spec, now, policy)
    if isinstance(due, Verdict):
        return due
    facts = await file_facts(str(spec["video"]["path"]))
    if isinstance(facts, Verdict):
        return facts
    return Verdict(ok=True, video=facts, due_at=due)
