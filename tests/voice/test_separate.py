"""Separation through the real audio-separator code path, on a tiny BS-Roformer the tests
build (RECIPES.md), with every download refused (the ``fetches`` fixture)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fabric.voice.errors import VoiceError
from fabric.voice.pipeline import convert_file
from fabric.voice.separate import SeparationConfig, remix, separate_file
from tests.voice import media
from tests.voice.conftest import build_tiny_roformer

# Third-party noise from audio-separator's dependency stack, not from our code.
pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning:rotary_embedding_torch"),
    pytest.mark.filterwarnings("ignore:A window was not provided:UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:audio_separator"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pydub"),
]


def rms_db_windows(x: np.ndarray, sr: int, window_s: float = 0.05) -> np.ndarray:
    w = round(window_s * sr)
    frames = x[: len(x) // w * w].reshape(-1, w, x.shape[1])
    return 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=(1, 2)) + 1e-20)


def test_separate_offline_report_si_sdr_and_remix_reconstructs(
    tmp_path: Path, tiny_model_dir: Path, fetches: list[str]
) -> None:
    sr = 48000  # not the model's 44.1 kHz: stems must come back at the input's rate
    voice = media.speech(8.0, sr)
    music = 0.3 * media.music(8.0, sr)
    mix = (voice + music)[:, None]
    src = media.write_wav(tmp_path / "mix.wav", mix, sr)
    config = SeparationConfig("tiny.ckpt", str(tiny_model_dir))
    result = separate_file(src, tmp_path / "stems", config)
    assert fetches == []
    assert (result.model, result.model_name) == ("tiny.ckpt", "Roformer Model: tiny")
    vocals, rv = sf.read(result.vocals, dtype="float64", always_2d=True)
    background, rb = sf.read(result.background, dtype="float64", always_2d=True)
    assert rv == rb == sr and vocals.shape == background.shape == mix.shape

    si_sdr = media.si_sdr(vocals[:, 0], voice)
    baseline = media.si_sdr(mix[:, 0], voice)  # "separation" that returns the mix unchanged
    print(
        f"\nSI-SDR of separated vocals (untrained tiny BS-Roformer): {si_sdr:.2f} dB "
        f"(the unprocessed mix scores {baseline:.2f} dB)"
    )
    assert np.isfinite(si_sdr)

    mixed = remix(result.vocals, result.background, tmp_path / "remix.wav", 1.0, 1.0)
    back = sf.read(mixed.path, dtype="float64", always_2d=True)[0]
    assert back.shape == mix.shape and mixed.gain == 1.0 and not mixed.over_ceiling
    deviation = np.abs(rms_db_windows(back, sr) - rms_db_windows(mix, sr))
    snr = 10 * np.log10(np.sum(mix**2) / np.sum((back - mix) ** 2))
    print(f"remix 1/1: worst 50 ms RMS deviation {deviation.max():.5f} dB, SNR {snr:.1f} dB")
    assert deviation.max() < 0.5
    assert snr > 60


def test_remix_gains_and_limit(tmp_path: Path) -> None:
    sr = 44100
    v = media.vowel(2.0, sr)[:, None] * 1.6  # peaks at 0.8
    b = media.music(2.0, sr)[:, None] * 0.6
    vp = media.write_wav(tmp_path / "v.wav", v, sr)
    bp = media.write_wav(tmp_path / "b.wav", b, sr)
    quiet = remix(vp, bp, tmp_path / "q.wav", 0.5, 0.25)
    got = sf.read(quiet.path, dtype="float64", always_2d=True)[0]
    assert np.allclose(got, 0.5 * v + 0.25 * b, atol=1e-6)
    loud = remix(vp, bp, tmp_path / "l.wav", 1.0, 1.0)
    assert loud.over_ceiling and loud.peak > 1.0
    got = sf.read(loud.path, dtype="float64", always_2d=True)[0]
    assert np.max(np.abs(got)) <= 0.99 + 1e-6
    assert np.allclose(got, (v + b) * loud.gain, atol=1e-6)  # one constant gain, no distortion
    raw = remix(vp, bp, tmp_path / "r.wav", 1.0, 1.0, limit=False)
    assert raw.gain == 1.0 and np.max(np.abs(sf.read(raw.path)[0])) > 1.0
    with pytest.raises(VoiceError) as err:
        remix(vp, media.write_wav(tmp_path / "s.wav", b[:-1], sr), tmp_path / "x.wav")
    assert err.value.code == "stem_mismatch"


def test_missing_model_is_model_missing_and_fetches_nothing(
    tmp_path: Path, tiny_model_dir: Path, fetches: list[str]
) -> None:
    src = media.write_wav(tmp_path / "mix.wav", media.vowel(1.0, 44100), 44100)
    cases = {
        "no such file": SeparationConfig("absent.ckpt", str(tiny_model_dir)),
        "no such dir": SeparationConfig("tiny.ckpt", str(tmp_path / "nowhere")),
    }
    no_registry = tmp_path / "no_registry"
    shutil.copytree(tiny_model_dir, no_registry)
    (no_registry / "download_checks.json").unlink()
    cases["registry file missing"] = SeparationConfig("tiny.ckpt", str(no_registry))
    no_yaml = tmp_path / "no_yaml"
    shutil.copytree(tiny_model_dir, no_yaml)
    (no_yaml / "tiny.yaml").unlink()
    cases["config missing"] = SeparationConfig("tiny.ckpt", str(no_yaml))
    for why, config in cases.items():
        with pytest.raises(VoiceError) as err:
            separate_file(src, tmp_path / "stems", config)
        assert err.value.code == "model_missing", (why, err.value)
    assert fetches == []


def test_unreadable_models(tmp_path: Path, fetches: list[str]) -> None:
    src = media.write_wav(tmp_path / "mix.wav", media.vowel(1.0, 44100), 44100)
    corrupt = build_tiny_roformer(tmp_path / "corrupt")
    (corrupt / "tiny.ckpt").write_bytes(b"\x00not a checkpoint" * 100)
    mismatched = build_tiny_roformer(tmp_path / "mismatched", dim=48)  # yaml says dim 32
    for model_dir in (corrupt, mismatched):
        with pytest.raises(VoiceError) as err:
            separate_file(src, tmp_path / "stems", SeparationConfig("tiny.ckpt", str(model_dir)))
        assert err.value.code == "model_unreadable", err.value
    assert fetches == []


def test_convert_with_separation_per_chunk(
    tmp_path: Path, tiny_model_dir: Path, fetches: list[str]
) -> None:
    """The reference path with separation: per-chunk separation, engine on the vocals, both
    stems joined, remixed; exact length; the model that ran is reported."""
    sr = 44100
    mix = np.stack([media.speech(12.0, sr), 0.2 * media.music(12.0, sr)], axis=1).sum(axis=1)
    src = media.write_wav(tmp_path / "in.wav", np.stack([mix, mix * 0.8], axis=1), sr)
    result = convert_file(
        src,
        tmp_path / "out.wav",
        "world",
        {"pitch_semitones": 2},
        tmp_path / "work",
        chunk_seconds=5,
        threshold=5,
        separate=SeparationConfig("tiny.ckpt", str(tiny_model_dir)),
    )
    out, rate = sf.read(result.output, dtype="float32", always_2d=True)
    assert rate == sr and out.shape == (len(mix), 2)
    assert result.separation_model == "tiny.ckpt" and len(result.chunks) == 3
    assert result.remix is not None and np.all(np.isfinite(out))
    assert fetches == []
