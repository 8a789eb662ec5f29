"""Recently acknowledged message ids: an SDK retry of a request that did reach Kafka
(its 200 was lost on the way back) is answered 200 again without publishing twice.

An optimisation, not the guarantee: ids are remembered only after Kafka acknowledged
them, only by this process and only the most recent ``capacity`` of them. The
guarantee is the worker's de-duplication by ``event_id`` (= ``messageId``).
"""

from __future__ import annotations

from collections import OrderedDict


class RecentIds:
    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, key: str) -> None:
        if self.capacity <= 0:
            return
        self._ids[key] = None
        self._ids.move_to_end(key)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
