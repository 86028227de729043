"""Consumers by name. Each module builds a ``fabric.runtime.Consumer`` from the settings;
``python -m fabric consume NAME`` runs one as its own process, ``run.py`` runs a set."""

from __future__ import annotations

import importlib

from fabric.config import Settings
from fabric.runtime import Consumer

__all__ = ["REGISTRY", "load"]

REGISTRY: dict[str, str] = {
    "probe": "consumers.probe:consumer",
}


def load(name: str, settings: Settings) -> Consumer:
    try:
        module, _, attr = REGISTRY[name].partition(":")
    except KeyError:
        raise KeyError(f"unknown consumer {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    factory = getattr(importlib.import_module(module), attr)
    consumer: Consumer = factory(settings)
    return consumer
