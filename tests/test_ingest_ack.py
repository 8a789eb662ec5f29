"""200 means Kafka has it: with the broker gone, the client gets a 503 (in bounded
time) and never a 200. Uses a broker of its own so the session's keeps running."""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests
from prometheus_client import REGISTRY

from orchestrator.broker import start_embedded
from orchestrator.ingest.config import HttpIngestConfig
from orchestrator.ingest.http import running
from orchestrator.ingest.writekeys import WriteKeys
from orchestrator.topics import Topics, ensure_topics
from orchestrator.wire import decode_touchpoint
from tests.conftest import read_topic

pytestmark = pytest.mark.kafka

ACK_TIMEOUT = 2.0


def test_client_gets_503_not_200_when_kafka_does_not_acknowledge():
    broker = start_embedded()
    topics = Topics("acktest")
    try:
        ensure_topics(broker.bootstrap, [topics.touchpoints], partitions=1)
        config = HttpIngestConfig(
            bootstrap=broker.bootstrap,
            topics=topics,
            write_keys=WriteKeys.parse("k:web"),
            host="127.0.0.1",
            port=0,
            ack_timeout=ACK_TIMEOUT,
        )
        with running(config) as ingest:

            def track(message_id: str) -> requests.Response:
                body = {"userId": "u1", "event": "Order Completed", "messageId": message_id}
                return requests.post(
                    f"{ingest.url}/v1/track", json=body, auth=("k", ""), timeout=30
                )

            assert track("before").status_code == 200
            (msg,) = read_topic(broker.bootstrap, topics.touchpoints, until=lambda g: len(g) >= 1)
            assert decode_touchpoint(msg.value()).event_id == "before"

            assert broker.pid is not None
            os.kill(broker.pid, signal.SIGKILL)  # the cluster is gone, without a goodbye
            before = REGISTRY.get_sample_value(
                "rota_ingest_rejects_total", {"reason": "kafka_unavailable"}
            )
            started = time.monotonic()
            r = track("after")
            elapsed = time.monotonic() - started
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "kafka_unavailable"
            assert r.headers["Retry-After"] == "1"
            assert elapsed < ACK_TIMEOUT + 3  # bounded by message.timeout.ms, not hanging
            after = REGISTRY.get_sample_value(
                "rota_ingest_rejects_total", {"reason": "kafka_unavailable"}
            )
            assert (after or 0) - (before or 0) == 1
    finally:
        broker.close()
