"""Publisher adapters by platform name (see ``base.py`` for the seam they share)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fabric.platforms.base import Platform
from fabric.store.accounts import AccountStore

__all__ = ["KNOWN", "Platforms"]

KNOWN = ("local", "youtube", "instagram", "tiktok")

Factory = Callable[["Platforms"], Platform]


class Platforms:
    """Adapter instances, created on first use and shared by the publisher's handlers."""

    def __init__(self, accounts: AccountStore, settings: dict[str, Any],
                 factories: dict[str, Factory] | None = None) -> None:
        self.accounts = accounts
        self.settings = settings
        self._factories: dict[str, Factory] = {"local": _local, **(factories or {})}
        self._built: dict[str, Platform] = {}

    def names(self) -> list[str]:
        return list(KNOWN)

    def register(self, name: str, factory: Factory) -> None:
        """Use ``factory`` for ``name`` (tests point adapters at their fake servers this way)."""
        self._factories[name] = factory
        self._built.pop(name, None)

    def get(self, name: str) -> Platform:
        if name not in self._built:
            factory = self._factories.get(name)
            if factory is None:
                raise KeyError(f"platform {name!r} has no adapter configured")
            self._built[name] = factory(self)
        return self._built[name]

    async def close(self) -> None:
        for adapter in self._built.values():
            await adapter.close()
        self._built.clear()


def _local(platforms: Platforms) -> Platform:
    from fabric.platforms.local import LocalPlatform

    return LocalPlatform(Path(platforms.settings["local_dir"]), platforms.accounts)
