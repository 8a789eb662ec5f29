"""Which offsets may be committed while deliveries finish out of order.

Actions of different customers are delivered concurrently, so message 7 of a partition
can finish before message 5. Committing 8 then would lose 5 and 6 on a crash. The
tracker commits, per partition, only up to the lowest offset still being worked on:
the end of the contiguous run of finished messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


@dataclass
class _Partition:
    pending: set[int] = field(default_factory=set)
    next_offset: int = -1
    """One past the highest offset started: the commit position once nothing is pending."""
    committed: int = -1


class OffsetTracker:
    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _Partition] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        part = self._parts.get(tp)
        if part is None:
            # The first offset read is where the group's position already is.
            part = self._parts[tp] = _Partition(committed=offset)
        part.pending.add(offset)
        part.next_offset = max(part.next_offset, offset + 1)

    def completed(self, tp: TopicPartition, offset: int) -> None:
        """Mark a message done. Unknown partitions (revoked meanwhile) are ignored."""
        part = self._parts.get(tp)
        if part is not None:
            part.pending.discard(offset)

    def pending(self, tps: set[TopicPartition] | None = None) -> int:
        """Messages started and not completed, on ``tps`` or on all partitions."""
        return sum(
            len(part.pending) for tp, part in self._parts.items() if tps is None or tp in tps
        )

    def committable(self) -> dict[TopicPartition, int]:
        """Per partition, the offset to commit (the next one to read) where it moved."""
        out: dict[TopicPartition, int] = {}
        for tp, part in self._parts.items():
            position = min(part.pending) if part.pending else part.next_offset
            if position > part.committed:
                out[tp] = position
        return out

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            part = self._parts.get(tp)
            if part is not None:
                part.committed = max(part.committed, offset)

    def forget(self, tps: set[TopicPartition]) -> None:
        """Drop partitions this consumer no longer owns."""
        for tp in tps:
            self._parts.pop(tp, None)
