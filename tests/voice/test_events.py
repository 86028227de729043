"""The voice step through the event pipeline: splitter → voice workers → aggregator, on the
real runtime and the embedded SQLite log, inside whole tasks (orchestrator, media, local
publisher, cleanup).

What is measured, on the file the local platform received: the audio has as many samples as
the source's (both decoded by ffmpeg, compared exactly) at the same rate, and its median f0
is 2^(p/12) times the source's within 1 % (YIN from ``media.py``, not pyworld). Worker
processes are real ``python -m fabric consume voice`` children on the harness's files; one
is SIGKILLed in the middle of a chunk (seen in its JSON log: "chunk started" for an index
whose ``chunk.converted`` has not appeared), and every chunk must still be converted exactly
once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import soundfile as sf

from consumers.media import work_root
from consumers.splitter import TAPER, ModelCheck, VoiceSettings, make_plan
from fabric.events import loads, new_event
from fabric.testing.leases import holders
from fabric.testing.procs import children
from fabric.voice.audio import probe, sha256_file
from fabric.voice.join import join_chunks
from fabric.voice.split import chunk_weights, split_audio
from fabric.voice.stream import StreamJoiner
from tests.conftest import ROOT, eventually
from tests.tasks.harness import Harness
from tests.voice import media
from tests.voice.test_world import f0_ratio

SR = 44100
PITCH = 3.0
IN_PROCESS = ("orchestrator", "scheduler", "media", "publisher", "projector", "cleanup",
              "splitter", "voice", "aggregator")  # fmt: skip
NO_WORKERS = tuple(c for c in IN_PROCESS if c != "voice")


# -- media and measurements -----------------------------------------------------------------
@pytest.fixture(scope="module")
def speech_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s of espeak speech (44.1 kHz mono) as AAC in a small H.264 test-pattern MP4."""
    root = tmp_path_factory.mktemp("voice-events")
    audio = media.write_wav(root / "speech.wav", media.speech(6.0, SR), SR)
    return media.make_video(root / "speech.mp4", 6.0, audio)


@pytest.fixture(scope="module")
def silent_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return media.make_video(tmp_path_factory.mktemp("voice-silent") / "silent.mp4", 2.0)


def decode(path: Path, tmp: Path) -> tuple[np.ndarray, int]:
    """The first audio stream as ffmpeg decodes it (float, all channels)."""
    out = tmp / f"{path.stem}-{abs(hash(str(path))) % 10**8}.wav"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(path), "-map", "0:a:0",
                    "-c:a", "pcm_f32le", str(out)], check=True, capture_output=True)  # fmt: skip
    data, rate = sf.read(str(out), dtype="float64", always_2d=True)
    return data, int(rate)


def published_video(h: Harness, account: str = "main") -> Path:
    (folder,) = h.published_folders(account)
    (video,) = [p for p in folder.iterdir() if p.name.startswith("video")]
    return video


def assert_voiced_copy(source: Path, published: Path, tmp: Path) -> None:
    """Same samples and rate as the source, pitch moved by PITCH semitones."""
    x, sr_x = decode(source, tmp)
    y, sr_y = decode(published, tmp)
    assert sr_y == sr_x == SR
    assert y.shape == x.shape, (y.shape, x.shape)  # duration exact to the sample
    ratio, frames = f0_ratio(x.mean(axis=1), y.mean(axis=1), SR)
    target = 2 ** (PITCH / 12)
    print(f"\nmedian f0 ratio {ratio:.5f} (target {target:.5f}) over {frames} frames")
    assert frames >= 50
    assert abs(ratio / target - 1) < 0.01


async def records(h: Harness, topic: str, task_id: str) -> list[dict[str, Any]]:
    """Every event about the task on one topic, in offset order per partition."""
    name = h.app.runtime.bus.topic(topic)
    out: list[dict[str, Any]] = []
    for partition in range((await h.app.log.topics())[name]):
        offset = 0
        while batch := await h.app.log.read(name, partition, offset, 1000):
            out += [e for e in (loads(r.value) for r in batch) if e.get("subject") == task_id]
            offset = batch[-1].offset + 1
    return out


async def aggregator_state(h: Harness, task_id: str) -> dict[str, Any]:
    rows = await h.app.db.fetchall("SELECT v FROM kv WHERE consumer='aggregator' AND k=?",
                                   (f"voice:{task_id}",))  # fmt: skip
    return orjson.loads(rows[0][0]) if rows else {}


def converted_once(results: list[dict[str, Any]]) -> Counter[int]:
    """Conversions per chunk index: distinct ``chunk.converted`` events. The log delivers at
    least once: a killed worker's last event may be published again by the next worker (its
    outbox row is deleted lazily), with the same id, and the inbox drops it."""
    events = {e["id"]: e["data"]["index"] for e in results if e["type"] == "chunk.converted"}
    return Counter(events.values())


def fabric_cli(h: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m fabric ...`` on the harness's files and namespace."""
    s = h.settings
    env = dict(os.environ, PYTHONPATH=str(ROOT), FABRIC_HOME=str(s.home), FABRIC_LOG=s.log_url,
               FABRIC_DB=s.db_url, FABRIC_NAMESPACE=s.namespace)  # fmt: skip
    return subprocess.run([sys.executable, "-m", "fabric", "--log-level", "ERROR", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip


def voice_env(chunk_s: float) -> dict[str, str]:
    return {"FABRIC_VOICE_THRESHOLD_S": str(chunk_s), "FABRIC_VOICE_CHUNK_S": str(chunk_s),
            "FABRIC_VOICE_CONTEXT_S": "0.5"}  # fmt: skip


VOICE = {"engine": "world", "pitch": PITCH}


def expected_chunks(planned: dict[str, Any], chunk_s: float) -> int:
    """The splitter's count: chunks of at most about ``chunk_s``, ending in shorter pairs
    when there are four or more. Without separation the splitter cuts while decoding, so the
    count comes from the container's duration (the decoded AAC is a little longer)."""
    if planned["separation"].get("ran") or planned["voice"].get("separate"):
        seconds = planned["audio"]["samples"] / SR
    else:
        info = probe(planned["video"]["path"])
        seconds = info.audio_duration or info.duration
    return len(chunk_weights(seconds, chunk_s, TAPER))


# -- the in-process pipeline ---------------------------------------------------------------
async def test_voice_task_completes_with_the_voice_changed_to_the_sample(
    harness: Callable[..., Harness], speech_video: Path, tmp_path: Path
) -> None:
    async with harness(consumers=IN_PROCESS, env=voice_env(2.0)) as h:
        await h.account("main")
        task_id = await h.create(speech_video, "main", voice=VOICE)
        assert (await h.wait([task_id], timeout=60))[task_id] == "completed"
        results = await records(h, "fabric.chunk-results", task_id)
        tasks = await records(h, "fabric.tasks", task_id)
        state = await aggregator_state(h, task_id)
        work = work_root(h.app) / task_id
        await eventually(lambda: not work.exists(), 10, "the work directory to be removed")
        assert_voiced_copy(speech_video, published_video(h), tmp_path)
    kinds = [e["type"] for e in results]
    (planned,) = [e["data"] for e in results if e["type"] == "voice.planned"]
    n = planned["chunks"]
    assert n == expected_chunks(planned, 2.0) >= 3 and kinds[0] == "voice.planned"
    converted = [e["data"] for e in results if e["type"] == "chunk.converted"]
    assert sorted(c["index"] for c in converted) == list(range(n))
    assert planned["separation"] == {"ran": False, "model": None, "note": "not asked for"}
    assert planned["audio"]["sample_rate"] == SR and planned["audio"]["channels"] == 1
    assert str(work) in planned["work_dir"]
    progress = [e["data"] for e in tasks if e["type"] == "voice.progress"]
    assert [p["done"] for p in progress] == list(range(1, n + 1))
    assert {p["total"] for p in progress} == {n}
    (assembled,) = [e["data"] for e in tasks if e["type"] == "voice.assembled"]
    assert assembled["chunks"] == n and assembled["engine"] == "world"
    assert assembled["audio_seconds"] == pytest.approx(planned["audio"]["samples"] / SR)
    assert assembled["engine_seconds"] == pytest.approx(sum(c["engine_seconds"] for c in converted))
    assert 0 < assembled["engine_seconds"] < assembled["wall_seconds"] < 60
    order = [e["type"] for e in tasks]
    assert (
        order.index("voice.assembled")
        < order.index("media.prepared")
        < order.index("task.completed")
    )
    assert state["status"] == "assembled" and sorted(state["chunks"]) == [str(i) for i in range(n)]
    shown = fabric_cli(h, "task", "show", task_id)  # the CLI's progress line (on stderr)
    assert json.loads(shown.stdout)["task"]["state"] == "completed"
    assert f"voice [{'#' * 20}] {n}/{n} chunks - assembled" in shown.stderr


async def test_video_without_audio_fails_the_task_with_no_audio_stream(
    harness: Callable[..., Harness], silent_video: Path
) -> None:
    async with harness(consumers=IN_PROCESS, env=voice_env(2.0)) as h:
        await h.account("main")
        task_id = await h.create(silent_video, "main", voice=VOICE)
        assert (await h.wait([task_id], timeout=30))[task_id] == "failed"
        row = await h.row(task_id)
        tasks = await records(h, "fabric.tasks", task_id)
        chunks = await records(h, "fabric.chunks", task_id)
    assert row["error_code"] == "no_audio_stream" and "no audio stream" in row["error"]
    (failed,) = [e["data"] for e in tasks if e["type"] == "voice.failed"]
    assert failed["code"] == "no_audio_stream"
    assert chunks == []  # nothing was handed to the workers
    assert h.published_folders("main") == []


# -- the streaming join equals join_chunks --------------------------------------------------
@pytest.mark.parametrize(("context", "align"), [(0.5, 441), (0.5, 1), (0.0, 1)])
def test_stream_joiner_equals_join_chunks(tmp_path: Path, context: float, align: int) -> None:
    """Sample for sample, with seams that crossfade, that SOLA moves (align=1: chunk and
    whole-file analysis grids differ) and that are hard (no context)."""
    sr = 22050
    x = media.speech(8.0, sr) + 0.05 * media.music(8.0, sr)
    stereo = np.stack([x, 0.7 * np.roll(x, 40)], axis=1)
    src = media.write_wav(tmp_path / "src.wav", stereo, sr)
    chunks = split_audio(src, tmp_path / "chunks", chunk_seconds=2.0, threshold_seconds=2.0,
                         context_seconds=context, align=align)  # fmt: skip
    rng = np.random.default_rng(1)
    converted = []
    for c in chunks:  # stand-in for an engine: a chunk-dependent phase and level wobble
        data, _ = sf.read(c.path, dtype="float32", always_2d=True)
        shifted = np.roll(data, int(rng.integers(0, 40)), axis=0) * (0.9 + 0.2 * rng.random())
        path = tmp_path / f"conv-{c.index}.wav"
        media.write_wav(path, shifted, sr)
        converted.append(str(path))
    spans = [c.span for c in chunks]
    reference = join_chunks(spans, converted, tmp_path / "joined.wav")
    blocks: list[np.ndarray] = []
    joiner = StreamJoiner(spans, blocks.append, sample_rate=sr, channels=2)
    for path in converted:
        joiner.add(path)
    assert joiner.done and joiner.position == reference.frames
    expected, _ = sf.read(reference.path, dtype="float32", always_2d=True)
    np.testing.assert_array_equal(np.concatenate(blocks), expected)
    assert [(s.position, s.shift, s.fade) for s in reference.seams] == [
        (p, shift, fade) for p, shift, _, fade in joiner.seams
    ]
    if context == 0.0:
        assert all(s.fade == 0 for s in reference.seams)


# -- worker processes ----------------------------------------------------------------------
class Workers:
    """``python -m fabric consume voice`` children on the harness's log, database and
    namespace; each one's JSON log goes to a file the test reads."""

    def __init__(self, h: Harness, tmp: Path) -> None:
        self.h = h
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> subprocess.Popen[bytes]:
        s = self.h.settings
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1",
                   FABRIC_HOME=str(s.home), FABRIC_LOG=s.log_url, FABRIC_DB=s.db_url,
                   FABRIC_NAMESPACE=s.namespace, FABRIC_VOICE_PROCESSES="1",
                   FABRIC_VOICE_DEVICE="cpu")  # fmt: skip
        with open(self.log(name), "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "fabric", "--log-level", "INFO",
                                     "consume", "voice"], cwd=ROOT, env=env,
                                    stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> Path:
        return self.tmp / f"worker-{name}.log"

    def lines(self, name: str, msg: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log(name).read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"msg":"{msg}"' in line:
                out.append(orjson.loads(line))
        return out

    def holders(self) -> set[str]:
        """Members holding a live lease on the chunks topic (read from the log file)."""
        bus = self.h.app.runtime.bus
        path = self.h.settings.log_url.partition("sqlite:///")[2]
        return holders(path, bus.topic("voice"), bus.topic("fabric.chunks"))

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers_factory(tmp_path: Path) -> Iterator[Callable[[Harness], Workers]]:
    made: list[Workers] = []

    def make(h: Harness) -> Workers:
        made.append(Workers(h, tmp_path))
        return made[-1]

    yield make
    for w in made:
        w.stop()


async def test_two_worker_processes_share_chunks_and_a_sigkilled_one_loses_nothing(
    harness: Callable[..., Harness],
    workers_factory: Callable[[Harness], Workers],
    speech_video: Path,
    tmp_path: Path,
) -> None:
    async with harness(consumers=NO_WORKERS, env=voice_env(1.0)) as h:
        await h.account("main")
        w = workers_factory(h)
        a, b = w.start("a"), w.start("b")
        await eventually(lambda: len(w.holders()) == 2, 30, "both workers holding partitions")
        task_id = await h.create(speech_video, "main", voice=VOICE)

        converted: dict[int, str] = {}

        async def a_is_mid_chunk() -> bool:
            """a has converted one chunk and started another that is not converted yet."""
            for e in await records(h, "fabric.chunk-results", task_id):
                if e["type"] == "chunk.converted":
                    converted[e["data"]["index"]] = e["data"]["worker"]
            started = {line["index"] for line in w.lines("a", "chunk started")}
            mine = {i for i, worker in converted.items() if worker.endswith(f"-{a.pid}")}
            return bool(mine) and bool(started - set(converted))

        await eventually(a_is_mid_chunk, 40, "worker a in the middle of its second chunk")
        victim = next(iter({line["index"] for line in w.lines("a", "chunk started")}
                           - set(converted)))  # fmt: skip
        pool = children(a.pid)
        assert pool, "worker a runs its chunks in a pool process"
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        # its pool process dies with it (PR_SET_PDEATHSIG) instead of finishing the chunk
        await eventually(lambda: not any(Path(f"/proc/{c}").exists() for c in pool), 10,
                         "worker a's pool process to exit")  # fmt: skip
        assert (await h.wait([task_id], timeout=60))[task_id] == "completed"
        results = await records(h, "fabric.chunk-results", task_id)
        state = await aggregator_state(h, task_id)
        assert_voiced_copy(speech_video, published_video(h), tmp_path)
        assert b.poll() is None  # the survivor is still serving
    (planned,) = [e["data"] for e in results if e["type"] == "voice.planned"]
    n = planned["chunks"]
    assert n == expected_chunks(planned, 1.0) >= 6
    assert converted_once(results) == Counter(range(n))  # every chunk converted exactly once
    workers = {e["data"]["index"]: e["data"]["worker"] for e in results
               if e["type"] == "chunk.converted"}  # fmt: skip
    pid = {name: p.pid for name, p in w.procs.items()}
    assert workers[victim].endswith(f"-{pid['b']}")  # a's interrupted chunk went to b
    share = Counter("a" if v.endswith(f"-{pid['a']}") else "b" for v in workers.values())
    assert share["a"] >= 1 and share["b"] >= 1, share  # both converted some
    assert sorted(state["chunks"]) == [str(i) for i in range(n)]
    assert state["status"] == "assembled"


async def test_aggregator_restart_mid_task_resumes_from_its_state(
    harness: Callable[..., Harness],
    workers_factory: Callable[[Harness], Workers],
    speech_video: Path,
    tmp_path: Path,
) -> None:
    """The consumers are stopped and started again (a new aggregator: no Assembly in
    memory) while some chunks are recorded and the others wait (their worker was killed; a
    new one starts after the restart); the task completes with the same exact output.
    (Not SIGSTOP: a process frozen inside a SQLite write would lock everyone out.)"""
    async with harness(consumers=NO_WORKERS, env=voice_env(0.5)) as h:
        await h.account("main")
        w = workers_factory(h)
        worker = w.start("a")
        await eventually(lambda: len(w.holders()) == 1, 30, "the worker holding partitions")
        task_id = await h.create(speech_video, "main", voice=VOICE)

        async def some_recorded() -> bool:
            return bool((await aggregator_state(h, task_id)).get("chunks"))

        await eventually(some_recorded, 40, "the first chunk recorded by the aggregator")
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        await h.stop()
        before = await aggregator_state(h, task_id)
        h.start()
        w.start("b")
        assert (await h.wait([task_id], timeout=60))[task_id] == "completed"
        results = await records(h, "fabric.chunk-results", task_id)
        state = await aggregator_state(h, task_id)
        assert_voiced_copy(speech_video, published_video(h), tmp_path)
    (planned,) = [e["data"] for e in results if e["type"] == "voice.planned"]
    n = planned["chunks"]
    assert 1 <= len(before["chunks"]) < n and before["status"] == "collecting"
    assert converted_once(results) == Counter(range(n))
    assert state["status"] == "assembled" and len(state["chunks"]) == n


# -- separation ----------------------------------------------------------------------------
async def test_missing_separation_model_fails_the_task_unless_it_may_go_on_without(
    harness: Callable[..., Harness], speech_video: Path, tmp_path: Path
) -> None:
    (tmp_path / "models").mkdir()  # there, but without the model file
    env = {
        **voice_env(3.0),
        "FABRIC_SEPARATOR_MODEL_DIR": str(tmp_path / "models"),
        "FABRIC_SEPARATOR_MODEL": "absent.ckpt",
        "FABRIC_VOICE_STREAMS": "0",  # assembled when the last chunk is in, not streamed
    }
    async with harness(consumers=IN_PROCESS, env=env) as h:
        await h.account("main")
        strict = await h.create(speech_video, "main", voice={**VOICE, "separate": True})
        lenient = await h.create(speech_video, "main", voice={
            **VOICE, "separate": True, "continue_without_separation": True})  # fmt: skip
        final = await h.wait([strict, lenient], timeout=60)
        row = await h.row(strict)
        planned = [e["data"] for e in await records(h, "fabric.chunk-results", lenient)
                   if e["type"] == "voice.planned"]  # fmt: skip
        assembled = [e["data"] for e in await records(h, "fabric.tasks", lenient)
                     if e["type"] == "voice.assembled"]  # fmt: skip
        assert_voiced_copy(speech_video, published_video(h), tmp_path)
    assert final == {strict: "failed", lenient: "completed"}
    assert row["error_code"] == "model_missing" and "absent.ckpt" in row["error"]
    for separation in (planned[0]["separation"], assembled[0]["separation"]):
        assert separation["ran"] is False and separation["model"] == "absent.ckpt"
        assert separation["note"].startswith("model_missing:")
        assert "continued without separation" in separation["note"]


@pytest.mark.filterwarnings("ignore::FutureWarning:rotary_embedding_torch")
@pytest.mark.filterwarnings("ignore:A window was not provided:UserWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:audio_separator")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:pydub")
async def test_separation_runs_per_chunk_on_the_workers_and_is_remixed(
    harness: Callable[..., Harness], speech_video: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The real audio-separator path with the tiny (untrained) BS-Roformer: its "vocals"
    are no voice, so the pitch is not measured here (tests/voice/test_separate.py measures
    separation); the events, the stems and the exact length are."""
    env = {**voice_env(3.0), "FABRIC_SEPARATOR_MODEL_DIR": str(tiny_model_dir),
           "FABRIC_SEPARATOR_MODEL": "tiny.ckpt"}  # fmt: skip
    voice = {**VOICE, "separate": True, "vocal_gain": 1.0, "background_gain": 0.5}
    async with harness(consumers=IN_PROCESS, env=env) as h:
        await h.account("main")
        task_id = await h.create(speech_video, "main", voice=voice)
        assert (await h.wait([task_id], timeout=90))[task_id] == "completed"
        results = await records(h, "fabric.chunk-results", task_id)
        tasks = await records(h, "fabric.tasks", task_id)
        x, _ = decode(speech_video, tmp_path)
        y, rate = decode(published_video(h), tmp_path)
    assert rate == SR and y.shape == x.shape
    (planned,) = [e["data"] for e in results if e["type"] == "voice.planned"]
    assert planned["separation"]["ran"] is True and planned["separation"]["model"] == "tiny.ckpt"
    converted = [e["data"] for e in results if e["type"] == "chunk.converted"]
    assert len(converted) == planned["chunks"] >= 2
    assert all(c["background"] and c["separation_seconds"] > 0 for c in converted)
    (assembled,) = [e["data"] for e in tasks if e["type"] == "voice.assembled"]
    assert assembled["separation"]["ran"] is True
    assert "vocal_gain 1 and background_gain 0.5" in assembled["separation"]["note"]


# -- failures, redelivery, cancellation ---------------------------------------------------
async def test_unknown_engine_and_bad_option_fail_the_task_with_their_codes(
    harness: Callable[..., Harness], speech_video: Path
) -> None:
    async with harness(consumers=IN_PROCESS, env=voice_env(3.0)) as h:
        await h.account("main")
        rvc = await h.create(speech_video, "main", voice={"engine": "rvc", "pitch": 2})
        typo = await h.create(speech_video, "main", voice={**VOICE, "f0_method": "crepe"})
        assert await h.wait([rvc, typo], timeout=30) == {rvc: "failed", typo: "failed"}
        rows = {t: await h.row(t) for t in (rvc, typo)}
        chunks = await records(h, "fabric.chunks", rvc) + await records(h, "fabric.chunks", typo)
    assert rows[rvc]["error_code"] == "unknown_engine" and "'rvc'" in rows[rvc]["error"]
    assert rows[typo]["error_code"] == "bad_option" and "crepe" in rows[typo]["error"]
    assert chunks == []


async def test_a_chunk_that_fails_on_the_worker_fails_the_task(
    harness: Callable[..., Harness],
    workers_factory: Callable[[Harness], Workers],
    speech_video: Path,
) -> None:
    """A chunk file changed after the splitter hashed it: the worker refuses it
    (``bad_chunks``), the aggregator ends the step with ``voice.failed``."""
    async with harness(consumers=NO_WORKERS, env=voice_env(2.0)) as h:
        await h.account("main")
        task_id = await h.create(speech_video, "main", voice=VOICE)

        async def planned() -> list[dict[str, Any]]:
            return [e["data"] for e in await records(h, "fabric.chunk-results", task_id)
                    if e["type"] == "voice.planned"]  # fmt: skip

        await eventually(planned, 30, "voice.planned")
        chunk = Path((await planned())[0]["work_dir"]) / "chunks" / "chunk-0001.wav"
        data, rate = sf.read(str(chunk), dtype="float32")
        sf.write(str(chunk), -data, rate, subtype="FLOAT")  # same length, other samples
        w = workers_factory(h)
        w.start("a")
        assert (await h.wait([task_id], timeout=60))[task_id] == "failed"
        row = await h.row(task_id)
        results = await records(h, "fabric.chunk-results", task_id)
    failures = [e["data"] for e in results if e["type"] == "chunk.failed"]
    (failed,) = [f for f in failures if f["index"] == 1]
    assert failed["code"] == "bad_chunks"
    # A chunk still converting when the failed task's work directory is removed reports
    # that, and changes nothing: the step had already failed (CI saw this 1 run in 3).
    assert all(f["code"] == "not_found" for f in failures if f["index"] != 1), failures
    assert row["error_code"] == "bad_chunks" and row["error"].startswith("local:main: chunk 2 of")


async def test_splitter_redelivery_plans_once_and_rewrites_the_same_bytes(
    harness: Callable[..., Harness], speech_video: Path
) -> None:
    """A second delivery after the commit is dropped by the inbox; a re-run before the
    commit (a crash) writes the same files with the same sha256 at the same paths."""
    task_id = "t-redelivered"
    video = {"path": str(speech_video), "sha256": sha256_file(speech_video),
             "size": speech_video.stat().st_size}  # fmt: skip
    request = new_event("voice.requested", {"video": video, "voice": VOICE}, subject=task_id)
    async with harness(consumers=("splitter",), env=voice_env(2.0)) as h:
        await h.app.runtime.bus.publish(request)
        await h.app.runtime.bus.publish(request)  # the same event (same id) again
        workers = h.app.runtime.workers
        await eventually(lambda: workers["splitter"].stats.duplicates == 1, 30,
                         "the second delivery to be dropped")  # fmt: skip
        results = await records(h, "fabric.chunk-results", task_id)
        ready = await records(h, "fabric.chunks", task_id)
        work = Path(results[0]["data"]["work_dir"])
        announced: list[dict[str, Any]] = []  # chunk.ready data sent while splitting
        again = make_plan(
            request, work, VoiceSettings.from_app(h.app), ModelCheck(), announced.append
        )
    assert announced == again.ready and again.announced == len(again.ready)
    assert [e["type"] for e in results] == ["voice.planned"]
    assert len(ready) == results[0]["data"]["chunks"] == len(again.ready) >= 3
    assert [e["data"] for e in sorted(ready, key=lambda e: e["data"]["index"])] == again.ready
    assert again.planned == results[0]["data"]


async def test_a_task_cancelled_during_its_voice_step_leaves_no_work_files(
    harness: Callable[..., Harness],
    workers_factory: Callable[[Harness], Workers],
    speech_video: Path,
) -> None:
    """The cleanup removes the work directory when the task is cancelled; chunks still on
    their way fail (``not_found``) instead of writing the directory back."""
    async with harness(consumers=NO_WORKERS, env=voice_env(1.0)) as h:
        await h.account("main")
        w = workers_factory(h)
        worker = w.start("a")
        await eventually(lambda: len(w.holders()) == 1, 30, "the worker holding partitions")
        task_id = await h.create(speech_video, "main", voice=VOICE)

        async def answered() -> dict[int, str]:
            return {e["data"]["index"]: e["type"]
                    for e in await records(h, "fabric.chunk-results", task_id)
                    if e["type"] in ("chunk.converted", "chunk.failed")}  # fmt: skip

        await eventually(answered, 40, "a first converted chunk")
        worker.send_signal(signal.SIGKILL)  # the other chunks wait for the next worker
        worker.wait(10)
        await h.command(task_id, "task.cancel_requested", reason="changed my mind")
        assert (await h.wait([task_id], timeout=30))[task_id] == "cancelled"
        work = work_root(h.app) / task_id
        await eventually(lambda: not work.exists(), 10, "the cleanup")
        w.start("b")
        (planned,) = [e["data"] for e in await records(h, "fabric.chunk-results", task_id)
                      if e["type"] == "voice.planned"]  # fmt: skip

        async def all_answered() -> bool:
            return len(await answered()) == planned["chunks"]

        await eventually(all_answered, 40, "every chunk converted or failed")
        outcome = await answered()
        failed = [e["data"] for e in await records(h, "fabric.chunk-results", task_id)
                  if e["type"] == "chunk.failed"]  # fmt: skip
        row = await h.row(task_id)
    assert not work.exists()  # nothing written back after the cleanup
    assert row["state"] == "cancelled"
    assert failed and {f["code"] for f in failed} == {"not_found"}
    assert Counter(outcome.values())["chunk.failed"] == len(failed)
