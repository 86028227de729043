"""An App with every default consumer running in the background, for lifecycle tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from consumers import DEFAULT, load
from fabric.app import App
from fabric.config import Settings
from fabric.events import new_event, new_id

TERMINAL = ("completed", "failed", "cancelled", "rejected")


class Harness:
    def __init__(
        self,
        tmp_path: Path,
        *,
        secret_key: str,
        log_url: str | None = None,
        db_url: str | None = None,
        namespace: str | None = None,
        env: dict[str, str] | None = None,
        consumers: tuple[str, ...] = DEFAULT,
    ) -> None:
        self.tmp = tmp_path
        self.platform_dir = tmp_path / "platform"
        base = {
            "FABRIC_SECRET_KEY": secret_key,
            "FABRIC_PLATFORM_DIR": str(self.platform_dir),
            "FABRIC_RETRY_BASE_S": "0.05",
            "FABRIC_RETRY_MAX_S": "0.2",
            "FABRIC_NAMESPACE": namespace if namespace is not None else f"t{uuid.uuid4().hex[:8]}.",
        }
        if log_url:
            base["FABRIC_LOG"] = log_url
        if db_url:
            base["FABRIC_DB"] = db_url
        self.env = {**base, **(env or {})}  # what a second process of this deployment needs
        self.settings = Settings.from_env(env=self.env, home=tmp_path / "home")
        self.consumers = consumers
        self.app = App(self.settings)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Harness:
        await self.app.__aenter__()
        self.start()
        return self

    def start(self) -> None:
        self._stop = asyncio.Event()
        specs = [load(n, self.app) for n in self.consumers]
        self._task = asyncio.create_task(self.app.runtime.run(specs, self._stop))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        self.app.runtime.workers.clear()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
        await self.app.__aexit__(*exc)

    async def account(self, name: str, platform: str = "local", **settings: Any) -> None:
        await self.app.accounts.add(platform, name, settings=settings)

    async def create(self, video: Path, *accounts: str, **spec: Any) -> str:
        """Publish task.created straight onto the log (the orchestrator validates it)."""
        task_id = spec.pop("task_id", None) or new_id()
        data = {
            "task_id": task_id,
            "video": {"path": str(video)},
            "title": f"task {task_id[-6:]}",
            "targets": [{"platform": "local", "account": a} for a in accounts],
            **spec,
        }
        await self.app.runtime.bus.publish(
            new_event("task.created", data, subject=task_id, source="test")
        )
        return task_id

    async def command(self, task_id: str, kind: str, **data: Any) -> None:
        await self.app.runtime.bus.publish(new_event(kind, data, subject=task_id, source="test"))

    async def states(self, ids: list[str]) -> dict[str, str | None]:
        rows = await self.app.db.fetchall("SELECT id, state FROM tasks")
        known = dict(rows)
        return {i: known.get(i) for i in ids}

    async def wait(
        self, ids: list[str], states: tuple[str, ...] = TERMINAL, timeout: float = 60
    ) -> dict[str, str | None]:
        deadline = time.monotonic() + timeout
        while True:
            current = await self.states(ids)
            if all(s in states for s in current.values()):
                return current
            if time.monotonic() > deadline:
                stuck = {k: v for k, v in current.items() if v not in states}
                pytest.fail(
                    f"tasks not in {states} after {timeout}s: {list(stuck.items())[:5]}"
                    f" ({len(stuck)} in all)"
                )
            await asyncio.sleep(0.05)

    async def row(self, task_id: str) -> dict[str, Any]:
        cols = [
            "id",
            "status",
            "state",
            "retry_count",
            "error",
            "error_code",
            "account_name",
            "scheduled_time",
        ]
        rows = await self.app.db.fetchall(
            f"SELECT {', '.join(cols)} FROM tasks WHERE id=?", (task_id,)
        )
        return dict(zip(cols, rows[0], strict=True)) if rows else {}

    async def uploads(self, task_id: str) -> list[dict[str, Any]]:
        cols = ["platform", "account_name", "status", "attempts", "video_id", "error"]
        rows = await self.app.db.fetchall(
            f"SELECT {', '.join(cols)} FROM uploads WHERE task_id=? ORDER BY account_name",
            (task_id,),
        )
        return [dict(zip(cols, r, strict=True)) for r in rows]

    async def events(self, task_id: str) -> list[str]:
        from fabric.tasks_api import history

        return [e["type"] for e in await history(self.app, task_id)]

    def published_folders(self, account: str) -> list[Path]:
        root = self.platform_dir / account
        return sorted(p.parent for p in root.glob("*/metadata.json")) if root.exists() else []
