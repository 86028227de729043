"""KafkaLog: the Log contract on Apache Kafka through aiokafka (scale-out across machines).

Partitions are chosen here with the same rule as the embedded backends (``partition_for``),
so an explicit partition index or a key lands on the same partition number everywhere.

Long handlers (a voice chunk can take minutes) and group membership: aiokafka sends
heartbeats from a background task, but a member that does not *poll* for longer than
``max_poll_interval_ms`` is expelled. The runtime never stops polling: it fetches in one task
and handles records in others, and applies back-pressure with ``pause()`` on the busy
partitions instead of not calling ``getmany``. A paused-everything ``getmany`` still counts as
a poll, so the member stays in its group however long a handler runs.

A rebalance in the middle of a handler: aiokafka awaits ``on_partitions_revoked`` before it
rejoins. There the runtime waits (up to its revoke grace) for in-flight records of those
partitions, then the contiguous done offsets are committed. A record still running after the
grace is *not* committed: its new owner handles it again, and the consumer's inbox (written in
the same transaction as its effects) plus persisted intents for outside calls make that second
run a no-op instead of a duplicate side effect.

Producer: ``enable_idempotence`` stays off (the test broker, Tansu, has no InitProducerId);
acks=all; duplicates from producer retries carry the same event id and are dropped by inboxes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError

from fabric.log import TP, Message, OnRevoke, Record, partition_for
from fabric.log._offsets import OffsetTracker

__all__ = ["KafkaLog"]

log = logging.getLogger("fabric.log.kafka")


class KafkaLog:
    def __init__(
        self,
        bootstrap: str,
        partitions: int = 8,
        *,
        client_id: str = "fabric",
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 1_000,
        max_poll_interval_ms: int = 300_000,
        replication_factor: int = 1,
    ) -> None:
        self.bootstrap = bootstrap
        self.default_partitions = partitions
        self.client_id = client_id
        self.consumer_options: dict[str, Any] = dict(
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            max_poll_interval_ms=max_poll_interval_ms,
        )
        self.replication_factor = replication_factor
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._reader_lock = asyncio.Lock()
        self._parts: dict[str, int] = {}
        self._subs: set[_KafkaSubscription] = set()
        self._rr = 0

    async def start(self) -> None:
        if self._producer is not None:
            return
        self._admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, client_id=self.client_id
        )
        await self._admin.start()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=False,
            linger_ms=5,
            max_batch_size=1 << 20,
        )
        await self._producer.start()

    async def close(self) -> None:
        for sub in list(self._subs):
            await sub.close()
        for client in (self._producer, self._reader, self._admin):
            if client is not None:
                with contextlib.suppress(Exception):
                    await (client.stop() if hasattr(client, "stop") else client.close())
        self._producer = self._reader = self._admin = None

    async def __aenter__(self) -> KafkaLog:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- topics --------------------------------------------------------------------------
    async def create_topics(self, names: Iterable[str], partitions: int | None = None) -> None:
        await self.start()
        assert self._admin is not None and self._producer is not None
        missing = [n for n in names if n not in self._parts]
        if not missing:
            return
        existing = set(await self._admin.list_topics())
        new = [
            NewTopic(n, partitions or self.default_partitions, self.replication_factor)
            for n in missing
            if n not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await self._admin.create_topics(new)
        for name in missing:
            self._parts[name] = await self._wait_partitions(name)

    async def _wait_partitions(self, topic: str) -> int:
        assert self._producer is not None
        for _ in range(100):
            parts = await self._producer.partitions_for(topic)
            if parts:
                return len(parts)
            await asyncio.sleep(0.05)
        raise KafkaError(f"topic {topic} has no partitions in the cluster metadata")

    async def topics(self) -> dict[str, int]:
        reader = await self._get_reader()
        names = await reader.topics()
        return {n: len(reader.partitions_for_topic(n) or ()) for n in names}

    # -- publishing ----------------------------------------------------------------------
    async def publish(
        self, topic: str, key: str | None, value: bytes, partition: int | None = None
    ) -> tuple[int, int]:
        return (await self.publish_batch([Message(topic, key, value, partition)]))[0]

    async def publish_batch(self, messages: Sequence[Message]) -> list[tuple[int, int]]:
        await self.start()
        producer = self._producer
        assert producer is not None
        futures = []
        for m in messages:
            n = self._parts.get(m.topic)
            if n is None:
                await self.create_topics([m.topic])
                n = self._parts[m.topic]
            self._rr += 1
            p = partition_for(m.key, n, m.partition, self._rr)
            key = m.key.encode() if m.key is not None else None
            futures.append(await producer.send(m.topic, m.value, key=key, partition=p))
        metas = await asyncio.gather(*futures)
        return [(md.partition, md.offset) for md in metas]

    # -- reading outside groups ------------------------------------------------------------
    async def _get_reader(self) -> AIOKafkaConsumer:
        if self._reader is None:
            self._reader = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id=f"{self.client_id}-reader",
                enable_auto_commit=False,
                group_id=None,
                fetch_max_wait_ms=100,
            )
            await self._reader.start()
        return self._reader

    async def _ends(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """High watermarks, confirmed by reading the last record.

        Some Kafka-compatible brokers (Tansu, the test stand-in) answer ListOffsets(latest)
        with the base offset of the last *batch* + 1. A fetch at ``reported - 1`` returns that
        whole batch, whose last record gives the true end; on Apache Kafka it returns the one
        last record. Either way the answer arrives at once (no waiting on an empty fetch).
        """
        reader = await self._get_reader()
        reported = await reader.end_offsets(tps)
        ends = {tp: int(off) for tp, off in reported.items()}
        for tp in tps:
            if ends[tp] == 0:
                continue
            reader.assign([tp])
            reader.seek(tp, ends[tp] - 1)
            got = await reader.getmany(tp, timeout_ms=2000, max_records=100_000)
            while got.get(tp):
                ends[tp] = max(ends[tp], got[tp][-1].offset + 1)
                got = await reader.getmany(tp, timeout_ms=0, max_records=100_000)
        return ends

    async def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        async with self._reader_lock:
            return await self._read(TopicPartition(topic, partition), offset, limit)

    async def _read(self, tp: TopicPartition, offset: int, limit: int) -> list[Record]:
        reader = await self._get_reader()
        end = (await self._ends([tp]))[tp]
        if offset >= end:
            return []
        reader.assign([tp])
        reader.seek(tp, offset)
        out: list[Record] = []
        deadline = time.monotonic() + 30
        while len(out) < limit and time.monotonic() < deadline:
            got = await reader.getmany(tp, timeout_ms=500, max_records=limit - len(out))
            out.extend(_record(tp, r) for r in got.get(tp, []) if r.offset < end)
            if out and out[-1].offset + 1 >= end:
                break
        return out[:limit]

    async def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        async with self._reader_lock:
            reader = await self._get_reader()
            tp = TopicPartition(topic, partition)
            found = (await reader.offsets_for_times({tp: timestamp_ms}))[tp]
            if found is None or found.timestamp < 0:
                return (await self._ends([tp]))[tp]
            # Brokers may answer per batch (Tansu): step to the first record that qualifies.
            offset = int(found.offset)
            while batch := await self._read(tp, offset, 500):
                for rec in batch:
                    if rec.timestamp_ms >= timestamp_ms:
                        return rec.offset
                offset = batch[-1].offset + 1
            return offset

    async def end_offsets(self, topic: str) -> dict[int, int]:
        async with self._reader_lock:
            reader = await self._get_reader()
            await reader.topics()  # refresh metadata
            parts = reader.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            ends = await self._ends(tps) if tps else {}
            return {tp.partition: off for tp, off in ends.items()}

    async def committed(self, group: str, topic: str) -> dict[int, int]:
        # An OffsetFetch through a group-bound consumer that never subscribes (so it never
        # joins the group). The admin client's ListConsumerGroupOffsets is not understood by
        # every Kafka-compatible broker.
        ends = await self.end_offsets(topic)
        probe = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.client_id}-offsets",
            group_id=group,
            enable_auto_commit=False,
        )
        await probe.start()
        try:
            out = {}
            for p in ends:
                off = await probe.committed(TopicPartition(topic, p))
                out[p] = int(off) if off is not None and off >= 0 else 0
            return out
        finally:
            await probe.stop()

    # -- groups --------------------------------------------------------------------------
    def subscribe(
        self, group: str, topics: Sequence[str], on_revoke: OnRevoke | None = None
    ) -> _KafkaSubscription:
        sub = _KafkaSubscription(self, group, topics, on_revoke)
        self._subs.add(sub)
        return sub


def _record(tp: TopicPartition, r: Any) -> Record:
    key = r.key.decode() if r.key is not None else None
    return Record(tp.topic, tp.partition, r.offset, key, r.value, r.timestamp)


class _Owned:
    __slots__ = ("committed", "tracker")

    def __init__(self, committed: int) -> None:
        self.committed = committed
        self.tracker = OffsetTracker(committed)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sub: _KafkaSubscription) -> None:
        self.sub = sub

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.sub._revoke({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.sub._assign([(tp.topic, tp.partition) for tp in assigned])


class _KafkaSubscription:
    commit_interval = 0.2

    def __init__(
        self, log: KafkaLog, group: str, topics: Sequence[str], on_revoke: OnRevoke | None
    ) -> None:
        self._log = log
        self.group = group
        self.topics = list(topics)
        self._on_revoke = on_revoke
        self._consumer: AIOKafkaConsumer | None = None
        self._owned: dict[TP, _Owned] = {}
        self._last_commit = time.monotonic()
        self._closed = False

    async def _ensure_started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            await self._log.create_topics(self.topics)
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._log.bootstrap,
                client_id=f"{self._log.client_id}-{self.group}",
                group_id=self.group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                partition_assignment_strategy=(RoundRobinPartitionAssignor,),
                **self._log.consumer_options,
            )
            consumer.subscribe(self.topics, listener=_Listener(self))
            self._consumer = consumer  # the listener may run before start() returns
            await consumer.start()
        return self._consumer

    async def _assign(self, tps: list[TP]) -> None:
        consumer = self._consumer
        assert consumer is not None
        for topic, p in tps:
            position = await consumer.position(TopicPartition(topic, p))
            self._owned[(topic, p)] = _Owned(position)

    async def _revoke(self, tps: set[TP]) -> None:
        tps = tps & set(self._owned)
        if not tps:
            return
        if self._on_revoke is not None:
            await self._on_revoke(tps)
        await self._commit({tp: self._owned[tp] for tp in tps})
        for tp in tps:
            del self._owned[tp]

    async def getmany(self, max_records: int = 500, timeout: float = 0.5) -> list[Record]:
        consumer = await self._ensure_started()
        if time.monotonic() - self._last_commit >= self.commit_interval:
            await self.commit()
        got = await consumer.getmany(timeout_ms=int(timeout * 1000), max_records=max_records)
        out = []
        for tp, records in got.items():
            owned = self._owned.get((tp.topic, tp.partition))
            if owned is None:
                continue
            for r in records:
                owned.tracker.delivered(r.offset)
                out.append(_record(tp, r))
        return out

    def ack(self, record: Record) -> None:
        owned = self._owned.get(record.tp)
        if owned is not None:
            owned.tracker.done(record.offset)

    async def commit(self) -> None:
        self._last_commit = time.monotonic()
        await self._commit(self._owned)

    async def _commit(self, owned: dict[TP, _Owned]) -> None:
        offsets = {
            TopicPartition(*tp): o.tracker.committable
            for tp, o in owned.items()
            if o.tracker.committable > o.committed
        }
        if not offsets or self._consumer is None:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The group is rebalancing: these records are redelivered to their next owner,
            # whose inbox drops them.
            log.warning("commit failed", extra={"group": self.group, "error": repr(exc)})
            return
        for tp, off in offsets.items():
            if (o := owned.get((tp.topic, tp.partition))) is not None:
                o.committed = max(o.committed, off)

    def assignment(self) -> set[TP]:
        return set(self._owned)

    def pause(self, tp: TP) -> None:
        if self._consumer is not None and tp in self._owned:
            self._consumer.pause(TopicPartition(*tp))

    def resume(self, tp: TP) -> None:
        if self._consumer is not None and tp in self._owned:
            self._consumer.resume(TopicPartition(*tp))

    async def seek(self, tp: TP, offset: int) -> None:
        consumer = await self._ensure_started()
        if tp not in self._owned:
            raise KeyError(f"{tp} is not assigned to this member")
        consumer.seek(TopicPartition(*tp), offset)
        self._owned[tp].tracker.reset(offset)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._consumer is not None:
            await self._revoke(set(self._owned))
            await self._consumer.stop()
            self._consumer = None
        self._log._subs.discard(self)
