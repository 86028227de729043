"""Fixtures for the voice tests: generated media, the chunked-vs-whole runs, a tiny separator.

All audio is generated (``tests/voice/media.py``); the expensive pieces (the 4-minute seam
run, the tiny BS-Roformer checkpoint) are session-scoped so several tests measure the same
run. Chunk conversions go through a real ``ProcessPoolExecutor`` with the top-level
``process_chunk``, which is how the voice workers run them, so picklability and the
per-process engine cache are exercised too.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from fabric.voice.engines import get_engine
from fabric.voice.join import JoinResult, join_chunks, join_reach
from fabric.voice.pipeline import process_chunk
from fabric.voice.separate import clear_separator_cache
from fabric.voice.split import Chunk, split_audio
from tests.voice import media


@dataclasses.dataclass(frozen=True)
class SeamRun:
    """One input converted twice: whole (one ``process_chunk`` call) and chunked + joined."""

    sample_rate: int
    source: np.ndarray  # (frames, channels)
    whole: np.ndarray  # (frames, channels)
    joined: np.ndarray  # (frames, channels)
    chunks: tuple[Chunk, ...]
    join: JoinResult

    @property
    def seams(self) -> list[int]:
        return [c.start for c in self.chunks[1:]]


def seam_run(
    root: Path,
    source: np.ndarray,
    sr: int,
    chunk_seconds: float,
    options: dict[str, Any],
    align: int | None = None,
) -> SeamRun:
    """Split ``source`` (aligned to the engine's grid unless ``align`` is given), convert
    chunks and the whole file in a 2-process pool, join the chunks."""
    src = root / "source.wav"
    sf.write(str(src), source.astype(np.float32), sr, subtype="FLOAT")
    if align is None:
        align = get_engine("world", options).frame_alignment(sr)
    chunks = split_audio(
        src,
        root / "chunks",
        chunk_seconds=chunk_seconds,
        threshold_seconds=chunk_seconds,
        align=align,
    )
    with ProcessPoolExecutor(max_workers=2) as pool:
        whole = pool.submit(process_chunk, str(src), str(root / "whole.wav"), "world", options)
        parts = [
            pool.submit(
                process_chunk,
                c.path,
                str(root / f"conv-{c.index:04d}.wav"),
                "world",
                options,
                c.span.keep(join_reach(sr)),
            )
            for c in chunks
        ]
        converted = [f.result()[0] for f in parts]
        whole_path = whole.result()[0]
    joined = join_chunks([c.span for c in chunks], converted, root / "joined.wav")
    read = lambda p: sf.read(str(p), dtype="float64", always_2d=True)[0]  # noqa: E731
    return SeamRun(sr, read(src), read(whole_path), read(joined.path), tuple(chunks), joined)


@pytest.fixture(scope="session")
def seam_run_4min(tmp_path_factory: pytest.TempPathFactory) -> SeamRun:
    """4 minutes of speech over a quiet music bed (no digital silence anywhere, so every cut
    lands in vocoder noise or a music tail, the hardest place for a seam), mono 22.05 kHz
    (espeak's own rate; it keeps this run near 10 s), +3 semitones, 30 s chunks."""
    sr = 22050
    x = media.speech(240.0, sr) + 0.05 * media.music(240.0, sr)
    return seam_run(
        tmp_path_factory.mktemp("seams4"), x[:, None], sr, 30.0, {"pitch_semitones": 3.0}
    )


@pytest.fixture(scope="session")
def seam_run_stereo(tmp_path_factory: pytest.TempPathFactory) -> SeamRun:
    """40 s of true stereo at 44.1 kHz (right channel: quieter, 3 ms later, more music), so
    the per-channel envelope path runs; 10 s chunks, +2 semitones, formants -1."""
    sr = 44100
    v = media.speech(40.0, sr)
    m = media.music(40.0, sr)
    left = v + 0.04 * m
    right = 0.6 * np.roll(v, int(0.003 * sr)) + 0.08 * m
    return seam_run(
        tmp_path_factory.mktemp("seams_stereo"),
        np.stack([left, right], axis=1),
        sr,
        10.0,
        {"pitch_semitones": 2.0, "formant_semitones": -1.0},
    )


# -- separation ---------------------------------------------------------------------------

TINY_YAML: dict[str, Any] = {
    "audio": {
        "hop_length": 128,
        "n_fft": 512,
        "num_channels": 2,
        "sample_rate": 44100,
        "dim_t": 256,
        "chunk_size": 32640,
    },
    "model": {
        "dim": 32,
        "depth": 1,
        "stereo": True,
        "num_stems": 1,
        "time_transformer_depth": 1,
        "freq_transformer_depth": 1,
        "linear_transformer_depth": 0,
        "freqs_per_bands": [16] * 16 + [1],  # sums to n_fft // 2 + 1 = 257
        "dim_head": 16,
        "heads": 2,
        "mask_estimator_depth": 1,
        "stft_n_fft": 512,
        "stft_hop_length": 128,
        "stft_win_length": 512,
    },
    "training": {"instruments": ["Vocals", "Instrumental"], "target_instrument": "Vocals"},
    "inference": {"batch_size": 1, "dim_t": 256, "num_overlap": 2},
}

DOWNLOAD_LISTS = (
    "vr_download_list",
    "mdx_download_list",
    "mdx_download_vip_list",
    "demucs_download_list",
    "mdx23c_download_list",
    "mdx23c_download_vip_list",
    "roformer_download_list",
)


def build_tiny_roformer(model_dir: Path, *, dim: int = 32, seed: int = 0) -> Path:
    """An untrained BS-Roformer checkpoint built with audio-separator's own loader, plus its
    yaml and the ``download_checks.json`` registry that makes the library accept it offline
    (RECIPES.md). ``dim`` other than the yaml's gives a checkpoint that does not fit it."""
    import torch
    import yaml
    from audio_separator.separator.roformer.roformer_loader import RoformerLoader

    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "tiny.yaml").write_text(yaml.safe_dump(TINY_YAML))
    config = json.loads(json.dumps(TINY_YAML))
    config["model"]["dim"] = dim
    torch.manual_seed(seed)
    result = RoformerLoader().load_model(
        model_path=str(model_dir / "absent.ckpt"), config=config, device="cpu"
    )
    assert result.success, result.error_message
    torch.save(result.model.state_dict(), model_dir / "tiny.ckpt")
    checks: dict[str, dict[str, Any]] = {key: {} for key in DOWNLOAD_LISTS}
    checks["roformer_download_list"] = {"Roformer Model: tiny": {"tiny.ckpt": "tiny.yaml"}}
    (model_dir / "download_checks.json").write_text(json.dumps(checks))
    return model_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_roformer(tmp_path_factory.mktemp("models"))


@pytest.fixture
def fetches(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Make every ``requests.get`` inside audio-separator fail loudly, and record the URLs."""
    import audio_separator.separator.separator as sep_module

    seen: list[str] = []

    def refuse(url: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(url)
        raise AssertionError(f"audio-separator tried to download {url}")

    monkeypatch.setattr(sep_module.requests, "get", refuse)
    clear_separator_cache()
    yield seen
    clear_separator_cache()
