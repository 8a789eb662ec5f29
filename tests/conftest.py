"""Shared fixtures. The Kafka broker is real (see orchestrator.broker): one per test
session, each test isolated by its own topic prefix."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from orchestrator import broker as brokers
from orchestrator.processes import spawn, tail, terminate
from orchestrator.topics import Topics

T = TypeVar("T")


@pytest.fixture(scope="session")
def kafka(request: pytest.FixtureRequest) -> Iterator[brokers.Broker]:
    with brokers.running() as b:
        message = f"[rota tests] Kafka for this session: {b.describe()}"
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print(f"\n{message}", flush=True)
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


def consumer_message(
    topic: str,
    offset: int,
    key: bytes | None = b"k",
    value: bytes | None = b"v",
    *,
    headers: list[tuple[str, bytes]] | None = None,
    generation: int = 1,
) -> ConsumerMessage:
    """A record of partition 0 as Faust's consumer hands it on (for tests of the worker's
    delivery without a broker)."""
    return ConsumerMessage(
        topic, 0, offset, 0.0, 0, headers, key, value, None, tp=TP(topic, 0),
        generation_id=generation,
    )  # fmt: skip


def get_json(port: int, path: str) -> tuple[int, Any]:
    """GET a worker's API on localhost: (status, JSON body); (0, None) while nothing
    listens yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except OSError:
        return 0, None


# -- a real worker process -----------------------------------------------------------


class WorkerProcess:
    """``rota worker`` as a child process with its own data dir and metrics port."""

    def __init__(
        self,
        kafka: brokers.Broker,
        topics: Topics,
        journeys: Path,
        data_dir: Path,
        log_path: Path,
        **env: str,
    ) -> None:
        self.metrics_port = brokers.free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "ROTA_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "ROTA_TOPIC_PREFIX": topics.prefix,
            "ROTA_APP_ID": f"{topics.prefix}-worker",
            "ROTA_PARTITIONS": "4",
            "ROTA_JOURNEYS": str(journeys),
            "ROTA_DATA_DIR": str(data_dir),
            "ROTA_METRICS_PORT": str(self.metrics_port),
            "ROTA_TICK_INTERVAL": "0.2",
            # No caps, no quiet hours: a test's actions must not depend on the time of
            # day it runs at. Tests of the policy pass their own.
            "ROTA_POLICY": "none",
            **env,
        }
        self.proc = spawn(
            [sys.executable, "-m", "orchestrator.cli", "worker"], log_path=log_path, env=self.env
        )

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        from orchestrator.run import scrape

        try:
            return scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")
        except OSError:
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited ({self.proc.returncode}):\n{tail(self.log_path)}")
            return {}

    def total(self, name: str, **labels: str) -> float:
        from orchestrator.run import total

        return total(self.metrics(), name, **labels)

    def stop(self) -> int:
        return terminate(self.proc)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def start_worker(kafka, topics, tmp_path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(journeys: Path, name: str = "w0", **env: str) -> WorkerProcess:
        w = WorkerProcess(
            kafka, topics, journeys, tmp_path / f"data-{name}", tmp_path / f"{name}.log", **env
        )
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def read_topic(
    bootstrap: str, topic: str, *, until: Callable[[list[Message]], bool], timeout: float = 30.0
) -> list[Message]:
    """Every record of ``topic`` from the beginning, read until ``until(records)`` holds.

    Partitions are assigned, not subscribed: no consumer-group join to wait for, and no
    reliance on end offsets (the embedded broker reports them wrongly).
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "rota-tests-reader",
            "enable.auto.commit": False,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        got: list[Message] = []
        deadline = time.monotonic() + timeout
        while not until(got):
            if time.monotonic() > deadline:
                pytest.fail(f"timed out reading {topic}: have {len(got)} records")
            for msg in consumer.consume(500, timeout=0.2):
                if msg.error() is None:
                    got.append(msg)
        return got
    finally:
        consumer.close()
