"""Partition assignment for the embedded backends (Kafka's broker-side groups use aiokafka's
RoundRobinPartitionAssignor, which follows the same rule).

Round robin over the sorted (topic, partition) pairs: with one topic, partition ``i`` goes to
member ``i mod n``. Producers that spread work by explicit partition index (the splitter's
chunks) thereby hand consecutive chunks to different members.
"""

from __future__ import annotations

from collections.abc import Sequence

from fabric.log import TP

__all__ = ["round_robin"]


def round_robin(pairs: Sequence[TP], members: Sequence[str]) -> dict[str, list[TP]]:
    ordered = sorted(members)
    out: dict[str, list[TP]] = {m: [] for m in ordered}
    if not ordered:
        return out
    for i, tp in enumerate(sorted(pairs)):
        out[ordered[i % len(ordered)]].append(tp)
    return out
