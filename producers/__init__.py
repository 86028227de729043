"""Task producers: where ``task.created`` events come from besides the CLI.

* ``db-poller``: rows an outside system inserts into ``tasks`` (status 'pending', no state)
  become ``task.created`` exactly once (how the original system was fed);
* ``mqtt``: JSON task specs published to an MQTT topic (aiomqtt);
* ``http``: ``POST /tasks`` with a JSON task spec (aiohttp), answered at once with the id or
  the reason it was refused.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fabric.app import App

__all__ = ["run_producer"]


async def run_producer(name: str, app: App, args: argparse.Namespace) -> None:
    if name == "db-poller":
        from producers.db_poller import run

        await run(app, interval=args.interval)
    elif name == "mqtt":
        from producers.mqtt import run as run_mqtt

        await run_mqtt(app, host=args.host, port=args.port or 1883, topic=args.topic)
    elif name == "http":
        from producers.http import run as run_http

        await run_http(app, host=args.host, port=args.port or 8080)
    else:
        raise KeyError(name)
