"""The join: exact reassembly, crossfade power, SOLA alignment, and refusal of bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fabric.voice.errors import VoiceError
from fabric.voice.join import crossfade_gains, join_chunks, join_reach, sola_lag
from fabric.voice.split import split_audio
from tests.voice import media


@pytest.mark.parametrize(("sr", "channels"), [(44100, 1), (48000, 2)])
def test_unconverted_chunks_join_back_to_the_input(tmp_path: Path, sr: int, channels: int) -> None:
    """Chunks passed through unchanged (an identity engine) must give the input back: same
    length to the sample, same rate, samples equal to float precision across every fade."""
    v = media.speech(30.0, sr) + 0.05 * media.music(30.0, sr)
    x = v[:, None] if channels == 1 else np.stack([v, np.roll(v, 50) * 0.7], axis=1)
    x = np.concatenate([x, x[:999]])
    src = media.write_wav(tmp_path / "in.wav", x, sr)
    chunks = split_audio(src, tmp_path / "chunks", chunk_seconds=7, threshold_seconds=7)
    copies = []
    for c in chunks:
        copies.append(tmp_path / f"copy-{c.index}.wav")
        shutil.copyfile(c.path, copies[-1])
    result = join_chunks([c.span for c in chunks], copies, tmp_path / "out.wav")
    y, rate = sf.read(result.path, dtype="float32", always_2d=True)
    assert rate == sr and y.shape == x.shape and result.frames == len(x)
    assert np.max(np.abs(y - x.astype(np.float32))) < 1e-6
    assert len(result.seams) == len(chunks) - 1
    assert all(s.shift == 0 and s.correlation > 0.999 for s in result.seams)


@pytest.mark.parametrize("r", [0.0, 0.3, 0.7, 1.0])
def test_crossfade_keeps_expected_power_for_any_correlation(r: float) -> None:
    g_out, g_in = crossfade_gains(1764, r)
    power = g_out**2 + g_in**2 + 2 * r * g_out * g_in
    assert np.allclose(power, 1.0, atol=1e-12)
    assert g_out[0] > 0.99 and g_in[-1] > 0.99 and g_in[0] < 0.01  # fades out / in


def test_crossfade_of_uncorrelated_noise_keeps_its_level() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    a, b = rng.standard_normal((2, 200, n))
    g_out, g_in = crossfade_gains(n, 0.0)
    mixed = a * g_out + b * g_in
    level_db = 10 * np.log10(np.mean(mixed[:, n // 2 - 500 : n // 2 + 500] ** 2))
    assert abs(level_db) < 0.3  # a fixed sin^2/cos^2 fade would dip 3 dB here


def test_sola_finds_the_shift_of_a_periodic_signal_and_leaves_noise_alone() -> None:
    sr = 44100
    x = media.vowel(0.5, sr)
    n, lag_max, true_shift = 1764, 265, 37
    a = x[10_000 : 10_000 + n]
    b_ext = x[10_000 - lag_max + true_shift : 10_000 + n + lag_max + true_shift]
    lag, corr = sola_lag(a, b_ext, lag_max)
    assert lag == -true_shift and corr > 0.999
    rng = np.random.default_rng(1)
    lag, _ = sola_lag(rng.standard_normal(n), rng.standard_normal(n + 2 * lag_max), lag_max)
    assert lag == 0


def test_join_refuses_chunks_that_do_not_fit(tmp_path: Path) -> None:
    sr = 16000
    src = media.write_wav(tmp_path / "in.wav", media.speech(20.0, sr), sr)
    chunks = split_audio(src, tmp_path / "chunks", chunk_seconds=5, threshold_seconds=5)
    paths = [c.path for c in chunks]
    short = tmp_path / "short.wav"
    data, _ = sf.read(paths[1], dtype="float32")
    sf.write(str(short), data[:-10], sr, subtype="FLOAT")
    for spans, files in (
        ([c.span for c in chunks], [paths[0], str(short), *paths[2:]]),  # wrong length
        ([c.span for c in chunks[1:]], paths[1:]),  # does not start at 0
        ([c.span for c in chunks], paths[:-1]),  # a file missing
    ):
        with pytest.raises(VoiceError) as err:
            join_chunks(spans, files, tmp_path / "out.wav")
        assert err.value.code == "bad_chunks"
        assert not (tmp_path / "out.wav").exists()


def test_the_join_reads_nothing_past_join_reach(tmp_path: Path) -> None:
    """An engine may leave a chunk's context silent outside ``Span.keep(join_reach(sr))``
    (``VoiceEngine.process``'s ``keep``): the join must not read there. Every converted
    chunk here holds garbage outside that range, and the later chunks are delayed by 2 ms
    so SOLA moves them (the reach must cover the shift too); the output is unchanged."""
    sr = 44100
    x = media.vowel(24.0, sr)[:, None]
    src = media.write_wav(tmp_path / "in.wav", x, sr)
    chunks = split_audio(src, tmp_path / "chunks", chunk_seconds=6, threshold_seconds=6)
    reach = join_reach(sr)
    assert reach == 882 + 2 * 265  # half the 40 ms fade, and twice the 6 ms lag
    clean, dirty = [], []
    for c in chunks:
        y, _ = sf.read(c.path, dtype="float32", always_2d=True)
        if c.index:
            y = np.roll(y, round(0.002 * sr), axis=0)
        clean.append(media.write_wav(tmp_path / f"clean-{c.index}.wav", y, sr))
        k0, k1 = c.span.keep(reach)
        assert 0 <= k0 < k1 <= c.span.frames
        y[:k0] = 0.9
        y[k1:] = -0.9
        dirty.append(media.write_wav(tmp_path / f"dirty-{c.index}.wav", y, sr))
    spans = [c.span for c in chunks]
    a = join_chunks(spans, clean, tmp_path / "a.wav")
    b = join_chunks(spans, dirty, tmp_path / "b.wav")
    assert any(s.shift != 0 for s in a.seams)
    assert a.seams == b.seams
    ya = sf.read(a.path, dtype="float32")[0]
    yb = sf.read(b.path, dtype="float32")[0]
    assert np.array_equal(ya, yb)
