#!/usr/bin/env python3
"""Event backbone benchmark: throughput, latency and replay of the log + runtime.

    python bench/bus.py            # a table
    python bench/bus.py --json     # one JSON object

Workloads (events are ``probe.ping`` of ~300 bytes on the wire):

* ``sqlite_events_per_s``: N events published by a producer *process* (schema-validated,
  batches of 500) and handled by one consumer group in this process through the full runtime
  (decode, validation, inbox written with the handler's state change, offsets). Measured from
  the first event's creation to the last event handled.
* ``sqlite_p99_ms``: publish -> handler latency at 1,000 events/s, producer and consumer in one
  process (how ``run.py`` runs); ``sqlite_p99_ms_cross_process`` with the producer in another
  process (the consumer then polls every 20 ms).
* ``replay_events_per_s``: read every record of the topic from offset 0 and decode it into an
  Event (events were validated on publish); ``replay_validated_events_per_s`` validates again.
* ``kafka_events_per_s`` vs ``raw_aiokafka_events_per_s``: the sqlite workload through KafkaLog,
  and the same bytes through bare aiokafka (a producer process, a consumer group committing
  every 200 ms, no validation, no inbox), on the same broker in the same run; ``kafka_ratio``.
  A Tansu broker is started when FABRIC_KAFKA is not set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fabric.bus import Bus  # noqa: E402
from fabric.events import Event, encode, from_dict, loads, new_event  # noqa: E402
from fabric.log import Log, Message, open_log  # noqa: E402
from fabric.runtime import Consumer, Context, Runtime  # noqa: E402
from fabric.schemas import registry  # noqa: E402
from fabric.store.db import SqliteDatabase  # noqa: E402

NOTE = "x" * 160  # with the envelope: ~330 bytes per event


def ping(seq: int) -> Event:
    return new_event(
        "probe.ping",
        {"seq": seq, "sent_at_ms": time.time() * 1000, "note": NOTE},
        subject=f"task-{seq % 1000}",
    )


# -- producer process ----------------------------------------------------------------------
async def produce(url: str, topic: str, n: int, raw: bool) -> None:
    """Publish n events: through Bus (validated) or, raw, bare aiokafka with pre-made bytes."""
    if raw:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=url.removeprefix("kafka://").split("?")[0],
            linger_ms=5,
            max_batch_size=1 << 20,
            acks="all",
        )
        await producer.start()
        payloads = [(f"task-{i % 1000}".encode(), encode(ping(i))) for i in range(n)]
        futures = [await producer.send(topic, v, key=k) for k, v in payloads]
        await asyncio.gather(*futures)
        await producer.stop()
        return
    log = open_log(url)
    await log.start()
    bus = Bus(log)
    pending: set[asyncio.Future[object]] = set()
    for start in range(0, n, 500):
        msgs = []
        for i in range(start, min(n, start + 500)):
            m = bus.message(ping(i))  # validated and routed, then sent to the bench topic
            msgs.append(Message(topic, m.key, m.value))
        pending.add(asyncio.ensure_future(log.publish_batch(msgs)))
        if len(pending) >= 4:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.gather(*pending)
    await log.close()


def spawn_producer(url: str, topic: str, n: int, raw: bool = False) -> asyncio.Future[int]:
    args = [sys.executable, __file__, "--produce", url, topic, str(n)] + (["--raw"] if raw else [])

    async def run() -> int:
        proc = await asyncio.create_subprocess_exec(*args)
        return await proc.wait()

    return asyncio.ensure_future(run())


# -- consumer side ---------------------------------------------------------------------------
class Counter:
    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.first_sent: float | None = None
        self.done = asyncio.Event()
        self.finished_at = 0.0

    async def handle(self, event: Event, ctx: Context) -> None:
        if self.first_sent is None:
            self.first_sent = event.data["sent_at_ms"] / 1000
        self.count += 1
        if self.count >= self.n:
            self.finished_at = time.time()
            self.done.set()


async def joined(sub: object) -> None:
    """Wait until the consumer group member holds its partitions (start-up is not measured)."""
    while True:
        current = sub() if callable(sub) else sub
        if current is not None and current.assignment():
            return
        await asyncio.sleep(0.05)


async def runtime_throughput(log_url: str, tmp: Path, n: int) -> float:
    log = open_log(log_url)
    db = SqliteDatabase(str(tmp / f"state-{uuid.uuid4().hex[:6]}.db"))
    await log.start()
    await db.start()
    topic = f"bench.{uuid.uuid4().hex[:8]}"
    await log.create_topics([topic])
    rt = Runtime(log, db)
    counter = Counter(n)
    stop = asyncio.Event()
    # no inbox pre-check: this handler has no outside effect; the inbox row written with
    # each event (idempotency) stays in the measured path
    spec = Consumer("bench", [topic], counter.handle, precheck=False)
    task = asyncio.create_task(rt.run([spec], stop))
    await joined(lambda: rt.workers["bench"]._sub if "bench" in rt.workers else None)
    producer = spawn_producer(log_url, topic, n)
    await asyncio.wait_for(counter.done.wait(), 600)
    assert await producer == 0
    stop.set()
    await task
    assert counter.first_sent is not None
    rate = n / (counter.finished_at - counter.first_sent)
    await log.close()
    await db.close()
    return rate


async def raw_kafka_throughput(address: str, n: int) -> float:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"raw.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=address)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 8, 1)])
    await admin.close()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=address,
        group_id=f"g-{topic}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=300,
    )
    await consumer.start()
    while not consumer.assignment():  # join the group before the clock starts, as above
        await consumer.getmany(timeout_ms=100)
    producer = spawn_producer(f"kafka://{address}", topic, n, raw=True)
    count = 0
    first_sent = None
    last_commit = time.monotonic()
    positions: dict[TopicPartition, int] = {}
    while count < n:
        got = await consumer.getmany(timeout_ms=200, max_records=2000)
        for tp, records in got.items():
            if first_sent is None and records:
                first_sent = loads(records[0].value)["data"]["sent_at_ms"] / 1000
            count += len(records)
            positions[tp] = records[-1].offset + 1
        if positions and time.monotonic() - last_commit > 0.2:
            await consumer.commit(positions)
            last_commit = time.monotonic()
    finished = time.time()
    await consumer.commit(positions)
    assert await producer == 0
    await consumer.stop()
    assert first_sent is not None
    return n / (finished - first_sent)


async def latency(
    log_url: str, tmp: Path, rate: int, seconds: float, cross_process: bool
) -> dict[str, float]:
    log = open_log(log_url)
    db = SqliteDatabase(str(tmp / f"lat-{uuid.uuid4().hex[:6]}.db"))
    await log.start()
    await db.start()
    topic = f"lat.{uuid.uuid4().hex[:8]}"
    await log.create_topics([topic])
    rt = Runtime(log, db)
    n = int(rate * seconds)
    lat: list[float] = []
    done = asyncio.Event()

    async def handle(event: Event, ctx: Context) -> None:
        lat.append(time.time() * 1000 - event.data["sent_at_ms"])
        if len(lat) >= n:
            done.set()

    stop = asyncio.Event()
    task = asyncio.create_task(rt.run([Consumer("lat", [topic], handle)], stop))
    await joined(lambda: rt.workers["lat"]._sub if "lat" in rt.workers else None)
    if cross_process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--paced", log_url, topic, str(n), str(rate)
        )
        await proc.wait()
    else:
        await paced(log, topic, n, rate)
    await asyncio.wait_for(done.wait(), 60)
    stop.set()
    await task
    await log.close()
    await db.close()
    lat.sort()
    return {"p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)], "max": lat[-1]}


async def paced(log: Log, topic: str, n: int, rate: int) -> None:
    bus = Bus(log)
    start = time.monotonic()
    for i in range(n):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        m = bus.message(ping(i))
        await log.publish(topic, m.key, m.value)


async def paced_process(url: str, topic: str, n: int, rate: int) -> None:
    log = open_log(url)
    await log.start()
    await paced(log, topic, n, rate)
    await log.close()


async def replay(log_url: str, validate: bool) -> float:
    log = open_log(log_url)
    await log.start()
    reg = registry()
    total = 0
    t0 = time.perf_counter()
    for topic in await log.topics():
        if not topic.startswith("bench."):
            continue
        for partition in await log.end_offsets(topic):
            offset = 0
            while batch := await log.read(topic, partition, offset, 5000):
                for rec in batch:
                    obj = loads(rec.value)
                    if validate:
                        reg.check_dict(obj)
                    from_dict(obj)
                total += len(batch)
                offset = batch[-1].offset + 1
    rate = total / (time.perf_counter() - t0)
    await log.close()
    return rate


async def main(args: argparse.Namespace) -> dict[str, float]:
    results: dict[str, float] = {}
    n = args.events
    with tempfile.TemporaryDirectory(prefix="fabric-bench-") as folder:
        tmp = Path(folder)
        sqlite_url = f"sqlite:///{tmp}/log.db"
        if "sqlite" in args.only:
            runs = [await runtime_throughput(sqlite_url, tmp, n) for _ in range(args.repeat)]
            results["sqlite_events_per_s"] = statistics.median(runs)
            results["replay_events_per_s"] = await replay(sqlite_url, validate=False)
            results["replay_validated_events_per_s"] = await replay(sqlite_url, validate=True)
            lat = await latency(sqlite_url, tmp, 1000, args.latency_seconds, cross_process=False)
            results["sqlite_p50_ms"], results["sqlite_p99_ms"] = lat["p50"], lat["p99"]
            lat = await latency(sqlite_url, tmp, 1000, args.latency_seconds, cross_process=True)
            results["sqlite_p99_ms_cross_process"] = lat["p99"]
        if "kafka" in args.only:
            from fabric.testing.broker import tansu

            with tansu() as address:
                kafka_url = f"kafka://{address}?session_timeout_ms=6000&heartbeat_interval_ms=300"
                fab, raw = [], []
                for _ in range(args.repeat):  # alternate, so drift hits both alike
                    raw.append(await raw_kafka_throughput(address, n))
                    fab.append(await runtime_throughput(kafka_url, tmp, n))
                results["kafka_events_per_s"] = statistics.median(fab)
                results["raw_aiokafka_events_per_s"] = statistics.median(raw)
                results["kafka_ratio"] = (
                    results["kafka_events_per_s"] / results["raw_aiokafka_events_per_s"]
                )
    results["events"] = n
    return {k: round(v, 3) for k, v in results.items()}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--produce":
        asyncio.run(produce(sys.argv[2], sys.argv[3], int(sys.argv[4]), "--raw" in sys.argv))
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--paced":
        asyncio.run(paced_process(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
        sys.exit(0)
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--latency-seconds", type=float, default=5.0)
    ap.add_argument("--only", default="sqlite,kafka")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    out = asyncio.run(main(args))
    if args.json:
        print(json.dumps(out))
    else:
        goals = {
            "sqlite_events_per_s": ">= 50000",
            "sqlite_p99_ms": "< 20",
            "replay_events_per_s": ">= 200000",
            "kafka_ratio": ">= 0.8",
        }
        width = max(map(len, out))
        for key, value in out.items():
            print(f"{key.ljust(width)}  {value:>14,.3f}  {goals.get(key, '')}")
    os._exit(0)
