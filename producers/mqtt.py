"""mqtt: JSON task specs published to an MQTT topic become tasks (aiomqtt, QoS 1).

QoS 1 may deliver a message twice: give each spec a ``task_id`` and the second copy is
dropped by the orchestrator (a task is created once). A payload that is not JSON, or not a
valid task, becomes ``task.rejected`` with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import aiomqtt
import orjson

from fabric.events import new_event, new_id
from producers.common import event_for

if TYPE_CHECKING:
    from fabric.app import App

__all__ = ["run"]

log = logging.getLogger("fabric.mqtt")


async def handle_payload(app: App, payload: bytes) -> str:
    try:
        spec = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        event = new_event(
            "task.rejected",
            {"code": "invalid_json", "message": f"not JSON: {exc}"},
            subject=new_id(),
            source="mqtt",
        )
    else:
        event = event_for(app, spec, "mqtt")
    await app.runtime.bus.publish(event)
    return event.type


async def run(
    app: App,
    host: str,
    port: int,
    topic: str,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    stop = stop or asyncio.Event()
    async with aiomqtt.Client(host, port, identifier=f"fabric-producer-{new_id()[:8]}") as client:
        await client.subscribe(topic, qos=1)
        if ready is not None:
            ready.set()
        messages = aiter(client.messages)
        while not stop.is_set():
            waiter = asyncio.ensure_future(anext(messages))
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if waiter not in done:
                waiter.cancel()
                break
            stopper.cancel()
            message = waiter.result()
            kind = await handle_payload(app, bytes(message.payload))  # type: ignore[arg-type]
            log.info("mqtt task", extra={"topic": str(message.topic), "result": kind})
