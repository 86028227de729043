"""The CLI as a user runs it: a real `python -m fabric` process on a temporary home."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

KEY = base64.urlsafe_b64encode(b"c" * 32).decode()


def fabric(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        FABRIC_SECRET_KEY=KEY,
        FABRIC_PLATFORM_DIR=str(home / "platform"),
        PYTHONPATH=str(ROOT),
    )
    env.pop("FABRIC_NAMESPACE", None)
    return subprocess.run(
        [sys.executable, "-m", "fabric", "--home", str(home), "--log-level", "ERROR", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_add_a_task_run_the_consumers_and_read_it_back(home: Path, video: Path) -> None:
    assert fabric(home, "account", "add", "local", "main").returncode == 0
    listed = fabric(home, "account", "list")
    assert "local" in listed.stdout and "main" in listed.stdout
    added = fabric(
        home,
        "task",
        "add",
        "--to",
        "local:main",
        "--video",
        str(video),
        "--title",
        "From the CLI",
        "--tags",
        "a,b",
        "--comment",
        "hi",
        "--like",
    )
    assert added.returncode == 0, added.stderr
    task_id = added.stdout.strip()
    assert len(task_id) == 36
    # run the consumers until the task is done (a separate process, stopped by SIGTERM)
    env = dict(
        os.environ,
        FABRIC_SECRET_KEY=KEY,
        FABRIC_PLATFORM_DIR=str(home / "platform"),
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.Popen(
        [sys.executable, "run.py", "--home", str(home), "--log-level", "ERROR"], cwd=ROOT, env=env
    )
    try:
        for _ in range(300):
            shown = fabric(home, "task", "show", task_id)
            row = json.loads(shown.stdout)["task"] if shown.returncode == 0 else None
            if row and row["state"] == "completed":
                break
        else:
            pytest.fail("the task did not complete")
    finally:
        proc.terminate()
        assert proc.wait(60) == 0  # SIGTERM: a clean shutdown
    detail = json.loads(shown.stdout)
    assert detail["task"]["keywords"] == "a,b"
    assert detail["uploads"][0]["status"] == "published"
    assert {i["interaction_type"] for i in detail["interactions"]} == {"comment", "like"}
    kinds = [e["type"] for e in detail["events"]]
    assert kinds[0] == "task.created" and kinds[-1] == "task.completed"
    listing = fabric(home, "task", "list", "--status", "completed")
    assert task_id in listing.stdout
    status = fabric(home, "status", "--json")
    report = json.loads(status.stdout)
    assert report["tasks_by_state"] == {"completed": 1}
    assert report["metrics"]["upload_success_rate"] == 1.0
    # the command is refused by the orchestrator once it runs: here it stays queued
    refused = fabric(home, "task", "cancel", task_id, "--wait", "0.5")
    assert refused.returncode == 0 and "queued" in refused.stdout


def test_input_errors_are_clear_and_publish_nothing(home: Path, video: Path) -> None:
    assert fabric(home, "account", "add", "local", "main").returncode == 0
    cases = {
        ("--to", "local:ghost"): "unknown_account",
        ("--to", "local:main", "--at", "2031-01-01T10:00:00"): "naive_scheduled_time",
        ("--to", "nowhere"): "write PLATFORM:ACCOUNT",
    }
    for extra, expected in cases.items():
        result = fabric(home, "task", "add", "--video", str(video), "--title", "t", *extra)
        assert result.returncode == 2, result
        assert expected in result.stderr and result.stdout == ""
    missing = fabric(home, "task", "add", "--to", "local:main", "--title", "t")
    assert missing.returncode == 2 and "needs video" in missing.stderr
    assert "0 dead letter" in fabric(home, "dlq", "list").stdout
    topics = fabric(home, "topics").stdout
    tasks_line = next(line for line in topics.splitlines() if line.startswith("fabric.tasks"))
    assert tasks_line.split()[-1] == "0"  # nothing was published
    assert fabric(home, "task", "show", "nope").returncode == 2
    assert "no task 'nope'" in fabric(home, "task", "retry", "nope").stdout
