"""Probing and extraction: rates and channels kept, samples exact, bad input named."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fabric.voice.audio import (
    CheckedRead,
    extract_audio,
    open_wav_writer,
    probe,
    sha256_file,
    write_wav,
    write_wav_file,
)
from fabric.voice.errors import VoiceError
from fabric.voice.pipeline import convert_file
from tests.voice import media


def mkv_with_flac(path: Path, wav: Path, seconds: float) -> Path:
    """A video whose audio is lossless (FLAC), so extraction can be checked sample by sample."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
         "-i", f"testsrc2=size=96x64:rate=5:duration={seconds}", "-i", str(wav),
         "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast",
         "-c:a", "flac", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    return path


@pytest.mark.parametrize(("sr", "channels"), [(44100, 1), (48000, 2), (22050, 2)])
def test_extract_keeps_rate_channels_and_every_sample(
    tmp_path: Path, sr: int, channels: int
) -> None:
    v = media.speech(3.0, sr)
    x = v[:, None] if channels == 1 else np.stack([v, -0.5 * v], axis=1)
    wav = media.write_wav(tmp_path / "in.wav", x, sr, subtype="PCM_16")
    video = mkv_with_flac(tmp_path / "in.mkv", wav, 3.0)
    info = probe(video)
    assert info.has_video and info.has_audio
    assert (info.sample_rate, info.channels, info.audio_codec) == (sr, channels, "flac")
    got = extract_audio(video, tmp_path / "out.wav")
    assert (got.sample_rate, got.channels, got.frames, got.subtype) == (
        sr,
        channels,
        len(x),
        "FLOAT",
    )
    want = sf.read(str(wav), dtype="float32", always_2d=True)[0]
    assert np.array_equal(sf.read(got.path, dtype="float32", always_2d=True)[0], want)


def test_extract_from_aac_video_keeps_rate_and_duration(tmp_path: Path) -> None:
    sr = 48000
    wav = media.write_wav(tmp_path / "in.wav", np.stack([media.vowel(2.0, sr)] * 2, axis=1), sr)
    video = media.make_video(tmp_path / "in.mp4", 2.0, wav)
    got = extract_audio(video, tmp_path / "out.wav")
    assert got.sample_rate == sr and got.channels == 2
    assert abs(got.frames - 2 * sr) <= 1024  # within one AAC frame of the source


def test_video_without_audio_stream(tmp_path: Path) -> None:
    video = media.make_video(tmp_path / "silent.mp4", 1.0)
    assert probe(video).has_audio is False
    with pytest.raises(VoiceError) as err:
        extract_audio(video, tmp_path / "out.wav")
    assert err.value.code == "no_audio_stream"
    with pytest.raises(VoiceError) as err:
        convert_file(video, tmp_path / "o.mp4", "world", {}, tmp_path / "work")
    assert err.value.code == "no_audio_stream"
    assert not (tmp_path / "o.mp4").exists()


def test_corrupt_inputs(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    good = media.make_video(
        tmp_path / "good.mp4",
        2.0,
        media.write_wav(tmp_path / "a.wav", media.vowel(2.0, 44100), 44100),
    )
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # index (moov) lost
    for bad in (garbage, truncated):
        with pytest.raises(VoiceError) as err:
            extract_audio(bad, tmp_path / "out.wav")
        assert err.value.code == "corrupt_audio", err.value
    assert not (tmp_path / "out.wav").exists()
    assert not list(tmp_path.glob(".*"))  # no temporary leftovers


def test_zero_length_audio(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros((0, 2), dtype=np.float32), 44100, subtype="FLOAT")
    assert probe(empty).has_audio
    with pytest.raises(VoiceError) as err:
        extract_audio(empty, tmp_path / "out.wav")
    assert err.value.code == "empty_audio"
    with pytest.raises(VoiceError) as err:
        convert_file(empty, tmp_path / "o.wav", "world", {}, tmp_path / "work")
    assert err.value.code == "empty_audio"


def test_missing_input(tmp_path: Path) -> None:
    with pytest.raises(VoiceError) as err:
        probe(tmp_path / "nope.mp4")
    assert err.value.code == "not_found"
    assert err.value.as_data() == {"code": "not_found", "message": err.value.message}


def test_written_audio_is_byte_reproducible(tmp_path: Path) -> None:
    """Events identify files by sha256: the same audio must give the same bytes on every run
    (libsndfile's float PEAK chunk carries a timestamp, ffmpeg's header its version)."""
    sr = 44100
    x = np.stack([media.vowel(1.0, sr)] * 2, axis=1)
    write_wav(tmp_path / "a.wav", x, sr)
    data = (tmp_path / "a.wav").read_bytes()
    assert b"PEAK" not in data[:200]
    video = mkv_with_flac(
        tmp_path / "v.mkv", media.write_wav(tmp_path / "s.wav", x, sr, "PCM_16"), 1
    )
    first = extract_audio(video, tmp_path / "x1.wav")
    second = extract_audio(video, tmp_path / "x2.wav")
    assert sha256_file(first.path) == sha256_file(second.path)
    assert b"Lavf" not in Path(first.path).read_bytes()[:400]


def test_wav_file_built_in_memory_is_write_wavs_file(tmp_path: Path) -> None:
    """``write_wav_file`` (chunks, converted chunks) writes the bytes ``write_wav`` writes,
    in blocks or whole, and returns the sha256 and size of what is on disk; nothing else is
    left in the folder (no temporary file)."""
    sr = 22050
    x = np.stack([media.vowel(0.7, sr), media.vowel(0.7, sr, f0=180.0)], axis=1)
    write_wav(tmp_path / "ref.wav", x, sr)
    out = tmp_path / "out"
    out.mkdir()
    whole = write_wav_file(out / "whole.wav", [x], sr, 2, len(x))
    blocks = write_wav_file(out / "blocks.wav", [x[:1000], x[1000:5001], x[5001:]], sr, 2, len(x))
    reference = (tmp_path / "ref.wav").read_bytes()
    for name, (sha, size) in (("whole.wav", whole), ("blocks.wav", blocks)):
        assert (out / name).read_bytes() == reference
        assert (sha, size) == (sha256_file(out / name), len(reference))
    assert sorted(p.name for p in out.iterdir()) == ["blocks.wav", "whole.wav"]


def test_checked_read_refuses_a_changed_or_missing_chunk(tmp_path: Path) -> None:
    path = tmp_path / "c.wav"
    sha, _ = write_wav_file(path, [np.zeros((100, 1), np.float32)], 8000, 1, 100)
    good = CheckedRead(path, sha)
    good.check()
    assert good.raw == path.read_bytes()
    with pytest.raises(VoiceError) as err:
        CheckedRead(path, "0" * 64).check()
    assert err.value.code == "bad_chunks"
    path.unlink()
    with pytest.raises(VoiceError) as err:
        CheckedRead(path, sha)
    assert err.value.code == "not_found"


def test_files_past_4_gib_are_written_as_rf64(tmp_path: Path) -> None:
    """A 10-hour stereo float file is ~12.7 GB: past the RIFF size field, so RF64."""
    ten_hours = 10 * 3600 * 44100
    with open_wav_writer(tmp_path / "big.wav", 44100, 2, ten_hours) as f:
        f.write(np.full((1000, 2), 0.25, dtype=np.float32))
    info = sf.info(str(tmp_path / "big.wav"))
    assert (info.format, info.frames, info.channels) == ("RF64", 1000, 2)
    with open_wav_writer(tmp_path / "small.wav", 44100, 2, 3600 * 44100) as f:
        f.write(np.zeros((10, 2), dtype=np.float32))
    assert sf.info(str(tmp_path / "small.wav")).format == "WAV"
