"""The worker's garbage collector settings (orchestrator/worker/collector.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from orchestrator.worker import collector


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_settle_puts_what_lives_now_out_of_the_collectors_sight() -> None:
    alive = _Node()
    frozen = collector.settle()
    assert frozen == gc.get_freeze_count() > 0
    assert gc.get_threshold() == collector.THRESHOLDS
    assert not any(o is alive for o in gc.get_objects())  # frozen: never walked again
    later = _Node()
    assert any(o is later for o in gc.get_objects())


@pytest.mark.usefixtures("restored_collector")
def test_a_cycle_made_after_settle_is_still_collected() -> None:
    collector.settle()
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    assert gone() is not None  # reference counting alone cannot free a cycle
    gc.collect()
    assert gone() is None
