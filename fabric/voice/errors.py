"""The one exception of the voice library, with a machine-readable ``code``.

Consumers turn a ``VoiceError`` into a failure event (``code`` + ``message``); the code is what
the orchestrator and the operator tools match on, the message is for people. Codes:

- ``not_found``: the input file does not exist.
- ``no_audio_stream``: the media has no audio stream (a silent screen recording, say).
- ``corrupt_audio``: ffprobe/ffmpeg/libsndfile cannot read or decode the input.
- ``empty_audio``: an audio stream exists but holds zero samples.
- ``bad_option``: an engine, split or join option is unknown or out of range.
- ``unknown_engine``: no engine is registered under the requested name.
- ``bad_chunks``: chunk files do not fit together (gaps, wrong lengths, mixed rates).
- ``model_missing``: a separation model file (or its config/registry file) is not in the
  model directory; nothing is ever downloaded instead.
- ``model_unreadable``: the model file is there but cannot be loaded (corrupt, wrong config).
- ``separation_failed``: the model loaded but separating this audio failed.
- ``mux_failed``: ffmpeg could not put the audio back into the video.
"""

from __future__ import annotations

from typing import Any

__all__ = ["VoiceError"]


class VoiceError(Exception):
    """A voice-processing failure that is the input's or the configuration's fault.

    Retrying the same event will not help (unlike a crash of the worker), so consumers fail
    the task, or continue without the failed step where the task allows it.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def as_data(self) -> dict[str, Any]:
        """For events: the code and the human message, nothing else."""
        return {"code": self.code, "message": self.message}

    def __reduce__(self) -> tuple[type[VoiceError], tuple[str, str]]:
        # Raised inside ProcessPoolExecutor workers: keep both fields across pickling.
        return (type(self), (self.code, self.message))
