"""Consumers by name. Each module builds a ``fabric.runtime.Consumer`` from the App (its
settings and shared services); ``python -m fabric consume NAME`` runs one as its own
process, ``run.py`` runs a set."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from fabric.runtime import Consumer

if TYPE_CHECKING:
    from fabric.app import App

__all__ = ["DEFAULT", "REGISTRY", "load"]

REGISTRY: dict[str, str] = {
    "orchestrator": "consumers.orchestrator:consumer",
    "scheduler": "consumers.scheduler:consumer",
    "publisher": "consumers.publisher:consumer",
    "projector": "consumers.projector:consumer",
    "media": "consumers.media:consumer",
    "cleanup": "consumers.media:cleanup",
    "splitter": "consumers.splitter:consumer",
    "voice": "consumers.voice_worker:consumer",
    "aggregator": "consumers.aggregator:consumer",
    "notifier": "consumers.notifier:consumer",
    "refresher": "consumers.refresher:consumer",
    "probe": "consumers.probe:consumer",
}

# what `run.py` and `fabric consume --all` start
# notifier and refresher start with no configuration at all (no tokens, no SMTP, no
# accounts): they then send nothing and refresh nothing, so the demo needs no set-up
DEFAULT = (
    "orchestrator",
    "scheduler",
    "media",
    "publisher",
    "projector",
    "cleanup",
    "notifier",
    "refresher",
    "splitter",
    "voice",
    "aggregator",
)


def load(name: str, app: App) -> Consumer:
    try:
        module, _, attr = REGISTRY[name].partition(":")
    except KeyError:
        raise KeyError(f"unknown consumer {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    factory = getattr(importlib.import_module(module), attr)
    consumer: Consumer = factory(app)
    return consumer
