"""Kill -9 a connector process in the middle of a batch, restart it: every action is
delivered, none twice.

The set-up makes the moment of the kill exact rather than lucky. All actions sit on one
partition. The endpoint holds the request for ``act-0`` (offset 0) unanswered, so
nothing of the partition can be committed and the delivery thread of ``cust-0`` is
stuck; the other threads deliver everything else. Once all of those are delivered *and*
their outcomes are on Kafka (so the runner has recorded them in its RocksDB ledger), the
process is killed with SIGKILL while the ``act-0`` request is still in flight. The
restarted process reads the whole partition again: the ledger must skip what was
delivered, and what was in flight or queued must now be delivered - once.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from conftest import wait_for
from test_connector_runner import action, outcomes, publish
from test_connector_webhook import HttpEndpoint, Received, Reply

from connectors.runner import lane_of
from orchestrator.processes import spawn, tail, terminate
from orchestrator.topics import ensure_topics
from orchestrator.wire import encode_action

pytestmark = pytest.mark.kafka

LANES = 4
COUNT = 40


@pytest.mark.timeout(120)
def test_killed_mid_batch_and_restarted_delivers_every_action_exactly_once(
    kafka, topics, tmp_path: Path
):
    topic = topics.actions("webhook")
    ensure_topics(kafka.bootstrap, [topic], partitions=1)
    ensure_topics(kafka.bootstrap, [topics.touchpoints, topics.deadletter], partitions=2)
    actions = [action(n) for n in range(COUNT)]
    publish(
        kafka.bootstrap, topic, [(a.customer_id.encode(), encode_action(a)) for a in actions], 0
    )
    stuck_lane = lane_of("cust-0", LANES)
    blocked = {a.action_id for a in actions if lane_of(a.customer_id, LANES) == stuck_lane}
    free = {a.action_id for a in actions} - blocked

    answered: Counter[str] = Counter()
    lock = threading.Lock()
    hold = threading.Event()
    hold.set()
    release = threading.Event()

    def reply(request: Received) -> Reply:
        key = request.headers["Idempotency-Key"]
        if key == "act-0" and hold.is_set():
            release.wait(60)
            return 503, {}  # too late: the connector that asked is dead
        with lock:
            answered[key] += 1
        return 200, {}

    endpoint = HttpEndpoint(reply=reply)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")]),
        "ROTA_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "ROTA_TOPIC_PREFIX": topics.prefix,
        "ROTA_SESSION_TIMEOUT_MS": "3000",
        "ROTA_WEBHOOK_URL": endpoint.url,
        "ROTA_CONNECTOR_DATA_DIR": str(tmp_path / "data"),
        "ROTA_CONNECTOR_THREADS": str(LANES),
    }
    argv = [sys.executable, "-m", "orchestrator.cli", "connector", "run", "webhook"]
    log_path = tmp_path / "connector.log"

    def delivered_outcomes() -> Counter[str]:
        return Counter(
            t.action_id or ""
            for t in outcomes(kafka.bootstrap, topics)
            if t.name == "Action Delivered"
        )

    try:
        first = spawn(argv, log_path=log_path, env=env)
        try:
            wait_for(
                lambda: set(answered) >= free or first.poll() is not None,
                timeout=40,
                what="every action not stuck behind act-0 delivered",
            )
            assert first.poll() is None, tail(log_path)
            wait_for(
                lambda: set(delivered_outcomes()) >= free,
                timeout=20,
                interval=0.3,
                what="their outcomes on Kafka (so the ledger has them)",
            )
            assert "act-0" in {r.headers["Idempotency-Key"] for r in endpoint.received}
            assert not set(answered) & blocked  # the stuck thread is still stuck
        finally:
            first.kill()  # SIGKILL: no drain, no commit, no goodbye
            first.wait(10)
        hold.clear()
        release.set()

        second = spawn(argv, log_path=log_path, env=env)
        try:
            wait_for(
                lambda: set(answered) == free | blocked or second.poll() is not None,
                timeout=40,
                what="every action delivered after the restart",
            )
            assert second.poll() is None, tail(log_path)
            wait_for(
                lambda: sum(delivered_outcomes().values()) >= COUNT,
                timeout=20,
                interval=0.3,
                what="an outcome for every action",
            )
        finally:
            assert terminate(second) == 0, tail(log_path)
    finally:
        release.set()
        endpoint.close()

    assert answered == Counter({a.action_id: 1 for a in actions})  # each exactly once
    requested = Counter(r.headers["Idempotency-Key"] for r in endpoint.received)
    assert requested["act-0"] == 2  # in flight at the kill, sent again after it
    assert delivered_outcomes() == Counter({a.action_id: 1 for a in actions})
    log = log_path.read_text()
    summary = f"consumed={COUNT} delivered={len(blocked)} "
    assert summary in log, tail(log_path)
    assert f"duplicates={len(free)} " in log  # re-read, recognised by the RocksDB ledger
    assert "cust-" not in log  # no customer id in the logs
