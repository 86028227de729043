"""Turning untrusted input into events: a valid task becomes ``task.created``; anything else
becomes ``task.rejected`` with the reason, so no input disappears silently."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fabric.events import Event, new_event, new_id
from fabric.schemas import SchemaError
from fabric.tasks_api import build

if TYPE_CHECKING:
    from fabric.app import App

__all__ = ["event_for"]


def event_for(app: App, spec: Any, source: str) -> Event:
    """``task.created`` for a schema-valid spec, else ``task.rejected`` saying why."""
    if not isinstance(spec, dict):
        task_id = new_id()
        return new_event(
            "task.rejected",
            {"code": "invalid_task", "message": "a task must be a JSON object"},
            subject=task_id,
            source=source,
        )
    event = build(spec, source)
    try:
        app.runtime.bus.message(event)
    except SchemaError as exc:
        task = {
            k: spec[k]
            for k in ("title", "video", "targets")
            if k in spec and isinstance(spec[k], str | dict | list)
        }
        return new_event(
            "task.rejected",
            {"code": "invalid_task", "message": str(exc), "task": task},
            subject=event.subject,
            source=source,
        )
    return event
