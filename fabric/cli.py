"""``python -m fabric`` / ``fabric``: run consumers, inspect the log, operate the DLQ.

Errors go to stderr with a non-zero exit code; normal output goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fabric import logs
from fabric.app import App
from fabric.config import Settings

__all__ = ["main"]

Command = Callable[[argparse.Namespace, Settings], Awaitable[int]]
COMMANDS: dict[str, Command] = {}


class UsageError(Exception):
    """A user mistake: printed without a traceback, exit code 2."""


def command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn

    return register


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain fixed-width table (no dependency, readable in logs and CI output)."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


# -- consumers ---------------------------------------------------------------------------
@command("consume")
async def _consume(args: argparse.Namespace, settings: Settings) -> int:
    from consumers import REGISTRY, load

    names = sorted(REGISTRY) if args.every_consumer else args.names
    if not names:
        raise UsageError("name the consumers to run, or --all")
    try:
        specs = [load(name, settings) for name in names]
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None
    async with App(settings) as app:
        await app.serve(specs)
    return 0


@command("topics")
async def _topics(args: argparse.Namespace, settings: Settings) -> int:
    async with App(settings) as app:
        rows = []
        for name, parts in sorted((await app.log.topics()).items()):
            ends = await app.log.end_offsets(name)
            rows.append({"topic": name, "partitions": parts, "records": sum(ends.values())})
        out(table(rows, ["topic", "partitions", "records"]))
    return 0


# -- DLQ ---------------------------------------------------------------------------------
@command("dlq")
async def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from fabric.dlq import list_dead_letters, redrive

    async with App(settings) as app:
        entries = await list_dead_letters(
            app.log, include_redriven=args.all or args.action == "show"
        )
        by_id = {e.id: e for e in entries}
        if args.action == "list":
            rows = [
                {
                    "id": e.id,
                    "time": e.time,
                    "consumer": e.data["consumer"],
                    "code": e.data["code"],
                    "source": f"{e.data['source']['topic']}/{e.data['source']['partition']}"
                    f"@{e.data['source']['offset']}",
                    "reason": e.data["reason"][:60],
                    "redriven": "yes" if e.redriven else "",
                }
                for e in entries
            ]
            out(table(rows, ["id", "time", "consumer", "code", "source", "reason", "redriven"]))
            out(f"{len(rows)} dead letter(s)")
            return 0
        if args.action == "show":
            entry = by_id.get(args.id or "")
            if entry is None:
                raise UsageError(f"no dead letter {args.id!r}")
            import orjson

            out(
                orjson.dumps(
                    dict(entry.data, id=entry.id, time=entry.time, redriven=entry.redriven),
                    option=orjson.OPT_INDENT_2,
                ).decode()
            )
            return 0
        # redrive
        if args.every:
            targets = [e for e in entries if not e.redriven]
        elif args.id in by_id:
            targets = [by_id[args.id]]
        else:
            raise UsageError(f"no open dead letter {args.id!r} (give an id or --all)")
        replacement = Path(args.file).read_bytes() if args.file else None
        if replacement is not None and len(targets) != 1:
            raise UsageError("--file replaces one dead letter's bytes: give one id")
        for entry in targets:
            rec = await redrive(app.runtime.bus, entry, replacement)
            out(f"redriven {entry.id} -> {rec.topic}/{rec.partition}@{rec.offset}")
    return 0


# -- demo --------------------------------------------------------------------------------
@command("demo")
async def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from fabric.demo import run_demo

    return await run_demo(settings, args)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="fabric", description=__doc__)
    ap.add_argument("--home", help="folder for embedded files (FABRIC_HOME)")
    ap.add_argument("--log-level", default=None)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("consume", help="run consumers (each name is a consumer group)")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", dest="every_consumer", action="store_true", help="every consumer")

    sub.add_parser("topics", help="topics, partitions and record counts")

    p = sub.add_parser("dlq", help="inspect and re-drive dead letters")
    p.add_argument("action", choices=["list", "show", "redrive"])
    p.add_argument("id", nargs="?")
    p.add_argument(
        "--all",
        dest="every",
        action="store_true",
        help="list: include redriven entries; redrive: every open entry",
    )
    p.add_argument("--file", help="redrive: publish these bytes instead of the original")

    p = sub.add_parser("demo", help="run the demo on the embedded defaults")
    p.add_argument("--out", default=None, help="local platform folder")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "every", None) is not None:
        args.all = args.every
    overrides: dict[str, Any] = {}
    if args.home:
        overrides["home"] = args.home
    settings = Settings.from_env(**overrides)
    logs.setup(args.log_level or settings.log_level)
    try:
        return asyncio.run(COMMANDS[args.command](args, settings))
    except UsageError as exc:
        sys.stderr.write(f"fabric: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
