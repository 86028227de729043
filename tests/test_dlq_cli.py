"""`fabric dlq list|show|redrive` on the embedded log, through the real CLI process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from fabric.app import App
from fabric.config import Settings
from fabric.events import encode, new_event
from tests.conftest import ROOT, eventually


def fabric(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fabric", "--home", str(home), "--log-level", "ERROR", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


async def run_probe_until(app: App, handled: int, dlq: int) -> None:
    from consumers import load

    stop = asyncio.Event()
    probe = load("probe", app.settings)
    task = asyncio.create_task(app.runtime.run([probe], stop))

    def reached() -> bool:
        w = app.runtime.workers.get("probe")
        return w is not None and w.stats.handled >= handled and w.stats.dlq >= dlq

    await eventually(reached, 30, f"probe handled={handled} dlq={dlq}")
    stop.set()
    await task
    app.runtime.workers.clear()


async def test_a_fixed_event_is_redriven_and_handled(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings.from_env(env={}, home=home)
    broken = new_event("probe.ping", {"seq": -3}, subject="s-1")  # seq must be >= 0
    async with App(settings) as app:
        await app.runtime.bus.publish(new_event("probe.ping", {"seq": 1}, subject="s-1"))
        await app.log.publish("fabric.probe", "s-1", encode(broken))
        await run_probe_until(app, handled=1, dlq=1)

    listed = fabric(home, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert "schema_violation" in listed.stdout and "1 dead letter(s)" in listed.stdout
    entry_id = listed.stdout.splitlines()[2].split()[0]

    shown = fabric(home, "dlq", "show", entry_id)
    detail = json.loads(shown.stdout)
    assert detail["code"] == "schema_violation" and detail["consumer"] == "probe"
    assert detail["source"]["key"] == "s-1" and detail["event_id"] == broken.id

    fixed = tmp_path / "fixed.json"
    fixed.write_bytes(encode(new_event("probe.ping", {"seq": 3}, subject="s-1")))
    redriven = fabric(home, "dlq", "redrive", entry_id, "--file", str(fixed))
    assert redriven.returncode == 0, redriven.stderr
    assert f"redriven {entry_id}" in redriven.stdout

    async with App(settings) as app:
        await run_probe_until(app, handled=1, dlq=0)  # the fixed event, in a new run
        rows = await app.db.fetchall("SELECT v FROM kv WHERE consumer='probe' AND k='pings'")
    assert rows[0][0] == b"2"  # the first ping and the fixed one
    assert "0 dead letter(s)" in fabric(home, "dlq", "list").stdout
    assert "1 dead letter(s)" in fabric(home, "dlq", "list", "--all").stdout


def test_unknown_dead_letter_is_a_clear_error(tmp_path: Path) -> None:
    result = fabric(tmp_path, "dlq", "show", "no-such-id")
    assert result.returncode == 2
    assert "no dead letter 'no-such-id'" in result.stderr and result.stdout == ""
