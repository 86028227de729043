"""Wiring: settings -> log, state database and runtime, opened and closed together."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from typing import Any

from fabric.config import Settings
from fabric.log import Log, open_log
from fabric.runtime import Consumer, Runtime
from fabric.store.db import Database, open_db

__all__ = ["App"]


class App:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.log: Log = open_log(self.settings.log_url, partitions=self.settings.partitions)
        self.db: Database = open_db(self.settings.db_url)
        self.runtime = Runtime(self.log, self.db)

    async def __aenter__(self) -> App:
        self.settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self.log.start()
        await self.db.start()
        await self.runtime.bus.ensure_topics()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.log.close()
        await self.db.close()

    async def serve(self, consumers: Sequence[Consumer], stop: asyncio.Event | None = None) -> None:
        """Run consumers until SIGTERM/SIGINT (or ``stop``); in-flight work finishes first."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await self.runtime.run(consumers, stop)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
