"""Which actions were already delivered: the connector side of effectively-once.

Kafka delivers at least once (a crash between delivery and offset commit, a rebalance,
an engine replay re-emitting the same deterministic ``action_id``), so the runner asks
the ledger before delivering and tells it after a delivery succeeded. Two ledgers:

- ``MemoryLedger``: bounded, per process, forgets on restart - catches redeliveries
  within one run (the common case: duplicates published close together).
- ``RocksLedger``: the same contract on disk (rocksdict), entries expire after a TTL,
  so it survives restarts. Each runner process needs its own path.

Implementations must be thread-safe: the runner calls them from its delivery threads.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Protocol


class DeliveryLedger(Protocol):
    def seen(self, action_id: str) -> bool:
        """True when this action was already delivered."""
        ...

    def record(self, action_id: str) -> None:
        """Remember that this action was delivered."""
        ...

    def close(self) -> None: ...


class MemoryLedger:
    """The most recent ``capacity`` delivered action ids, least recently used out."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, action_id: str) -> bool:
        with self._lock:
            if action_id in self._ids:
                self._ids.move_to_end(action_id)
                return True
            return False

    def record(self, action_id: str) -> None:
        with self._lock:
            self._ids[action_id] = None
            self._ids.move_to_end(action_id)
            while len(self._ids) > self.capacity:
                self._ids.popitem(last=False)

    def __len__(self) -> int:
        return len(self._ids)

    def close(self) -> None:
        pass


class RocksLedger:
    """Delivered action ids in a RocksDB directory; entries older than ``ttl`` seconds
    are dropped by compaction (so ``seen`` may stay true a little longer than ``ttl``)."""

    def __init__(self, path: str | Path, *, ttl: float = 7 * 24 * 3600) -> None:
        from rocksdict import AccessType, Rdict

        Path(path).mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path), access_type=AccessType.with_ttl(int(ttl)))
        self._lock = threading.Lock()

    def seen(self, action_id: str) -> bool:
        with self._lock:
            return action_id.encode() in self._db

    def record(self, action_id: str) -> None:
        with self._lock:
            self._db[action_id.encode()] = int(time.time() * 1000).to_bytes(8, "big")

    def close(self) -> None:
        with self._lock:
            self._db.close()
