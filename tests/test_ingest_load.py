"""The ingest load generator: what it reports as acknowledged is on Kafka."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.ingest.config import HttpIngestConfig
from orchestrator.ingest.http import running
from orchestrator.ingest.load import WRITE_KEY, main, run_load
from orchestrator.ingest.writekeys import WriteKeys
from orchestrator.topics import ensure_topics
from orchestrator.wire import decode_touchpoint
from tests.conftest import read_topic

pytestmark = pytest.mark.kafka


def test_every_event_the_load_test_counts_as_acknowledged_is_on_kafka(kafka, topics, capsys):
    ensure_topics(kafka.bootstrap, [topics.touchpoints], partitions=2)
    config = HttpIngestConfig(
        bootstrap=kafka.bootstrap,
        topics=topics,
        write_keys=WriteKeys.parse(f"{WRITE_KEY}:web"),
        host="127.0.0.1",
        port=0,
    )
    with running(config) as ingest:
        result = asyncio.run(
            run_load(ingest.url, write_key=WRITE_KEY, duration=1.0, concurrency=4, batch=10)
        )
        assert result.events > 0 and set(result.statuses) == {200}
        assert result.events == 10 * result.requests
        assert main(["--url", ingest.url, "--duration", "0.5", "--batch", "0", "--json"]) == 0
    assert '"events_per_s"' in capsys.readouterr().out
    msgs = read_topic(
        kafka.bootstrap, topics.touchpoints, until=lambda got: len(got) >= result.events
    )
    ids = {decode_touchpoint(m.value()).event_id for m in msgs}
    assert len(ids) >= result.events  # distinct events, none lost
