"""The one place that touches Faust internals (faust-streaming 0.15).

1. Table writes need "the current event" to pick the changelog partition, and inside a
   ``take_events`` batch there is none; ``event_context`` sets it per event.
2. Timers are fired per partition, so the tick handler scans that partition's RocksDB
   database directly (``partition_db``), in key order.

Both are covered by the worker's integration tests; a Faust upgrade that breaks them
fails there first.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

from faust import streams


@contextlib.contextmanager
def event_context(event: Any) -> Iterator[None]:
    token = streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        streams._current_event.reset(token)


def partition_db(table: Any, partition: int) -> Any:
    """The rocksdict ``Rdict`` holding ``table``'s keys of ``partition``."""
    return table.data._db_for_partition(partition)
