#!/usr/bin/env python3
"""Task lifecycle benchmark (embedded SQLite log, local platform; one process, then two).

    python bench/tasks.py [--json] [--tasks 5000] [--timers 10000] [--latency 20]
                          [--processes 1,2|1|2] [--second all|NAMES]

* ``tasks_per_s``: N tasks (to 10 local accounts, one generated video) from ``task.created``
  through validation, scheduling, media preparation, upload, interactions and projection to
  ``completed`` in the read model: N / (last completion - first creation), every consumer
  in this one process. ``tasks_per_s_2p``: the same in a fresh home with a second process
  beside this one (below); its time starts once that process holds partitions.
* ``task_latency_p50_ms`` / ``_max_ms``: 20 tasks due now, one at a time on an idle
  system, from publishing ``task.created`` to a consumer receiving ``task.completed``.
* ``timer_lateness_p99_ms``: T durable timers all due at the same second; lateness is the
  time from due to a consumer receiving ``timer.fired`` (end to end, not just the firing).
* Two processes: a second one runs beside this one, sharing the log and the database. By
  default (``--second all``) it runs every consumer too (``fabric consume --all``): each
  consumer group has two members, and the log's assignment gives each half of the
  partitions, so each process carries half of the tasks. ``--second NAMES`` moves the named
  consumers to the second process instead (the split measured in stop 12: projector,
  notifier, cleanup). Why: in one process the event loop thread is 100 % busy while the
  other core is partly idle. 3,000 tasks, alternated in stop 13 (tasks/s): one process 135
  and 140, ``all`` 162 and 161, ``projector,notifier,cleanup`` 160 and 132.
* ``replay_events_per_s``: ``fabric replay`` of the read model from offset 0 into an empty
  SQLite database (read, validate, project, write).

On ext4, compare runs made a minute or more apart (after ``sync``), each in a fresh
``TMPDIR``: a run deletes some 15,000 files and folders at its end, and for about a minute
ext4 passes over recently deleted inodes when it allocates new ones (perf:
``recently_deleted``, ``find_inode_bit``). Right after a run, creating a folder took 320 us
here instead of 23 us, and a run in the same ``/tmp`` measured 230-253 tasks/s against
274-290 in a settled one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from consumers import DEFAULT, load  # noqa: E402
from fabric.app import App  # noqa: E402
from fabric.config import Settings  # noqa: E402
from fabric.events import Event, new_event, new_id  # noqa: E402
from fabric.runtime import Consumer, Context  # noqa: E402
from fabric.store.db import open_db  # noqa: E402
from fabric.store.replay import replay  # noqa: E402
from fabric.testing.leases import holders  # noqa: E402
from fabric.testing.media import make_video  # noqa: E402
from fabric.timeutil import parse, wire  # noqa: E402

KEY = "YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtMTI="  # 32 bytes, base64 (benchmark only)


def env(home: Path) -> dict[str, str]:
    return {"FABRIC_SECRET_KEY": KEY, "FABRIC_PLATFORM_DIR": str(home / "platform")}


def settings(home: Path) -> Settings:
    return Settings.from_env(env=env(home), home=home)


# With --processes 2, what the second process (``fabric consume ...``) runs. ``all``: every
# consumer, as this process does, so each group has two members and the log's assignment
# gives each half of the partitions (half of the tasks). A list of names moves those
# consumers out of this process instead.
SECOND = ("all",)


@contextlib.asynccontextmanager
async def second_process(
    home: Path, processes: int, second: tuple[str, ...] = SECOND
) -> AsyncIterator[int | None]:
    """With ``processes == 2``, ``fabric consume`` SECOND (``--all`` for ``all``) beside this
    process, stopped with SIGTERM (a graceful stop) whatever happens meanwhile. Yields its
    pid (None with one process)."""
    if processes == 1:
        yield None
        return
    names = ["--all"] if second == SECOND else list(second)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fabric", "--home", str(home), "--log-level", "WARNING",
        "consume", *names, env={**os.environ, **env(home)}, cwd=ROOT,
    )  # fmt: skip
    try:
        yield proc.pid
    finally:
        proc.terminate()
        await proc.wait()


async def joined(home: Path, pid: int) -> None:
    """Until the second process holds partitions: the time runs on two working processes,
    not on one while the other starts (1-3 s of a ~20 s run)."""
    deadline = time.monotonic() + 60
    while not any(
        f"-{pid}-" in m for m in holders(home / "log.db", "orchestrator", "fabric.tasks")
    ):
        if time.monotonic() > deadline:
            raise TimeoutError("the second process took no partition in 60 s")
        await asyncio.sleep(0.1)


def created(video: Path, account: str, title: str, comment: str | None = None) -> Event:
    task_id = new_id()
    data = {"task_id": task_id, "title": title, "video": {"path": str(video)},
            "targets": [{"platform": "local", "account": account}], "comment": comment}  # fmt: skip
    return new_event("task.created", data, subject=task_id, source="bench")


async def lifecycle(
    home: Path, n: int, processes: int = 1, second: tuple[str, ...] = SECOND
) -> tuple[float, dict[str, int]]:
    video = make_video(home / "clip.mp4", 1.0, "160x120")
    names = [c for c in DEFAULT if processes == 1 or second == SECOND or c not in second]
    async with App(settings(home)) as app, second_process(home, processes, second) as pid:
        accounts = [f"acct{i}" for i in range(10)]
        for name in accounts:
            await app.accounts.add("local", name)
        stop = asyncio.Event()
        runner = asyncio.create_task(app.runtime.run([load(c, app) for c in names], stop))
        if pid is not None:
            await joined(home, pid)
        started = time.time()
        for start in range(0, n, 500):
            events = [
                created(video, accounts[i % 10], f"bench {i}", "bench" if i % 2 else None)
                for i in range(start, min(n, start + 500))
            ]
            await app.runtime.bus.publish(*events)
        while True:
            rows = await app.db.fetchall("SELECT state, COUNT(*) FROM tasks GROUP BY state")
            states = dict(rows)
            if states.get("completed", 0) + states.get("failed", 0) >= n:
                break
            if time.time() - started > 1200:
                raise TimeoutError(f"not done: {states}")
            await asyncio.sleep(0.2)
        last = (await app.db.fetchall("SELECT MAX(completed_at) FROM tasks"))[0][0]
        finished = parse(str(last).replace(" ", "T") + "+00:00").timestamp()
        stop.set()
        await runner
    return n / (finished - started), states


async def latency(home: Path, n: int) -> dict[str, float]:
    """N tasks due now, one at a time on an idle system: from publishing ``task.created``
    to a consumer receiving ``task.completed`` (the first task, not counted, absorbs the
    consumers' start-up)."""
    video = make_video(home / "clip.mp4", 1.0, "160x120")
    async with App(settings(home)) as app:
        await app.accounts.add("local", "acct")
        ended: dict[str, asyncio.Event] = {}

        async def completed(event: Event, ctx: Context) -> None:
            ended.setdefault(event.subject or "", asyncio.Event()).set()

        stop = asyncio.Event()
        watcher = Consumer(
            "completion-watch", ["fabric.tasks"], completed, accepts=frozenset({"task.completed"})
        )
        consumers = [load(c, app) for c in DEFAULT] + [watcher]
        runner = asyncio.create_task(app.runtime.run(consumers, stop))
        took: list[float] = []
        for i in range(n + 1):
            event = created(video, "acct", f"latency {i}")
            done = ended.setdefault(event.subject or "", asyncio.Event())
            t0 = time.time()
            await app.runtime.bus.publish(event)
            await asyncio.wait_for(done.wait(), 60)
            if i:
                took.append((time.time() - t0) * 1000)
        stop.set()
        await runner
    took.sort()
    return {"p50": took[len(took) // 2], "max": took[-1]}


async def timers(home: Path, n: int) -> dict[str, float]:
    async with App(settings(home)) as app:
        lateness: list[float] = []
        done = asyncio.Event()

        async def fired(event: Event, ctx: Context) -> None:
            lateness.append(time.time() * 1000 - parse(event.data["due_at"]).timestamp() * 1000)
            if len(lateness) >= n:
                done.set()

        stop = asyncio.Event()
        watcher = Consumer(
            "timer-watch", ["fabric.tasks"], fired, accepts=frozenset({"timer.fired"})
        )
        runner = asyncio.create_task(app.runtime.run([load("scheduler", app), watcher], stop))
        due = wire(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5))
        for start in range(0, n, 1000):
            await app.runtime.bus.publish(
                *[
                    new_event(
                        "timer.set",
                        {"timer_id": f"t{i}", "due_at": due, "purpose": "due", "target": None},
                        subject=f"task-{i}",
                        source="bench",
                    )
                    for i in range(start, min(n, start + 1000))
                ]
            )
        await asyncio.wait_for(done.wait(), 120)
        stop.set()
        await runner
    lateness.sort()
    return {
        "p50": lateness[len(lateness) // 2],
        "p99": lateness[int(len(lateness) * 0.99)],
        "max": lateness[-1],
    }


async def rebuild(home: Path) -> dict[str, float]:
    app = App(settings(home))
    await app.log.start()
    target = open_db(f"sqlite:///{home / 'rebuilt.db'}")
    await target.start()
    result = await replay(app.log, target)
    await target.close()
    await app.log.close()
    return result


async def main(args: argparse.Namespace) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="fabric-bench-tasks-") as folder:
        second = tuple(args.second.split(","))
        homes = []
        for processes in sorted({int(p) for p in args.processes.split(",")}):
            home = Path(folder) / f"lifecycle{processes}"
            homes.append(home)
            rate, states = await lifecycle(home, args.tasks, processes, second)
            suffix = "" if processes == 1 else f"_{processes}p"
            out[f"tasks_per_s{suffix}"] = rate
            out[f"tasks_completed{suffix}"] = states.get("completed", 0)
        result = await rebuild(homes[0])
        out["replay_events_per_s"] = result["events_per_s"]
        out["replay_events"] = result["events"]
        took = await latency(Path(folder) / "latency", args.latency)
        out["task_latency_p50_ms"] = took["p50"]
        out["task_latency_max_ms"] = took["max"]
        lat = await timers(Path(folder) / "timers", args.timers)
        out["timer_lateness_p50_ms"] = lat["p50"]
        out["timer_lateness_p99_ms"] = lat["p99"]
        out["timer_lateness_max_ms"] = lat["max"]
    out["tasks"] = args.tasks
    out["timers"] = args.timers
    return {k: round(v, 3) for k, v in out.items()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--tasks", type=int, default=5000)
    ap.add_argument("--timers", type=int, default=10_000)
    ap.add_argument("--latency", type=int, default=20, help="tasks for task_latency_*")
    ap.add_argument(
        "--processes",
        default="1,2",
        choices=("1", "2", "1,2"),
        help="lifecycle runs, one after the other: 1 process (tasks_per_s), 2 (tasks_per_s_2p)",
    )
    ap.add_argument(
        "--second",
        default=",".join(SECOND),
        help="with --processes 2: 'all' (every consumer in both processes, the partitions"
        " split between them) or the consumers to move to the second process, by name",
    )
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(main(args))
    if args.json:
        print(json.dumps(result))
    else:
        goals = {
            "tasks_per_s": ">= 500",
            "tasks_per_s_2p": ">= 500",
            "timer_lateness_p99_ms": "< 1000",
        }
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key.ljust(width)}  {value:>14,.3f}  {goals.get(key, '')}")
