"""A consumer-group member in its own OS process, for the log contract's process tests.

Handles ``probe.ping`` events of one topic: appends "member seq" to an invocations file (every
call, at least once) and stages an INSERT into ``handled`` (the consumer's state, written
with its inbox row: exactly once). ``--crash-at SEQ`` kills the process with SIGKILL in the
middle of handling SEQ the first time it is seen.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from fabric.events import Event
from fabric.log import open_log
from fabric.runtime import Consumer, Context, Runtime
from fabric.store.db import open_db


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default=str(os.getpid()))
    ap.add_argument("--crash-at", type=int, default=-1)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    args = ap.parse_args()
    out = open(args.out, "a", buffering=1)
    marker = Path(args.out + f".crashed-{args.crash_at}")

    async def handle(event: Event, ctx: Context) -> None:
        seq = event.data["seq"]
        out.write(f"{args.name} {seq}\n")
        if seq == args.crash_at and not marker.exists():
            marker.write_text("x")
            os.kill(os.getpid(), signal.SIGKILL)
        if args.delay_ms:
            await asyncio.sleep(args.delay_ms / 1000)
        ctx.sql("INSERT INTO handled (seq, member) VALUES (?, ?)", (seq, args.name))

    log = open_log(args.log)
    db = open_db(args.db)
    await log.start()
    await db.start()
    rt = Runtime(log, db)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    Path(args.out + f".ready-{args.name}").write_text("ready")
    await rt.run([Consumer(args.group, [args.topic], handle, batch_max=50)], stop)
    await log.close()
    await db.close()


if __name__ == "__main__":
    asyncio.run(main())
