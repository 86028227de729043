"""The ``world`` engine: pitch, formants, shape/rate contract, determinism, options.

f0 is measured with the YIN in ``media.py``, not with pyworld, so the engine is not graded by
its own analysis.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fabric.voice.engines import (
    VoiceEngine,
    engine_names,
    engine_options,
    get_engine,
    world,
)
from fabric.voice.engines.world import WorldEngine
from fabric.voice.errors import VoiceError
from tests.voice import media


def f0_ratio(x: np.ndarray, y: np.ndarray, sr: int) -> tuple[float, int]:
    """Median over frames voiced in both of f0(y) / f0(x), and how many frames that was."""
    fx, fy = media.yin(x, sr), media.yin(y, sr)
    both = np.isfinite(fx) & np.isfinite(fy)
    return float(np.median(fy[both] / fx[both])), int(both.sum())


@pytest.mark.parametrize("sr", [44100, 48000])
@pytest.mark.parametrize("signal", ["vowel", "speech"])
def test_plus_three_semitones_scales_f0_by_2_pow_3_12(signal: str, sr: int) -> None:
    x = media.vowel(3.0, sr) if signal == "vowel" else media.speech(6.0, sr)
    y = get_engine("world", {"pitch_semitones": 3}).process(x.astype(np.float32), sr)
    ratio, frames = f0_ratio(x, y, sr)
    target = 2 ** (3 / 12)
    print(
        f"\n{signal} @ {sr}: median f0 ratio {ratio:.5f} (target {target:.5f}) over {frames} frames"
    )
    assert frames >= 50
    assert abs(ratio / target - 1) < 0.01


@pytest.mark.parametrize("signal", ["vowel", "speech"])
@pytest.mark.parametrize("shift", [3.0, -3.0])
def test_formant_shift_moves_the_envelope_and_keeps_f0(signal: str, shift: float) -> None:
    sr = 44100
    x = media.vowel(3.0, sr) if signal == "vowel" else media.speech(6.0, sr)
    y = get_engine("world", {"formant_semitones": shift}).process(x.astype(np.float32), sr)
    moved = media.envelope_shift_semitones(x, y, sr)
    ratio, frames = f0_ratio(x, y, sr)
    _, ex = media.spectral_envelope(x, sr)
    _, ey = media.spectral_envelope(y, sr)
    change_db = float(
        np.mean(np.abs(ex - ey)[(np.arange(len(ex)) > 10) & (np.arange(len(ex)) < 200)])
    )
    print(
        f"\n{signal} formant {shift:+}: envelope moved {moved:+.3f} st, "
        f"mean |envelope change| {change_db:.2f} dB, f0 ratio {ratio:.5f}"
    )
    assert abs(moved - shift) <= 0.75
    assert change_db > 2.0
    assert frames >= 50 and abs(ratio - 1) < 0.01


def test_pitch_shift_alone_keeps_the_formants() -> None:
    sr = 44100
    x = media.vowel(3.0, sr)
    y = get_engine("world", {"pitch_semitones": 4}).process(x.astype(np.float32), sr)
    assert abs(media.envelope_shift_semitones(x, y, sr)) <= 0.5


@pytest.mark.parametrize(("sr", "channels"), [(44100, 1), (44100, 2), (48000, 1), (48000, 2)])
def test_output_has_input_shape_rate_and_no_nan(sr: int, channels: int) -> None:
    v = media.speech(3.0, sr)
    x = v if channels == 1 else np.stack([v, 0.5 * np.roll(v, 100)], axis=1)
    x = np.concatenate([x, x[:37]])  # an odd length: not a multiple of any frame or block
    y = get_engine("world", {"pitch_semitones": -2}).process(x.astype(np.float32), sr)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(np.isfinite(y))
    # loudness stays in the same range as the input (a vocoder, not a gain stage)
    level = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean(x**2))
    assert -3.0 < level < 3.0


def test_identical_stereo_channels_stay_identical() -> None:
    sr = 44100
    v = media.speech(2.0, sr).astype(np.float32)
    y = get_engine("world", {"pitch_semitones": 1}).process(np.stack([v, v], axis=1), sr)
    mono = get_engine("world", {"pitch_semitones": 1}).process(v, sr)
    assert np.array_equal(y[:, 0], y[:, 1])
    assert np.array_equal(y[:, 0], mono)


def test_deterministic_across_instances() -> None:
    sr = 44100
    x = (media.speech(3.0, sr) + 0.05 * media.music(3.0, sr)).astype(np.float32)
    a = get_engine("world", {"pitch_semitones": 3}).process(x, sr)
    b = get_engine("world", {"pitch_semitones": 3}).process(x, sr)
    assert np.array_equal(a, b)


def test_silence_and_tiny_inputs() -> None:
    sr = 44100
    engine = get_engine("world", {"pitch_semitones": 5})
    silent = engine.process(np.zeros((5000, 2), dtype=np.float32), sr)
    assert silent.shape == (5000, 2) and not silent.any()
    tiny = engine.process(media.vowel(0.02, sr).astype(np.float32), sr)  # 882 frames < 5 hops
    assert tiny.shape == (882,) and np.all(np.isfinite(tiny))
    empty = engine.process(np.zeros(0, dtype=np.float32), sr)
    assert empty.shape == (0,)


def test_frame_alignment_is_a_whole_number_of_every_grid() -> None:
    engine = get_engine("world", {})
    for sr in (16000, 22050, 44100, 48000):
        align = engine.frame_alignment(sr)
        hop = round(0.010 * sr)
        assert align % (3 * hop) == 0 and align % 4 == 0
        assert 0.5 * sr <= align <= 1.5 * sr


def test_registry_and_options() -> None:
    assert "world" in engine_names()
    names = {o.name for o in engine_options("world")}
    assert {"pitch_semitones", "formant_semitones", "f0_method"} <= names
    engine = get_engine("world", {"pitch_semitones": "2.5", "f0_method": "harvest"})
    assert isinstance(engine, VoiceEngine)
    assert engine.describe()["options"]["pitch_semitones"] == 2.5
    with pytest.raises(VoiceError) as err:
        get_engine("world", {"pitch_shift": 3})
    assert err.value.code == "bad_option"
    with pytest.raises(VoiceError) as err:
        get_engine("world", {"f0_method": "crepe"})
    assert err.value.code == "bad_option"
    with pytest.raises(VoiceError) as err:
        get_engine("world", {"pitch_semitones": float("nan")})
    assert err.value.code == "bad_option"
    with pytest.raises(VoiceError) as err:
        get_engine("rvc", {})
    assert err.value.code == "unknown_engine"


def test_harvest_also_shifts_pitch() -> None:
    sr = 44100
    x = media.vowel(2.0, sr)
    y = get_engine("world", {"pitch_semitones": -5, "f0_method": "harvest"}).process(
        x.astype(np.float32), sr
    )
    ratio, _ = f0_ratio(x, y, sr)
    assert abs(ratio / 2 ** (-5 / 12) - 1) < 0.01


@pytest.mark.parametrize(
    ("sr", "stereo", "options"),
    [
        (22050, False, {"pitch_semitones": 3.0}),
        (44100, True, {"pitch_semitones": 2.0, "formant_semitones": -1.0}),
        (16000, False, {"ap_decimation": 1, "frame_period_ms": 5.0}),
    ],
)
def test_keep_gives_the_same_samples_inside_and_silence_outside(
    sr: int, stereo: bool, options: dict[str, float]
) -> None:
    """``keep`` is an optimisation, not an approximation: inside it the output equals the
    whole-input run bit for bit (WORLD's per-call safeguard noise included), outside it is
    silent. Keeps start and end anywhere: on no grid, at the edges, a few samples long."""
    v = media.speech(12.0, sr)
    m = media.music(12.0, sr)
    x = v + 0.05 * m
    if stereo:
        x = np.stack([x, 0.6 * np.roll(v, 100) + 0.08 * m], axis=1)
    engine = WorldEngine(options)
    full = engine.process(x, sr)
    n = len(x)
    rng = np.random.default_rng(7)
    keeps = [(0, n), (0, n // 3), (n // 2, n), (123, 4567), (n - 9, n)]
    keeps += [tuple(sorted(int(v) for v in rng.integers(0, n, 2))) for _ in range(3)]
    for k0, k1 in keeps:
        y = engine.process(x, sr, keep=(k0, k1))
        assert y.shape == full.shape and y.dtype == np.float32
        assert np.array_equal(y[k0:k1], full[k0:k1]), (k0, k1)
        assert not np.any(y[:k0]) and not np.any(y[k1:]), (k0, k1)


def test_keep_analyses_only_the_frames_near_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``keep`` saves: CheapTrick and D4C run on the frames the kept samples need (plus
    a ~0.24 s analysis block either side), not on the whole input."""
    sr = 22050
    x = media.speech(20.0, sr) + 0.05 * media.music(20.0, sr)
    frames: dict[str, int] = {"cheaptrick": 0, "d4c": 0}

    def counting(name: str) -> Any:
        real = getattr(world.pyworld, name)

        def call(x: np.ndarray, f0: np.ndarray, *args: Any, **kwargs: Any) -> Any:
            frames[name] += len(f0)
            return real(x, f0, *args, **kwargs)

        return call

    for name in frames:
        monkeypatch.setattr(world.pyworld, name, counting(name))
    engine = WorldEngine({"pitch_semitones": 3.0})
    engine.process(x, sr)
    whole = dict(frames)
    frames.update(cheaptrick=0, d4c=0)
    engine.process(x, sr, keep=(9 * sr, 11 * sr))  # 2 s of 20
    assert whole["cheaptrick"] >= 2000
    for name in frames:
        assert frames[name] < 0.2 * whole[name], (name, frames[name], whole[name])


@pytest.mark.parametrize("sr", [22050, 44100])
def test_pulse_train_is_worlds_periodic_synthesis_where_voiced(sr: int) -> None:
    """``_pulse_train`` against ``pyworld.synthesize`` (aperiodicity ~0) on a voiced stretch
    of speech: WORLD also adds a noise response at every pulse, -60 dB below the pulse
    where voiced and shaped by the full envelope at the unvoiced pulses near voicing edges
    (which ``_pulse_train`` leaves out), so compare inside the stretch, away from its edges."""
    pyworld = world.pyworld
    engine = WorldEngine({"pitch_semitones": 3.0})
    x = np.ascontiguousarray(media.speech(4.0, sr), dtype=np.float64)
    hop = engine._hop(sr)
    f0, times = engine._f0(x, sr)
    fft_size = pyworld.get_cheaptrick_fft_size(sr, 71.0)
    sp = pyworld.cheaptrick(x, f0, times, sr, fft_size=fft_size)
    a, b = max(engine._stretches(f0, fft_size, hop), key=lambda s: s[1] - s[0])
    f = np.ascontiguousarray(f0[a:b] * 2**0.25)
    env = np.maximum(sp[a:b], 1e-16)
    env[f == 0] = 1e-16
    ours = world._pulse_train(f, env, sr, hop)
    theirs = pyworld.synthesize(f, env, np.full(env.shape, 1e-6), sr, engine._period_ms(sr))
    assert len(ours) == len(theirs) == (b - a) * hop
    edge = (fft_size // hop + 4) * hop
    inner = slice(edge, len(ours) - edge)
    assert len(ours[inner]) > sr // 4  # a quarter second of voiced speech at least
    error = np.sum((ours[inner] - theirs[inner]) ** 2) / np.sum(theirs[inner] ** 2)
    print(f"\n{sr} Hz, {(b - a) * hop / sr:.2f} s stretch: relative error {np.sqrt(error):.2e}")
    assert np.sqrt(error) < 3e-3
