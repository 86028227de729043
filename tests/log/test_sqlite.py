import os
from pathlib import Path
from typing import Any

import pytest

from fabric.log import _bell
from fabric.log._bell import SAFETY_S
from fabric.log.sqlite import SqliteLog
from tests.log.contract import ProcessContract


class TestSqliteLog(ProcessContract):
    def url(self, tmp_path: Path) -> str:
        # short leases so a killed member's partitions move within ~1.5 s
        return f"sqlite:///{tmp_path}/log.db?session_timeout=1.5&heartbeat=0.2"


class TestDoorbell:
    """Appends from another process are looked for only after that process rang the bell.

    Two SqliteLog instances on one file stand for two processes: each has its own
    connections and its own inotify watch, as a second process would.
    """

    async def test_an_append_elsewhere_rings_and_is_delivered(self, tmp_path: Path) -> None:
        path = tmp_path / "log.db"
        async with SqliteLog(path, 2) as here, SqliteLog(path, 2) as there:
            assert here._bell is not None and there._bell is not None  # Linux: inotify
            sub = here.subscribe("g", ["t"])
            assert await sub.getmany(timeout=0.05) == []
            await there.publish("t", "k", b"v")
            got = await sub.getmany(timeout=SAFETY_S / 2)
            assert [r.value for r in got] == [b"v"]
            assert here._bell.rings >= 1
            await sub.close()

    async def test_an_idle_subscription_does_not_query(self, tmp_path: Path) -> None:
        async with SqliteLog(tmp_path / "log.db", 2, poll_interval=0.01) as log:
            sub = log.subscribe("g", ["t"])
            assert await sub.getmany(timeout=0.05) == []
            looks = 0
            real = sub._reader.call

            async def counted(fn: Any) -> Any:
                nonlocal looks
                looks += 1
                return await real(fn)

            sub._reader.call = counted  # type: ignore[method-assign]
            # 20 poll intervals with nothing appended: heartbeats write, but do not ring
            assert await sub.getmany(timeout=0.2) == []
            assert looks == 0
            await log.publish("t", "k", b"v")  # this process: a direct wake-up
            assert [r.value for r in await sub.getmany(timeout=0.2)] == [b"v"]
            assert looks == 1
            await sub.close()

    async def test_without_inotify_it_polls(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(_bell, "_libc", lambda: None)
        path = tmp_path / "log.db"
        async with SqliteLog(path, 2) as here, SqliteLog(path, 2) as there:
            assert here._bell is None
            sub = here.subscribe("g", ["t"])
            assert await sub.getmany(timeout=0.05) == []
            await there.publish("t", "k", b"v")
            assert [r.value for r in await sub.getmany(timeout=SAFETY_S / 2)] == [b"v"]
            await sub.close()

    async def test_a_bell_that_cannot_be_opened_means_polling(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real_open = os.open

        def refuse_bell(path: str, *args: Any, **kwargs: Any) -> int:
            if str(path).endswith("-bell"):
                raise PermissionError(13, "read-only", path)
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(_bell.os, "open", refuse_bell)
        async with SqliteLog(tmp_path / "log.db", 2) as log:
            assert log._bell is None
            await log.publish("t", "k", b"v")
            sub = log.subscribe("g", ["t"])
            assert [r.value for r in await sub.getmany(timeout=0.5)] == [b"v"]
            await sub.close()
