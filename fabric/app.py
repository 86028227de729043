"""Wiring: settings -> log, state database, runtime and the shared services consumers use."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fabric.config import Settings
from fabric.log import Log, open_log
from fabric.platforms import Platforms
from fabric.runtime import Consumer, Runtime
from fabric.secrets import Cipher, load_key
from fabric.store.accounts import AccountStore
from fabric.store.db import Database, open_db
from fabric.store.intents import DbIntentStore
from fabric.tasks.decide import Policy

__all__ = ["App"]


class App:
    """One process's services, like a small svcs registry: built once, closed together."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.log: Log = open_log(self.settings.log_url, partitions=self.settings.partitions)
        self.db: Database = open_db(self.settings.db_url)
        self.runtime = Runtime(self.log, self.db, namespace=self.settings.namespace)
        if sweep := self.settings.get("FABRIC_OUTBOX_SWEEP_S"):
            self.runtime.outbox_sweep_s = float(sweep)
        self.intents = DbIntentStore(self.db)
        self.runtime.services["app"] = self

    @functools.cached_property
    def accounts(self) -> AccountStore:
        return AccountStore(self.db, Cipher(load_key(self.settings.home, self.settings.extra)))

    @functools.cached_property
    def platforms(self) -> Platforms:
        local = self.settings.get("FABRIC_PLATFORM_DIR") or str(self.settings.home / "platform")
        return Platforms(self.accounts, {"local_dir": Path(local).resolve(), **self.settings.extra})

    @functools.cached_property
    def policy(self) -> Policy:
        get = self.settings.get
        return Policy(
            max_retries=int(get("FABRIC_MAX_RETRIES") or 3),
            retry_base_s=float(get("FABRIC_RETRY_BASE_S") or 30),
            retry_max_s=float(get("FABRIC_RETRY_MAX_S") or 3600),
            past_grace_s=float(get("FABRIC_PAST_GRACE_S") or 600),
        )

    async def __aenter__(self) -> App:
        self.settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self.log.start()
        await self.db.start()
        await self.runtime.bus.ensure_topics()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if "platforms" in self.__dict__:
            await self.platforms.close()
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
