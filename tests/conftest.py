"""Shared fixtures. The Kafka broker is real (see orchestrator.broker): one per test
session, each test isolated by its own topic prefix."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from orchestrator import broker as brokers
from orchestrator.topics import Topics

T = TypeVar("T")


@pytest.fixture(scope="session")
def kafka() -> Iterator[brokers.Broker]:
    with brokers.running() as b:
        print(f"\n[rota tests] using {b.describe()}")
        yield b


@pytest.fixture
def topics() -> Topics:
    """A topic prefix no other test uses."""
    return Topics(f"t{uuid.uuid4().hex[:10]}")


def wait_for(
    probe: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``probe`` until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or probe!r}")
        time.sleep(interval)
