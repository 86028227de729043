"""``make demo``: the whole flow on the embedded defaults, no credentials, under a minute.

A short demo video is generated with ffmpeg (no binary in git). Two ``local`` accounts are
created, one reliable and one whose first upload attempt fails. Tasks: one due now (with a
comment and a like), one due in 10 s, one on the flaky account (fails once, retried after a
backoff), one with its voice changed (+3 semitones, in 1 s chunks: the voice.progress events
are printed), and one for an account that does not exist (rejected on ingress). All consumers
run in this process on the embedded SQLite log; progress is printed live, and a summary of the
read model closes the run. The published files land in the local "platform" folder.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from fabric.app import App
from fabric.config import Settings
from fabric.tasks_api import Rejected, history, status, submit
from fabric.testing.media import make_video

__all__ = ["run_demo"]

TERMINAL = {"completed", "failed", "cancelled", "rejected"}


def _print(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    from consumers import DEFAULT, load
    from fabric.cli import table
    from fabric.events import new_event, new_id

    home = settings.home / "demo"
    shutil.rmtree(home, ignore_errors=True)  # a fresh, repeatable run every time
    out = Path(args.out or Path("demo-out") / "platform").resolve()
    shutil.rmtree(out, ignore_errors=True)
    extra = dict(settings.extra, FABRIC_PLATFORM_DIR=str(out), FABRIC_RETRY_BASE_S="1")
    extra.setdefault("FABRIC_VOICE_THRESHOLD_S", "1")  # the 4 s video in 1 s voice chunks
    extra.setdefault("FABRIC_VOICE_CHUNK_S", "1")
    demo = dataclasses.replace(
        settings,
        home=home,
        log_url=f"sqlite:///{home / 'log.db'}",
        db_url=f"sqlite:///{home / 'fabric.db'}",
        extra=extra,
    )
    started = time.monotonic()
    video = await asyncio.to_thread(
        make_video, settings.home / "media" / "demo.mp4", 4.0, "640x360"
    )
    _print(f"demo video: {video} ({video.stat().st_size} bytes)")
    async with App(demo) as app:
        await app.accounts.add("local", "main")
        await app.accounts.add("local", "flaky", settings={"fail_first": 1})
        stop = asyncio.Event()
        runner = asyncio.create_task(app.runtime.run([load(n, app) for n in DEFAULT], stop))
        now = dt.datetime.now(dt.UTC)
        base: dict[str, Any] = {"video": {"path": str(video)}, "tags": ["demo", "content-fabric"]}
        specs: list[dict[str, Any]] = [
            {
                "targets": [{"platform": "local", "account": "main"}],
                "title": "Due now",
                "comment": "Posted by Content Fabric",
                "like": True,
            },
            {
                "targets": [{"platform": "local", "account": "main"}],
                "title": "Due in 10 s",
                "scheduled_at": (now + dt.timedelta(seconds=10)).isoformat(),
            },
            {
                "targets": [{"platform": "local", "account": "flaky"}],
                "title": "Fails once, then retries",
            },
            {
                "targets": [{"platform": "local", "account": "main"}],
                "title": "Voice +3 semitones",
                "voice": {"engine": "world", "pitch": 3},
            },
        ]
        voiced: dict[str, int] = {}  # voice task -> voice.progress events printed
        for spec in specs:
            task_id = await submit(app, {**base, **spec}, source="demo")
            if "voice" in spec:
                voiced[task_id] = 0
            _print(f"submitted {task_id[:13]}…  {spec['title']}")
        try:  # the CLI refuses this at once; a producer without a caller gets task.rejected
            await submit(
                app,
                {
                    **base,
                    "targets": [{"platform": "local", "account": "nobody"}],
                    "title": "Unknown account",
                },
                source="demo",
            )
        except Rejected as exc:
            _print(f"refused at once: {exc.code}: {exc}")
            rejected_id = new_id()
            await app.runtime.bus.publish(
                new_event(
                    "task.created",
                    {
                        **base,
                        "task_id": rejected_id,
                        "title": "Unknown account",
                        "targets": [{"platform": "local", "account": "nobody"}],
                    },
                    subject=rejected_id,
                    source="demo",
                )
            )
            _print(
                f"submitted {rejected_id[:13]}…  Unknown account (via the log: "
                "the orchestrator rejects it)"
            )
        _print("")
        seen: dict[str, tuple[Any, ...]] = {}
        while time.monotonic() - started < 55:
            rows = await app.db.fetchall(
                "SELECT id, title, state, retry_count, error FROM tasks ORDER BY created_at"
            )
            # progress read after the states, printed before them: a step that ended is
            # shown with all its chunks before the state it led to
            for task_id, printed in voiced.items():
                steps = [
                    e["data"] for e in await history(app, task_id) if e["type"] == "voice.progress"
                ]
                for p in steps[printed:]:
                    _print(
                        f"[{time.monotonic() - started:5.1f}s] {task_id[:13]}…  "
                        f"{'':26}    voice chunks {p['done']}/{p['total']}"
                    )
                voiced[task_id] = len(steps)
            for task_id, title, state, retries, error in rows:
                if seen.get(task_id) != (state, retries):
                    seen[task_id] = (state, retries)
                    note = f"  ({error})" if error and state != "completed" else ""
                    _print(
                        f"[{time.monotonic() - started:5.1f}s] {task_id[:13]}…  "
                        f"{title:26} -> {state}{' retry ' + str(retries) if retries else ''}"
                        f"{note}"
                    )
            if len(rows) == 5 and all(r[2] in TERMINAL for r in rows):
                break
            await asyncio.sleep(0.25)
        stop.set()
        await runner
        tasks = [
            dict(zip(["id", "title", "state", "retries", "error"], r, strict=True))
            for r in await app.db.fetchall(
                "SELECT id, title, state, retry_count, error FROM tasks ORDER BY created_at"
            )
        ]
        for t in tasks:
            t["id"] = t["id"][:13] + "…"
        uploads = [
            dict(zip(["account", "status", "attempts", "video_id", "url"], r, strict=True))
            for r in await app.db.fetchall(
                "SELECT account_name, status, attempts, video_id, video_url FROM uploads"
                " ORDER BY published_at"
            )
        ]
        report = await status(app)
    _print("")
    _print("tasks")
    _print(table(tasks, ["id", "title", "state", "retries", "error"]))
    _print("")
    _print("uploads")
    _print(table(uploads, ["account", "status", "attempts", "video_id", "url"]))
    _print("")
    for key, value in report["metrics"].items():
        _print(f"{key:26} {value}")
    _print(f"\nlocal platform folder: {out}")
    _print(f"finished in {time.monotonic() - started:.1f} s")
    ok = sum(t["state"] == "completed" for t in tasks) == 4 and len(tasks) == 5
    return 0 if ok else 1
