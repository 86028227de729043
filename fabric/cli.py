"""``python -m fabric`` / ``fabric``: tasks, accounts, consumers, status, replay, DLQ.

Errors go to stderr with a non-zero exit code (2 for a usage or input error, 1 for a
failure); normal output goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson

from fabric import logs
from fabric.app import App
from fabric.config import Settings

__all__ = ["main"]

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]
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
    cells = [["" if r.get(c) is None else str(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def dump(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2, default=str).decode()


# -- consumers and producers ---------------------------------------------------------------
@command("consume")
async def _consume(args: argparse.Namespace, settings: Settings) -> int:
    from consumers import DEFAULT, load

    names = list(DEFAULT) if args.every_consumer else args.names
    if not names:
        raise UsageError("name the consumers to run, or --all")
    async with App(settings) as app:
        try:
            specs = [load(name, app) for name in names]
        except KeyError as exc:
            raise UsageError(exc.args[0]) from None
        await app.serve(specs)
    return 0


@command("produce")
async def _produce(args: argparse.Namespace, settings: Settings) -> int:
    from producers import run_producer

    async with App(settings) as app:
        await run_producer(args.name, app, args)
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


# -- tasks -------------------------------------------------------------------------------
def _targets(values: list[str]) -> list[dict[str, str]]:
    targets = []
    for value in values:
        platform, sep, account = value.partition(":")
        if not sep or not account:
            raise UsageError(f"--to {value!r}: write PLATFORM:ACCOUNT, e.g. youtube:main")
        targets.append({"platform": platform, "account": account})
    return targets


def task_spec(args: argparse.Namespace) -> dict[str, Any]:
    """A task.created payload from a YAML/JSON file and/or flags (flags win)."""
    spec: dict[str, Any] = {}
    if args.file:
        import yaml

        try:
            loaded = yaml.safe_load(Path(args.file).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"cannot read task file {args.file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"{args.file} must hold a mapping of task fields")
        spec.update(loaded)
    if args.to:
        spec["targets"] = _targets(args.to)
    for name in ("title", "description", "privacy", "comment"):
        if getattr(args, name) is not None:
            spec[name] = getattr(args, name)
    if args.video:
        spec["video"] = {"path": str(Path(args.video).resolve())}
    elif isinstance(spec.get("video"), str):
        spec["video"] = {"path": str(Path(spec["video"]).resolve())}
    if args.tags is not None:
        spec["tags"] = [t.strip() for t in args.tags.split(",") if t.strip()]
    if args.at is not None:
        spec["scheduled_at"] = args.at
    if args.like:
        spec["like"] = True
    if args.thumbnail:
        spec["thumbnail"] = str(Path(args.thumbnail).resolve())
    if args.max_retries is not None:
        spec["max_retries"] = args.max_retries
    if args.voice_engine:
        spec["voice"] = {
            "engine": args.voice_engine,
            "pitch": args.pitch or 0.0,
            "formant": args.formant or 0.0,
        }
    if args.notify:
        spec["notify"] = [
            {"channel": n.partition(":")[0], "to": n.partition(":")[2]} for n in args.notify
        ]
    for required in ("targets", "video", "title"):
        if required not in spec:
            raise UsageError(f"a task needs {required} (flag or task file)")
    return spec


@command("task")
async def _task(args: argparse.Namespace, settings: Settings) -> int:
    from fabric import tasks_api

    async with App(settings) as app:
        if args.action == "add":
            spec = task_spec(args)
            try:
                task_id = await tasks_api.submit(app, spec)
            except tasks_api.Rejected as exc:
                sys.stderr.write(f"fabric: task rejected: {exc.code}: {exc}\n")
                return 2
            out(task_id)
            return 0
        if args.action == "list":
            rows = await tasks_api.list_tasks(
                app, status=args.status, account=args.account, limit=args.limit
            )
            out(table(rows, list(tasks_api.LIST_COLUMNS)))
            return 0
        if not args.id:
            raise UsageError(f"task {args.action} needs a task id")
        if args.action == "show":
            shown = await tasks_api.show(app, args.id)
            if shown is None:
                raise UsageError(f"no task {args.id!r}")
            out(dump(shown))
            _voice_progress(shown["events"])
            return 0
        command_type = {
            "retry": "task.retry_requested",
            "cancel": "task.cancel_requested",
            "reschedule": "task.reschedule_requested",
            "update": "metadata.update_requested",
        }[args.action]
        data: dict[str, Any] = {}
        if args.action == "update":
            changes: dict[str, Any] = {
                k: getattr(args, k)
                for k in ("title", "description", "privacy", "thumbnail")
                if getattr(args, k) is not None
            }
            if args.tags is not None:
                changes["tags"] = [t.strip() for t in args.tags.split(",") if t.strip()]
            if not changes:
                raise UsageError(
                    "task update needs a change: --title, --description, --tags,"
                    " --privacy or --thumbnail"
                )
            data = {"changes": changes, "at": args.at}
            if args.to:
                data["targets"] = _targets(args.to)
        if args.action == "cancel" and args.reason:
            data["reason"] = args.reason
        if args.action == "reschedule":
            if not args.at:
                raise UsageError("task reschedule needs --at TIME (with a UTC offset)")
            data["scheduled_at"] = args.at
        outcome = await tasks_api.command(app, args.id, command_type, data, wait_s=args.wait)
        out(outcome.message)
        return 0 if outcome.ok else 1
    return 0


def _voice_progress(events: list[dict[str, Any]]) -> None:
    """The voice step as one progress line, on stderr so stdout stays one JSON document."""
    seen = [e["data"] for e in events if e["type"] == "voice.progress"]
    if not seen:
        return
    done, total = max(p["done"] for p in seen), seen[-1]["total"]
    assembled = any(e["type"] == "voice.assembled" for e in events)
    bar = "#" * round(20 * done / total)
    sys.stderr.write(f"voice [{bar:<20}] {done}/{total} chunks{' - assembled' * assembled}\n")


@command("status")
async def _status(args: argparse.Namespace, settings: Settings) -> int:
    from fabric import tasks_api

    async with App(settings) as app:
        report = await tasks_api.status(app)
    if args.json:
        out(dump(report))
        return 0
    out("tasks by state")
    out(
        table(
            [{"state": k, "tasks": v} for k, v in report["tasks_by_state"].items()],
            ["state", "tasks"],
        )
    )
    m = report["metrics"]
    out("")
    for key, value in m.items():
        out(f"{key:32} {value}")
    if report["uploads_by_platform"]:
        out("")
        out(table(report["uploads_by_platform"], ["platform", "status", "uploads"]))
    if report.get("quota"):
        out("")
        out(
            table(
                report["quota"],
                ["platform", "account", "bucket", "used", "limit", "remaining", "reset_at"],
            )
        )
    if report.get("paused_accounts"):
        out("")
        out(table(report["paused_accounts"], ["platform", "account", "code", "since"]))
    if report.get("consumers"):
        out("")
        out(table(report["consumers"], ["consumer", "lag"]))
    return 0


@command("replay")
async def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from fabric.log import open_log
    from fabric.store.db import open_db
    from fabric.store.replay import replay

    log = open_log(settings.log_url)
    target = open_db(args.into)
    topic = settings.namespace + "fabric.tasks"
    await log.start()
    await target.start()
    try:
        rows = await target.fetchall("SELECT COUNT(*) FROM tasks")
        if rows[0][0] and not args.force:
            raise UsageError(
                f"{args.into} already has tasks: replay into an empty database "
                "(or --force to project over it)"
            )
        result = await replay(log, target, topic=topic)
    finally:
        await log.close()
        await target.close()
    out(dump(result))
    return 0


# -- accounts ----------------------------------------------------------------------------
def _settings_pairs(values: list[str]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UsageError(f"--set {item!r}: write KEY=VALUE")
        try:
            parsed[key] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed[key] = raw
    return parsed


@command("account")
async def _account(args: argparse.Namespace, settings: Settings) -> int:
    from fabric.store.accounts import AccountError

    async with App(settings) as app:
        store = app.accounts
        try:
            if args.action == "list":
                rows = [
                    {
                        "platform": a.platform,
                        "name": a.name,
                        "external_id": a.external_id,
                        "enabled": "yes" if a.enabled else "no",
                        "token_expires_at": a.token_expires_at,
                        "settings": orjson.dumps(a.settings).decode() if a.settings else "",
                    }
                    for a in await store.list(args.platform)
                ]
                out(
                    table(
                        rows,
                        [
                            "platform",
                            "name",
                            "external_id",
                            "enabled",
                            "token_expires_at",
                            "settings",
                        ],
                    )
                )
                return 0
            if not args.platform or not args.name:
                raise UsageError(f"account {args.action} needs PLATFORM NAME")
            if args.action == "add":
                from fabric.accounts_cli import add_account

                await add_account(app, args)
                out(f"added {args.platform} account {args.name}")
            elif args.action in ("disable", "enable"):
                await store.set_enabled(args.platform, args.name, args.action == "enable")
                out(f"{args.action}d {args.platform} account {args.name}")
            elif args.action == "remove":
                if not await store.remove(args.platform, args.name):
                    raise UsageError(f"no {args.platform} account named {args.name!r}")
                out(f"removed {args.platform} account {args.name}")
            elif args.action == "set":
                await store.update_settings(args.platform, args.name, **_settings_pairs(args.set))
                out(f"updated {args.platform} account {args.name}")
        except AccountError as exc:
            raise UsageError(str(exc)) from None
    return 0


# -- DLQ ---------------------------------------------------------------------------------
@command("dlq")
async def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from fabric.dlq import list_dead_letters, redrive

    async with App(settings) as app:
        entries = await list_dead_letters(
            app.runtime.bus, include_redriven=args.every or args.action == "show"
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
            out(dump(dict(entry.data, id=entry.id, time=entry.time, redriven=entry.redriven)))
            return 0
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
    ap = argparse.ArgumentParser(
        prog="fabric", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--home", help="folder for embedded files (FABRIC_HOME)")
    ap.add_argument("--log-level", default=None)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("consume", help="run consumers (each name is a consumer group)")
    p.add_argument("names", nargs="*")
    p.add_argument(
        "--all",
        dest="every_consumer",
        action="store_true",
        help="the default set (orchestrator, scheduler, publisher, projector, ...)",
    )

    p = sub.add_parser("produce", help="run a task producer: db-poller, mqtt, http")
    p.add_argument("name", choices=["db-poller", "mqtt", "http"])
    p.add_argument("--interval", type=float, default=1.0, help="db-poller: seconds between polls")
    p.add_argument("--host", default="127.0.0.1", help="mqtt broker / http bind address")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--topic", default="fabric/tasks/new", help="mqtt topic to subscribe to")

    sub.add_parser("topics", help="topics, partitions and record counts")

    p = sub.add_parser("task", help="add, list, show, retry, cancel, reschedule tasks")
    p.add_argument(
        "action", choices=["add", "list", "show", "retry", "cancel", "reschedule", "update"]
    )
    p.add_argument("id", nargs="?")
    p.add_argument("--file", help="add: a YAML or JSON task file")
    p.add_argument("--to", action="append", help="add: PLATFORM:ACCOUNT (repeatable)")
    p.add_argument("--video")
    p.add_argument("--title")
    p.add_argument("--description")
    p.add_argument("--tags", help="comma-separated")
    p.add_argument("--privacy", choices=["private", "unlisted", "public"])
    p.add_argument("--at", help="scheduled time with a UTC offset, e.g. 2026-12-01T18:00:00+01:00")
    p.add_argument("--comment")
    p.add_argument("--like", action="store_true")
    p.add_argument("--thumbnail", help="add: a thumbnail image; update: a new one")
    p.add_argument("--max-retries", type=int)
    p.add_argument("--voice-engine", choices=["world", "rvc", "sovits", "tts"])
    p.add_argument("--pitch", type=float)
    p.add_argument("--formant", type=float)
    p.add_argument("--notify", action="append", help="telegram:CHAT_ID or email:ADDRESS")
    p.add_argument("--status", help="list: filter by status")
    p.add_argument("--account", help="list: filter by account")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--reason", help="cancel: why")
    p.add_argument(
        "--wait",
        type=float,
        default=5.0,
        help="retry/cancel/reschedule: seconds to wait for the orchestrator's answer",
    )

    p = sub.add_parser("status", help="tasks by state and the metrics users know")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("replay", help="rebuild the read model from the log into a database")
    p.add_argument("--into", required=True, help="sqlite:///path or mysql://user:pass@host/db")
    p.add_argument("--force", action="store_true")

    p = sub.add_parser("account", help="add, list, enable, disable, remove, set accounts")
    p.add_argument("action", choices=["add", "list", "enable", "disable", "remove", "set"])
    p.add_argument("platform", nargs="?")
    p.add_argument("name", nargs="?")
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE account setting")
    p.add_argument(
        "--replace", action="store_true", help="add: reconnect an existing account (new tokens)"
    )
    p.add_argument("--client-secrets", help="youtube: OAuth client secrets JSON")
    p.add_argument(
        "--headless",
        action="store_true",
        help="youtube: print the URL and paste the redirected URL back",
    )
    p.add_argument("--token", help="instagram/tiktok: an access token (or FABRIC_TOKEN)")
    p.add_argument("--refresh-token", help="tiktok: the refresh token")
    p.add_argument("--external-id", help="instagram: the ig-user-id; tiktok: the open_id")

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
