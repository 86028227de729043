"""The base of the fake platform servers: serve an aiohttp app on a loopback port."""

from __future__ import annotations

from typing import Self

from aiohttp import web

__all__ = ["FakeServer"]


class FakeServer:
    """Subclasses build ``self.app``; ``async with`` (or start/close) serves it."""

    app: web.Application
    base_url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: any free port); returns the base URL."""
        # no access log: request URLs can hold tokens (Telegram, refresh calls)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.base_url = f"http://{host}:{server.sockets[0].getsockname()[1]}"  # type: ignore[attr-defined]
        return self.base_url

    @property
    def url(self) -> str:
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
