"""Voice processing: extract, split, convert, join, separate, remix, mux (ARCHITECTURE.md §5).

Each step is a plain function over files (paths in, paths plus sha256 out), so consumers can
run them one event at a time and tests can run them directly. ``pipeline.convert_file`` runs
them all in one process; it is the reference the chunked event pipeline is measured against.

Submodules are imported on use: ``separate`` pulls in torch via audio-separator, which a
splitter or aggregator process does not need.
"""

from __future__ import annotations

from fabric.voice.errors import VoiceError

__all__ = ["VoiceError"]
