"""End to end: convert_file (extract → split → engine → join → mux), exact durations, the
video stream copied untouched, and the pool-friendly ``process_chunk``."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fabric.voice.audio import sha256_file
from fabric.voice.errors import VoiceError
from fabric.voice.mux import mux_audio
from fabric.voice.pipeline import convert_file, process_chunk
from tests.voice import media


def ffprobe_streams(path: Path) -> list[dict[str, object]]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    streams: list[dict[str, object]] = json.loads(out.stdout)["streams"]
    return streams


def video_packets_md5(path: Path) -> str:
    out = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v", "-c", "copy",
         "-f", "md5", "-"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out.stdout.strip()


@pytest.mark.parametrize(("sr", "channels"), [(44100, 1), (44100, 2), (48000, 1), (48000, 2)])
def test_wav_in_wav_out_is_exact_to_the_sample(tmp_path: Path, sr: int, channels: int) -> None:
    v = media.speech(10.0, sr) + 0.03 * media.music(10.0, sr)
    x = v[:, None] if channels == 1 else np.stack([v, 0.7 * np.roll(v, 80)], axis=1)
    x = np.concatenate([x, x[:4321]])  # an awkward length
    src = media.write_wav(tmp_path / "in.wav", x, sr, subtype="PCM_24")
    result = convert_file(
        src, tmp_path / "out.wav", "world", {"pitch_semitones": 3}, tmp_path / "work",
        chunk_seconds=3, threshold=4,
    )  # fmt: skip
    y, rate = sf.read(result.output, dtype="float32", always_2d=True)
    assert rate == sr and y.shape == x.shape
    assert (result.frames, result.sample_rate, result.channels) == (len(x), sr, channels)
    assert len(result.chunks) == 4 and len(result.join.seams) == 3
    assert np.all(np.isfinite(y)) and 0.05 < np.abs(y).max() < 2.0
    assert result.engine_seconds > 0 and set(result.steps) >= {"extract", "split", "engine", "join"}


def test_video_in_video_out_copies_video_and_reencodes_audio(tmp_path: Path) -> None:
    sr = 48000
    audio = media.write_wav(tmp_path / "a.wav", np.stack([media.speech(6.0, sr)] * 2, axis=1), sr)
    video = media.make_video(tmp_path / "in.mp4", 6.0, audio)
    result = convert_file(
        video, tmp_path / "out" / "dubbed.mp4", "world", {"pitch_semitones": -2},
        tmp_path / "work", chunk_seconds=2, threshold=3,
    )  # fmt: skip
    out = Path(result.output)
    before = {s["codec_type"]: s for s in ffprobe_streams(video)}
    after = {s["codec_type"]: s for s in ffprobe_streams(out)}
    for key in ("codec_name", "profile", "width", "height", "pix_fmt", "r_frame_rate",
                "nb_frames", "extradata_size"):  # fmt: skip
        assert before["video"].get(key) == after["video"].get(key), key
    assert video_packets_md5(video) == video_packets_md5(out)  # bit-identical video packets
    assert after["audio"]["codec_name"] == "aac"
    assert int(str(after["audio"]["sample_rate"])) == sr and after["audio"]["channels"] == 2
    source_frames = sf.info(str(tmp_path / "work" / "source.wav")).frames
    assert result.frames == source_frames
    duration = float(str(after["audio"]["duration"]))
    assert abs(duration - source_frames / sr) <= 1024 / sr  # within one AAC frame
    assert [p.name for p in out.parent.iterdir()] == ["dubbed.mp4"]  # no temp files left


def test_mux_failure_leaves_no_output(tmp_path: Path) -> None:
    sr = 44100
    audio = media.write_wav(tmp_path / "a.wav", media.vowel(1.0, sr), sr)
    video = media.make_video(tmp_path / "in.mp4", 1.0)
    with pytest.raises(VoiceError) as err:
        mux_audio(video, audio, tmp_path / "out.mp4", codec="no_such_codec")
    assert err.value.code == "mux_failed"
    assert list(tmp_path.glob("out*")) == [] and not list(tmp_path.glob(".*"))
    ok = mux_audio(video, audio, tmp_path / "out.mp4", bitrate="96k", sample_rate=48000)
    (stream,) = [s for s in ffprobe_streams(ok) if s["codec_type"] == "audio"]
    assert stream["codec_name"] == "aac" and stream["sample_rate"] == "48000"


def test_process_chunk_in_a_process_pool_is_deterministic(tmp_path: Path) -> None:
    sr = 44100
    src = media.write_wav(
        tmp_path / "c.wav", np.stack([media.speech(4.0, sr), media.vowel(4.0, sr)], axis=1), sr
    )
    options = {"pitch_semitones": 3.0, "formant_semitones": 1.0}
    with ProcessPoolExecutor(max_workers=2) as pool:
        a, b = (
            pool.submit(process_chunk, str(src), str(tmp_path / f"{k}.wav"), "world", options)
            for k in ("a", "b")
        )
        (pa, secs_a), (pb, _) = a.result(), b.result()
    local, _ = process_chunk(str(src), str(tmp_path / "local.wav"), "world", options)
    assert sha256_file(pa) == sha256_file(pb) == sha256_file(local)
    assert sf.info(pa).frames == sf.info(str(src)).frames and sf.info(pb).channels == 2
    assert 0 < secs_a < 30
    # read once and checked against the event's sha256 while the engine runs: same output
    checked, _ = process_chunk(str(src), str(tmp_path / "checked.wav"), "world", options,
                               sha256=sha256_file(src))  # fmt: skip
    assert sha256_file(checked) == sha256_file(local)


def test_process_chunk_writes_nothing_for_a_chunk_that_is_not_its_sha256(tmp_path: Path) -> None:
    sr = 16000
    src = media.write_wav(tmp_path / "c.wav", media.vowel(1.0, sr), sr)
    out = tmp_path / "out" / "c.wav"
    with pytest.raises(VoiceError) as err:
        process_chunk(str(src), str(out), "world", {}, sha256="0" * 64)
    assert err.value.code == "bad_chunks"
    assert not out.exists() and not any(out.parent.glob("*"))
    (tmp_path / "junk.wav").write_bytes(b"RIFF, but not audio")
    with pytest.raises(VoiceError) as err:  # unreadable but as hashed: corrupt, not changed
        process_chunk(str(tmp_path / "junk.wav"), str(out), "world", {},
                      sha256=sha256_file(tmp_path / "junk.wav"))  # fmt: skip
    assert err.value.code == "corrupt_audio"
    with pytest.raises(VoiceError) as err:  # unreadable and not as hashed: changed
        process_chunk(str(tmp_path / "junk.wav"), str(out), "world", {}, sha256="1" * 64)
    assert err.value.code == "bad_chunks"
