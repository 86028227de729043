"""Contiguous-offset tracking shared by every backend.

Records of a partition are delivered in offset order but may finish in any order (a voice
worker runs several chunks at once). The committable offset is the first delivered record
that is not done yet, or one past the last delivered record when all are done. Offsets may
have gaps (Kafka compaction, transaction markers): only delivered offsets count.
"""

from __future__ import annotations

from collections import deque

__all__ = ["OffsetTracker"]


class OffsetTracker:
    __slots__ = ("_delivered", "_done", "_high")

    def __init__(self, start: int) -> None:
        self._delivered: deque[int] = deque()
        self._done: set[int] = set()
        self._high = start  # one past the last delivered offset

    def delivered(self, offset: int) -> None:
        self._delivered.append(offset)
        self._high = offset + 1

    def done(self, offset: int) -> None:
        delivered = self._delivered
        if delivered and delivered[0] == offset:
            delivered.popleft()
            done = self._done
            while delivered and delivered[0] in done:
                done.discard(delivered.popleft())
        else:
            self._done.add(offset)

    @property
    def committable(self) -> int:
        return self._delivered[0] if self._delivered else self._high

    @property
    def in_flight(self) -> int:
        return len(self._delivered) - len(self._done)

    def reset(self, offset: int) -> None:
        """After a seek: forget everything delivered before."""
        self._delivered.clear()
        self._done.clear()
        self._high = offset
