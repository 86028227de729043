"""http: ``POST /tasks`` (JSON task spec) -> 201 {"task_id"} or 422 {"code", "message"}.

Also ``GET /tasks/{id}`` (the task, its uploads and event history), ``GET /status`` (the
metrics) and ``GET /healthz``. Invalid input is answered at once and nothing is published.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from fabric import tasks_api

if TYPE_CHECKING:
    from fabric.app import App

__all__ = ["make_app", "run"]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, default=str), status=status, content_type="application/json"
    )


def make_app(app: App) -> web.Application:
    async def create(request: web.Request) -> web.Response:
        try:
            spec = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _json({"code": "invalid_json", "message": str(exc)}, 400)
        if not isinstance(spec, dict):
            return _json({"code": "invalid_task", "message": "a task is a JSON object"}, 422)
        try:
            task_id = await tasks_api.submit(app, spec, source="http")
        except tasks_api.Rejected as exc:
            return _json({"code": exc.code, "message": str(exc), "field": exc.field}, 422)
        return _json({"task_id": task_id}, 201)

    async def get_task(request: web.Request) -> web.Response:
        shown = await tasks_api.show(app, request.match_info["task_id"])
        if shown is None:
            return _json({"code": "not_found", "message": "no such task"}, 404)
        return _json(shown)

    async def status(request: web.Request) -> web.Response:
        return _json(await tasks_api.status(app))

    async def health(request: web.Request) -> web.Response:
        return _json({"ok": True})

    web_app = web.Application()
    web_app.add_routes(
        [
            web.post("/tasks", create),
            web.get("/tasks/{task_id}", get_task),
            web.get("/status", status),
            web.get("/healthz", health),
        ]
    )
    return web_app


async def run(app: App, host: str, port: int, stop: asyncio.Event | None = None) -> None:
    runner = web.AppRunner(make_app(app))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
