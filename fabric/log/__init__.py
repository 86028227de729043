"""The log: one narrow Protocol, several backends (ARCHITECTURE.md section 3).

A log is a set of topics, each split into partitions; a record's key picks its partition, so
all records of one key keep their order. Consumers read in groups: each partition belongs to
one member of a group at a time, and a group remembers how far it has got (its committed
offset). Offsets are committed only up to the last *contiguous* acknowledged record, so a
record that finished out of order never lets an unfinished one be skipped after a crash.

Backends: ``MemoryLog`` (tests, demo of the API), ``SqliteLog`` (embedded, durable, default)
and ``KafkaLog`` (aiokafka, scale-out). ``open_log(url)`` picks one from a URL.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = [
    "TP",
    "Log",
    "Message",
    "OnRevoke",
    "Record",
    "Subscription",
    "open_log",
    "partition_for",
]

TP = tuple[str, int]
"""A (topic, partition) pair."""

OnRevoke = Callable[[set[TP]], Awaitable[None]]
"""Called before partitions leave this member: finish or drop their in-flight work."""


class Record(NamedTuple):
    """One record read from the log. A NamedTuple: replay builds hundreds of thousands a
    second, and a tuple is several times cheaper to create than a frozen dataclass."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    timestamp_ms: int

    @property
    def tp(self) -> TP:
        return (self.topic, self.partition)


class Message(NamedTuple):
    """A record to append. ``partition`` overrides the key hash when a producer spreads work."""

    topic: str
    key: str | None
    value: bytes
    partition: int | None = None


def partition_for(key: str | None, partitions: int, explicit: int | None, fallback: int) -> int:
    """Same rule on every backend: explicit index, else crc32 of the key, else round robin."""
    if explicit is not None:
        return explicit % partitions
    if key is None:
        return fallback % partitions
    return zlib.crc32(key.encode()) % partitions


@runtime_checkable
class Subscription(Protocol):
    """A group member's view of its assigned partitions."""

    group: str

    async def getmany(self, max_records: int = 500, timeout: float = 0.5) -> list[Record]:
        """The next records of assigned, unpaused partitions, in offset order per partition."""
        ...

    def ack(self, record: Record) -> None:
        """Mark a record done. Offsets advance only over contiguous done records."""
        ...

    async def commit(self) -> None:
        """Store the committable offsets now (they are also committed periodically)."""
        ...

    def assignment(self) -> set[TP]: ...

    def pause(self, tp: TP) -> None: ...

    def resume(self, tp: TP) -> None: ...

    async def seek(self, tp: TP, offset: int) -> None: ...

    async def close(self) -> None:
        """Commit what is done and leave the group; unacknowledged records are redelivered."""
        ...


@runtime_checkable
class Log(Protocol):
    default_partitions: int

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def create_topics(self, names: Iterable[str], partitions: int | None = None) -> None:
        """Create missing topics (existing ones keep their partition count)."""
        ...

    async def publish(
        self, topic: str, key: str | None, value: bytes, partition: int | None = None
    ) -> tuple[int, int]:
        """Append one record; returns (partition, offset) once it is durable."""
        ...

    async def publish_batch(self, messages: Sequence[Message]) -> list[tuple[int, int]]:
        """Append many records; returns once all of them are durable."""
        ...

    def subscribe(
        self, group: str, topics: Sequence[str], on_revoke: OnRevoke | None = None
    ) -> Subscription: ...

    async def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        """Records from ``offset`` on, outside any group (replay, DLQ tools)."""
        ...

    async def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        """The first offset whose timestamp is >= timestamp_ms (the end offset if none)."""
        ...

    async def topics(self) -> dict[str, int]:
        """Topic name -> partition count."""
        ...

    async def end_offsets(self, topic: str) -> dict[int, int]: ...

    async def committed(self, group: str, topic: str) -> dict[int, int]: ...


def sqlite_path(url: str) -> str:
    """SQLAlchemy's convention: ``sqlite:///rel.db`` is relative, ``sqlite:////abs.db`` absolute."""
    rest = url.partition("://")[2].partition("?")[0]
    return rest[1:] if rest.startswith("/") else rest


def _options(url: str) -> dict[str, float | int | str]:
    """Tuning knobs from the URL's query string, e.g. ``?session_timeout=1.5&heartbeat=0.2``."""
    from urllib.parse import parse_qsl

    out: dict[str, float | int | str] = {}
    for k, v in parse_qsl(url.partition("?")[2]):
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def open_log(url: str, *, partitions: int = 8) -> Log:
    """``memory://``, ``sqlite:///rel/log.db`` / ``sqlite:////abs/log.db`` or
    ``kafka://host:port[,host:port]``; a query string passes backend options
    (``sqlite:///log.db?session_timeout=1.5``, ``kafka://h:9092?session_timeout_ms=6000``)."""
    scheme, _, rest = url.partition("://")
    opts = _options(url)
    partitions = int(opts.pop("partitions", partitions))
    if scheme == "memory":
        from fabric.log.memory import MemoryLog

        return MemoryLog(partitions=partitions)
    if scheme == "sqlite":
        from fabric.log.sqlite import SqliteLog

        return SqliteLog(sqlite_path(url), partitions=partitions, **opts)  # type: ignore[arg-type]
    if scheme == "kafka":
        from fabric.log.kafka import KafkaLog

        return KafkaLog(rest.partition("?")[0], partitions=partitions, **opts)  # type: ignore[arg-type]
    raise ValueError(f"unknown log URL {url!r}: use memory://, sqlite:///path or kafka://host:port")
