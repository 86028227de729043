"""The splitter: where it cuts, what the chunk files hold, and how much memory it needs."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fabric.voice.audio import sha256_file
from fabric.voice.errors import VoiceError
from fabric.voice.split import Chunk, plan_spans, quietest_point, split_audio
from tests.voice import media


def noise_with_gaps(seconds: float, sr: int, gaps: list[float], gap_s: float = 0.06) -> np.ndarray:
    rng = np.random.default_rng(5)
    x = 0.3 * rng.standard_normal((round(seconds * sr), 2))
    for g in gaps:
        x[round(g * sr) : round((g + gap_s) * sr)] *= 0.001  # -60 dB, not digital silence
    return x


def test_cuts_land_in_the_quiet_gap_near_each_boundary(tmp_path: Path) -> None:
    sr = 16000
    gaps = [22.1, 37.5, 61.7, 83.9]  # within +-5 s of the nominal cuts 20, 40, 60, 80 s
    x = noise_with_gaps(100.0, sr, [*gaps, 30.0])  # 30 s: quiet but far from any boundary
    x[round(30.0 * sr) : round(30.06 * sr)] = 0.0
    src = media.write_wav(tmp_path / "in.wav", x, sr)
    chunks = split_audio(
        src, tmp_path / "out", chunk_seconds=20, threshold_seconds=30, search_seconds=5
    )
    assert len(chunks) == 5
    for cut, gap in zip([c.start for c in chunks[1:]], gaps, strict=True):
        assert round(gap * sr) <= cut <= round((gap + 0.06) * sr), (cut / sr, gap)


def test_chunk_files_tile_the_input_and_carry_context(tmp_path: Path) -> None:
    sr = 44100
    x = np.stack([media.speech(50.0, sr), media.music(50.0, sr) * 0.2], axis=1)
    x = np.concatenate([x, x[:123]])
    src = media.write_wav(tmp_path / "in.wav", x, sr)
    source = sf.read(str(src), dtype="float32", always_2d=True)[0]
    align = 5292
    chunks = split_audio(src, tmp_path / "out", chunk_seconds=12, threshold_seconds=20, align=align)
    assert len(chunks) == 5
    assert chunks[0].start == 0 and chunks[-1].end == len(x)
    for a, b in itertools.pairwise(chunks):
        assert a.end == b.start
    for c in chunks:
        data, rate = sf.read(c.path, dtype="float32", always_2d=True)
        assert rate == sr and data.shape == (c.ctx_end - c.ctx_start, 2)
        assert np.array_equal(data, source[c.ctx_start : c.ctx_end])
        assert c.sha256 == sha256_file(c.path) and c.size == Path(c.path).stat().st_size
        assert c.ctx_start % align == 0
        assert c.ctx_start <= max(0, c.start - sr) and c.ctx_end == min(len(x), c.end + sr)
        assert Chunk.from_data(json.loads(json.dumps(c.as_data()))) == c
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


def test_audio_at_or_under_the_threshold_is_one_chunk(tmp_path: Path) -> None:
    sr = 48000
    x = media.vowel(4.0, sr)
    src = media.write_wav(tmp_path / "in.wav", x, sr, subtype="PCM_16")
    (chunk,) = split_audio(src, tmp_path / "out", chunk_seconds=1, threshold_seconds=4)
    assert (chunk.start, chunk.end, chunk.ctx_start, chunk.ctx_end) == (0, len(x), 0, len(x))
    assert sf.info(chunk.path).subtype == "PCM_16"  # lossless copy keeps the sample format
    assert (
        sf.read(chunk.path, dtype="int16")[0].tobytes()
        == sf.read(str(src), dtype="int16")[0].tobytes()
    )


def test_quietest_point_prefers_the_target_among_equal_silences() -> None:
    x = np.ones(10_000)
    x[1000:9000] = 0.0
    assert quietest_point(x, window=100, prefer=6000) == 6000
    assert abs(quietest_point(x, window=100, prefer=0) - 1050) <= 1


def test_bad_split_options(tmp_path: Path) -> None:
    src = media.write_wav(tmp_path / "in.wav", media.vowel(1.0, 16000), 16000)
    with pytest.raises(VoiceError) as err:
        plan_spans(src, chunk_seconds=0)
    assert err.value.code == "bad_option"
    with pytest.raises(VoiceError) as err:
        plan_spans(tmp_path / "missing.wav")
    assert err.value.code == "not_found"


CHILD = """
import json, resource, sys
from fabric.voice.split import split_audio
chunks = split_audio(sys.argv[1], sys.argv[2], chunk_seconds=300.0, align=5292)
tiles = all(a.end == b.start for a, b in zip(chunks, chunks[1:]))
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({
    "peak_rss_mb": hwm / 1024,
    "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "chunks": len(chunks), "end": chunks[-1].end, "tiles": tiles,
}))
"""


@pytest.mark.slow
def test_splitting_one_hour_of_44k_stereo_stays_far_under_1_5_gb(tmp_path: Path) -> None:
    """A 1-hour 44.1 kHz stereo file (635 MB of PCM_16, generated in 10 s blocks) is split in
    a child process, and the child's peak RSS is the measurement.

    Linux carries ``ru_maxrss`` across ``execve`` (the kernel keeps the larger of the old and
    new address space's high-water marks), so a child started from pytest reports at least
    pytest's own peak. The child's ``VmHWM`` (``/proc/self/status``) belongs to its new
    address space only and is what is asserted; ``ru_maxrss`` is printed and bounded too.
    """
    sr = 44100
    src = tmp_path / "hour.wav"
    block = np.stack([media.vowel(10.0, sr), 0.5 * media.music(10.0, sr)], axis=1)
    try:
        with sf.SoundFile(str(src), "w", samplerate=sr, channels=2, subtype="PCM_16") as f:
            for i in range(360):
                f.write(block * (0.3 + 0.6 * ((i * 7) % 10) / 10))
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(src), str(tmp_path / "chunks")],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"\n1-hour split: {result}")
        assert result["chunks"] == 12 and result["tiles"] and result["end"] == 3600 * sr
        assert result["ru_maxrss_mb"] < 1536  # includes pytest's own peak, see above
        assert result["peak_rss_mb"] < 1536
        assert result["peak_rss_mb"] < 200  # what block-wise reading actually gives
    finally:
        src.unlink(missing_ok=True)
        shutil.rmtree(tmp_path / "chunks", ignore_errors=True)


def test_taper_ends_in_halving_pairs_and_keeps_every_chunk_within_the_length() -> None:
    from fabric.voice.split import chunk_weights, taper_tiers

    assert taper_tiers(0.25) == [0.5, 0.25]
    assert taper_tiers(0.5) == [0.5]
    assert taper_tiers(0.1) == [0.8, 0.4, 0.2, 0.1]
    assert taper_tiers(1.0) == []
    assert chunk_weights(100.0, 40.0, 0.25) == [1.0] * 3  # 3 equal chunks: too few to taper
    assert chunk_weights(360.0, 45.0, 1.0) == [1.0] * 8  # taper 1: equal
    weights = chunk_weights(360.0, 45.0, 0.25)  # 8 equal chunks -> 11: 7, 2 halves, 2 quarters
    assert weights == [1.0] * 7 + [0.5, 0.5, 0.25, 0.25]
    assert 360.0 / sum(weights) <= 45.0  # no chunk longer than asked
    assert chunk_weights(360.0, 45.0, 0.5) == [1.0] * 7 + [0.5, 0.5]  # one step: one pair
    for taper in (0.0, 1.5):
        with pytest.raises(VoiceError) as err:
            chunk_weights(360.0, 45.0, taper)
        assert err.value.code == "bad_option"


def test_tapered_spans_tile_the_input_with_shorter_pairs_at_the_end(tmp_path: Path) -> None:
    sr = 8000
    src = media.write_wav(tmp_path / "in.wav", noise_with_gaps(120.0, sr, []), sr)
    spans = plan_spans(src, chunk_seconds=20, threshold_seconds=30, search_seconds=1, taper=0.25)
    lengths = [(s.end - s.start) / sr for s in spans]
    assert len(spans) == 9 and spans[0].start == 0 and spans[-1].end == 120 * sr
    assert all(a.end == b.start for a, b in itertools.pairwise(spans))
    # 120 s over 6.5 units: five of 18.46 s, two of 9.23 s and two of 4.62 s; each cut
    # moves at most 1 s
    assert all(16.4 <= n <= 20.5 for n in lengths[:5]), lengths
    assert all(7.2 <= n <= 11.3 for n in lengths[5:7]), lengths
    assert all(2.6 <= n <= 6.7 for n in lengths[7:]), lengths
