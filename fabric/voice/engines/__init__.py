"""The ``VoiceEngine`` seam and the registry of engines by name.

An engine is built once per worker process from its options (cheap, validates them), loads
its heavy state once (``load()``: models, indexes, a GPU context), then converts many
chunks with ``process(samples, sample_rate)``. That split is what neural engines (RVC,
So-VITS, TTS) need: loading a model costs seconds, a chunk must not pay it again.

The contract every engine keeps, so the splitter and aggregator never care which one ran:

- ``samples`` is float ``(frames,)`` or ``(frames, channels)`` at any sample rate; the result
  has exactly the same shape (frames and channels) at the same rate, as float32. An engine
  that works at its own rate internally (16 kHz HuBERT, 40 kHz RVC) resamples both ways.
- Same input and options give the same output (chunked vs whole-file comparisons, retries
  and replays depend on it).
- ``keep`` (optional): the frames whose output the caller uses, the rest being context for
  the analysis. An engine may save work and leave the rest silent; inside ``keep`` its
  output must not change. Ignoring ``keep`` is always correct.
- No I/O: files are the caller's business (``fabric.voice.pipeline.process_chunk``).

Engines are registered by an import path, so ``torch`` is imported only by a worker that
actually runs a neural engine.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fabric.voice.errors import VoiceError

__all__ = [
    "DEFAULT_ENGINE",
    "EngineFactory",
    "OptionSpec",
    "VoiceEngine",
    "engine_names",
    "engine_options",
    "get_engine",
    "keep_freed_memory",
    "register_engine",
    "resolve_options",
]


@dataclasses.dataclass(frozen=True, slots=True)
class OptionSpec:
    """One engine option: what the CLI, the task schema and the docs show for it."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    def as_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type.__name__,
            "default": self.default,
            "help": self.help,
        }
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


@runtime_checkable
class VoiceEngine(Protocol):
    """A voice converter: build with options, ``load()`` once, ``process()`` many times."""

    name: str

    def load(self) -> None:
        """Acquire heavy state (models, devices). Idempotent; ``process`` calls it if needed."""
        ...

    def process(
        self, samples: np.ndarray, sample_rate: int, keep: tuple[int, int] | None = None
    ) -> np.ndarray:
        """Convert one chunk; same shape and rate out as in (see the module docstring).

        ``keep`` (frames ``[start, stop)``, None for all): the only part of the output the
        caller uses; the rest of the input is context. An engine may leave the output
        outside ``keep`` silent to save work, but inside it must give exactly what it gives
        without ``keep``; ignoring ``keep`` is always correct.
        """
        ...

    def describe(self) -> dict[str, Any]:
        """The engine name and its resolved options (and model ids), for events and logs."""
        ...

    def frame_alignment(self, sample_rate: int) -> int:
        """Frames between the engine's analysis-grid points (1 = no grid).

        The splitter starts every chunk's context on a multiple of this, so a chunk's
        analysis frames sit at the same absolute times as in a whole-file run (a hop-320
        HuBERT at 16 kHz would say 320; WORLD says its frame period times its coarse
        aperiodicity step). Cheap: must not need ``load()``.
        """
        ...


EngineFactory = Callable[[Mapping[str, Any]], VoiceEngine]
"""Builds an engine from raw options; a class with ``OPTIONS`` and ``__init__(options)``."""

DEFAULT_ENGINE = "world"  # a task's voice step without an engine named: the fast CPU one

_REGISTRY: dict[str, str | EngineFactory] = {
    DEFAULT_ENGINE: "fabric.voice.engines.world:WorldEngine",
}


def register_engine(name: str, factory: str | EngineFactory) -> None:
    """Register ``factory`` (or a ``"module:attr"`` path imported on first use) as ``name``."""
    _REGISTRY[name] = factory


def engine_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def _factory(name: str) -> EngineFactory:
    try:
        entry = _REGISTRY[name]
    except KeyError:
        raise VoiceError(
            "unknown_engine", f"no voice engine {name!r} (known: {', '.join(engine_names())})"
        ) from None
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = entry
    return entry


def engine_options(name: str) -> tuple[OptionSpec, ...]:
    """The options an engine accepts (empty when the factory does not declare ``OPTIONS``)."""
    return tuple(getattr(_factory(name), "OPTIONS", ()))


def get_engine(name: str, options: Mapping[str, Any] | None = None) -> VoiceEngine:
    """A new, not yet loaded engine. Raises ``VoiceError`` (unknown_engine, bad_option)."""
    return _factory(name)(dict(options or {}))


def resolve_options(specs: tuple[OptionSpec, ...], options: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in, types coerced, ranges and choices checked.

    Unknown names are an error, not ignored: a typo in a task's options (``pitch_shift`` for
    ``pitch_semitones``) would otherwise publish an unconverted video.
    """
    known = {s.name: s for s in specs}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise VoiceError("bad_option", f"unknown option(s) {unknown}; known: {sorted(known)}")
    out: dict[str, Any] = {}
    for spec in specs:
        value = options.get(spec.name, spec.default)
        try:
            if spec.type is bool and isinstance(value, str):
                value = value.strip().lower() in ("1", "true", "yes", "on")
            elif spec.type is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{value} is not a whole number")
            else:
                value = spec.type(value)
        except (TypeError, ValueError) as exc:
            raise VoiceError(
                "bad_option",
                f"{spec.name}={options.get(spec.name)!r}: expected {spec.type.__name__}",
            ) from exc
        if isinstance(value, float) and not math.isfinite(value):
            raise VoiceError("bad_option", f"{spec.name}={value!r} is not a finite number")
        if spec.choices is not None and value not in spec.choices:
            raise VoiceError("bad_option", f"{spec.name}={value!r}: choose one of {spec.choices}")
        if spec.minimum is not None and value < spec.minimum:
            raise VoiceError("bad_option", f"{spec.name}={value!r} is below {spec.minimum}")
        if spec.maximum is not None and value > spec.maximum:
            raise VoiceError("bad_option", f"{spec.name}={value!r} is above {spec.maximum}")
        out[spec.name] = value
    return out


_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Let glibc keep large freed blocks for reuse instead of returning them to the OS.

    An engine call allocates and frees (frames x bins) matrices of tens of MB. glibc maps
    every block over its mmap threshold afresh and unmaps it on free, so each call faults in
    its memory page by page again: 0.2 s of system time per minute of 44.1 kHz audio with
    ``world``, about 4 % of the engine time, plus colder caches. Raising the mmap and trim
    thresholds keeps those pages in the heap. The process then holds its peak memory until
    it exits: meant for processes that exist to run an engine (the voice worker's pool, a
    one-off conversion). Returns whether glibc took the settings (False elsewhere).
    """
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30) and mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
