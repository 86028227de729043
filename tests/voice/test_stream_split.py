"""Splitting while decoding: the same audio and chunk layout as extract + split, with the
first chunk out before the decode ends, and the clear errors of ``extract_audio``."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fabric.voice.audio import extract_audio, probe, sha256_file
from fabric.voice.errors import VoiceError
from fabric.voice.split import chunk_weights
from fabric.voice.stream_split import split_while_decoding
from tests.voice import media

SR = 44100


@pytest.fixture(scope="module")
def stereo_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 s of speech and music, stereo AAC in a small MP4."""
    root = tmp_path_factory.mktemp("stream-split")
    x = np.stack([media.speech(40.0, SR), 0.2 * media.music(40.0, SR)], axis=1)
    return media.make_video(root / "talk.mp4", 40.0, media.write_wav(root / "talk.wav", x, SR))


def test_chunks_tile_the_decoded_audio_and_the_first_is_out_before_the_decode_ends(
    stereo_video: Path, tmp_path: Path
) -> None:
    source = tmp_path / "source.wav"
    early: list[tuple[int, int, bool]] = []  # (index, count, source already complete?)
    got = split_while_decoding(
        stereo_video, source, tmp_path / "chunks", chunk_seconds=6, threshold_seconds=10,
        context_seconds=1.0, align_for=lambda sr: 5292, taper=0.25,
        on_chunk=lambda c, count: early.append((c.index, count, source.exists())),
    )  # fmt: skip
    assert got is not None
    info, chunks = got
    whole = extract_audio(stereo_video, tmp_path / "reference.wav")
    reference = sf.read(whole.path, dtype="float32", always_2d=True)[0]
    assert sf.read(str(source), dtype="float32", always_2d=True)[0].tobytes() == reference.tobytes()
    assert (info.frames, info.sample_rate, info.channels) == (whole.frames, SR, 2)
    stated = probe(stereo_video)
    count = len(chunk_weights(stated.audio_duration or stated.duration, 6, 0.25))
    assert len(chunks) == count == 10  # 7 equal; tapered: 6 of 5.3 s, 2 of 2.7 s, 2 of 1.3 s
    assert [i for i, _, _ in early] == list(range(count)) and {n for _, n, _ in early} == {count}
    assert early[0][2] is False  # chunk 0 announced while the source was still decoding
    assert chunks[0].start == 0 and chunks[-1].end == whole.frames
    for a, b in itertools.pairwise(chunks):
        assert a.end == b.start
    for c in chunks:
        data = sf.read(c.path, dtype="float32", always_2d=True)[0]
        assert c.ctx_start % 5292 == 0 and c.ctx_start <= c.start and c.end <= c.ctx_end
        assert np.array_equal(data, reference[c.ctx_start : c.ctx_end])
        assert c.sha256 == sha256_file(c.path)
    assert (chunks[-1].end - chunks[-1].start) < (chunks[0].end - chunks[0].start) / 2


def test_short_audio_is_left_to_the_whole_file_path(stereo_video: Path, tmp_path: Path) -> None:
    got = split_while_decoding(stereo_video, tmp_path / "s.wav", tmp_path / "c",
                               chunk_seconds=60, threshold_seconds=60, context_seconds=1.0)  # fmt: skip
    assert got is None and not (tmp_path / "s.wav").exists() and not (tmp_path / "c").exists()


def test_bad_inputs_get_the_same_errors_as_extraction(tmp_path: Path) -> None:
    silent = media.make_video(tmp_path / "mute.mp4", 2.0)  # no audio stream
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    for path, code in ((silent, "no_audio_stream"), (broken, "corrupt_audio"),
                       (tmp_path / "missing.mp4", "not_found")):  # fmt: skip
        with pytest.raises(VoiceError) as err:
            split_while_decoding(path, tmp_path / "s.wav", tmp_path / "c", chunk_seconds=1,
                                 threshold_seconds=0, context_seconds=0.1)  # fmt: skip
        assert err.value.code == code, (path.name, err.value)
    assert not (tmp_path / "s.wav").exists()
