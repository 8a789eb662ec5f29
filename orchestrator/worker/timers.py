"""Durable timers: an index of due times per partition, fired by tick records.

Faust tables can only be written while processing a record of the owning partition, so
timers cannot fire from a free-running asyncio task. Instead the leader sends a tick to
every partition of the ticks topic each interval; the worker that owns partition ``p``
processes its tick like any record and fires the due timers of ``p``, where it may
write state. The index lives in a changelogged table, so timers survive restarts and
follow their partition to another worker.

Index keys sort by due time: ``<due ms, 13 digits> 0x1f <customer> 0x1f <timer id>``.
Cancelled or rescheduled timers are not deleted eagerly; their entries fire and the core
ignores them (it knows which timers are live), which saves a read per cancel.
"""

from __future__ import annotations

from orchestrator.core.decision import Timer

SEP = b"\x1f"
_DUE_WIDTH = 13


def index_key(timer: Timer) -> bytes:
    if timer.due_at < 0:
        raise ValueError(f"timer {timer.timer_id!r} is due before 1970")
    return (
        b"%013d" % timer.due_at + SEP + timer.customer_id.encode() + SEP + timer.timer_id.encode()
    )


def upper_bound(now: int) -> bytes:
    """The first key after every timer due at or before ``now``."""
    return b"%013d" % (now + 1)


def decode_index_key(key: bytes) -> tuple[int, str, str]:
    due, customer, timer_id = key.split(SEP, 2)
    return int(due), customer.decode(), timer_id.decode()


def encode_tick(now: int) -> bytes:
    return str(now).encode()


def decode_tick(value: bytes | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
