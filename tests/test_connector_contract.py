"""The connector contract and the runner's pure parts: results, configuration errors,
discovery, retry policy, offset tracking, the delivery ledger, outcome events, CLI."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors import cli, registry
from connectors.base import ConfigError, DeliveryResult, DeliveryStatus
from connectors.ledger import MemoryLedger, RocksLedger
from connectors.log import LogConnector
from connectors.offsets import OffsetTracker
from connectors.outcomes import Outcome, is_expired, outcome_event_id, outcome_touchpoint
from connectors.retry import RetryPolicy
from connectors.webhook import WebhookConnector
from orchestrator.records import NextBestAction
from orchestrator.wire import decode_touchpoint, encode_touchpoint

TP = ("rota.actions.email", 0)


def an_action(**kw: object) -> NextBestAction:
    fields: dict[str, object] = {
        "action_id": "a1",
        "customer_id": "c1",
        "journey_id": "welcome",
        "journey_version": 2,
        "instance_id": "i1",
        "step": "send",
        "channel": "email",
        "created_at": 1_000,
    }
    fields.update(kw)
    return NextBestAction(**fields)  # type: ignore[arg-type]


# -- results -------------------------------------------------------------------------


def test_only_a_failed_delivery_can_be_retryable():
    assert DeliveryResult.failed("boom").retryable
    assert not DeliveryResult.failed("bad key", retryable=False).retryable
    with pytest.raises(ValueError, match="only a failed delivery"):
        DeliveryResult(DeliveryStatus.REJECTED, "no", retryable=True)
    with pytest.raises(ValueError, match="retry_after"):
        DeliveryResult.failed("x", retry_after=-1)


# -- configuration and discovery -----------------------------------------------------


def test_config_error_names_the_variable():
    error = ConfigError("ROTA_WEBHOOK_URL", "is required")
    assert isinstance(error, ValueError)
    assert (error.variable, str(error)) == ("ROTA_WEBHOOK_URL", "ROTA_WEBHOOK_URL: is required")


def test_log_connector_serves_the_configured_channels():
    assert LogConnector.from_config({}).channels == ("log",)
    connector = LogConnector.from_config({"ROTA_LOG_CHANNELS": "email, sms,email,call_centre"})
    assert connector.channels == ("email", "sms", "call_centre")
    with pytest.raises(ConfigError) as caught:
        LogConnector.from_config({"ROTA_LOG_CHANNELS": "email,SMS"})
    assert caught.value.variable == "ROTA_LOG_CHANNELS"
    with pytest.raises(ConfigError):
        LogConnector.from_config({"ROTA_LOG_CHANNELS": " , "})


def test_builtin_connectors_are_found_through_entry_points():
    found = registry.available()
    assert {"log", "webhook"} <= set(found)
    assert found["webhook"].value == "connectors.webhook:WebhookConnector"
    assert registry.load("log") is LogConnector
    assert registry.load("webhook") is WebhookConnector


def test_an_unknown_connector_name_lists_the_installed_ones():
    with pytest.raises(registry.ConnectorNotFound, match=r"'carrier-pigeon'.*log, .*webhook"):
        registry.load("carrier-pigeon")


def test_cli_list_shows_channels_and_what_is_missing(capsys):
    assert cli.list_connectors({"ROTA_LOG_CHANNELS": "email,sms"}) == 0
    out = capsys.readouterr().out
    assert "connectors.log:LogConnector" in out and "email, sms" in out
    assert "(not configured: ROTA_WEBHOOK_URL: is required" in out


@pytest.mark.parametrize(
    ("names", "env", "says"),
    [
        (["log"], {}, "ROTA_KAFKA_BOOTSTRAP is required"),
        (["webhook"], {"ROTA_KAFKA_BOOTSTRAP": "k:9092"}, "ROTA_WEBHOOK_URL: is required"),
        (["nope"], {"ROTA_KAFKA_BOOTSTRAP": "k:9092"}, "no connector named 'nope'"),
        (
            ["log"],
            {"ROTA_KAFKA_BOOTSTRAP": "k:9092", "ROTA_CONNECTOR_METRICS_PORT": "http"},
            "ROTA_CONNECTOR_METRICS_PORT: 'http' is not a port number",
        ),
    ],
)
def test_cli_run_refuses_bad_configuration_before_touching_kafka(names, env, says, capsys):
    assert cli.run_connectors(names, env) == 2
    assert says in capsys.readouterr().err


# -- retry policy ------------------------------------------------------------------------


def test_backoff_doubles_from_the_base_and_stops_at_the_cap():
    policy = RetryPolicy(base_delay=0.5, multiplier=2, max_delay=3, jitter=0.5)
    no_jitter = [policy.delay(n, rand=lambda: 0.0) for n in range(1, 6)]
    assert no_jitter == [0.5, 1.0, 2.0, 3.0, 3.0]
    full_jitter = [policy.delay(n, rand=lambda: 1.0) for n in range(1, 4)]
    assert full_jitter == [0.25, 0.5, 1.0]


def test_retry_after_lengthens_the_wait_but_never_past_the_cap():
    policy = RetryPolicy(base_delay=0.1, max_delay=5, jitter=0)
    assert policy.delay(1, retry_after=2) == 2
    assert policy.delay(1, retry_after=0) == 0.1
    assert policy.delay(1, retry_after=3600) == 5


def test_only_retryable_failures_are_retried_and_only_up_to_max_attempts():
    policy = RetryPolicy(max_attempts=3)
    transient = DeliveryResult.failed("503")
    assert policy.should_retry(transient, attempts=1)
    assert policy.should_retry(transient, attempts=2)
    assert not policy.should_retry(transient, attempts=3)
    assert not policy.should_retry(DeliveryResult.failed("bad", retryable=False), attempts=1)
    assert not policy.should_retry(DeliveryResult.rejected("400"), attempts=1)
    assert not policy.should_retry(DeliveryResult.delivered(), attempts=1)
    assert not RetryPolicy(max_attempts=1).should_retry(transient, attempts=1)


@pytest.mark.parametrize(
    "kw",
    [
        {"max_attempts": 0},
        {"base_delay": -1},
        {"base_delay": 5, "max_delay": 1},
        {"multiplier": 0.5},
        {"jitter": 1.5},
    ],
)
def test_a_nonsensical_retry_policy_is_refused(kw):
    with pytest.raises(ValueError):
        RetryPolicy(**kw)


@given(
    attempts=st.integers(1, 200),
    rand=st.floats(0, 1),
    retry_after=st.none() | st.floats(0, 1e9),
    jitter=st.floats(0, 1),
)
def test_every_delay_is_within_zero_and_the_cap(attempts, rand, retry_after, jitter):
    policy = RetryPolicy(base_delay=0.2, max_delay=10, jitter=jitter)
    delay = policy.delay(attempts, retry_after, rand=lambda: rand)
    assert 0 <= delay <= 10
    if retry_after is not None:
        assert delay >= min(10, retry_after)  # the provider's wait is honoured up to the cap


# -- offsets -----------------------------------------------------------------------------


def test_commit_position_stops_at_the_lowest_unfinished_offset():
    tracker = OffsetTracker()
    for offset in (5, 6, 7, 8):
        tracker.started(TP, offset)
    assert tracker.committable() == {}  # nothing finished yet: already at 5
    tracker.completed(TP, 7)
    tracker.completed(TP, 8)
    assert tracker.committable() == {}  # 5 still in flight
    tracker.completed(TP, 5)
    assert tracker.committable() == {TP: 6}
    tracker.committed({TP: 6})
    assert tracker.committable() == {}
    tracker.completed(TP, 6)
    assert tracker.committable() == {TP: 9}
    assert tracker.pending() == 0


def test_revoked_partitions_are_forgotten_and_late_completions_ignored():
    other = ("rota.actions.email", 1)
    tracker = OffsetTracker()
    tracker.started(TP, 0)
    tracker.started(other, 0)
    assert tracker.pending({TP}) == 1
    tracker.forget({TP})
    tracker.completed(TP, 0)
    tracker.completed(other, 0)
    assert tracker.committable() == {other: 1}


@given(st.lists(st.integers(0, 49), unique=True), st.randoms())
def test_never_commits_past_an_unfinished_message(finished: list[int], rng: random.Random):
    tracker = OffsetTracker()
    for offset in range(50):
        tracker.started(TP, offset)
    rng.shuffle(finished)
    for offset in finished:
        tracker.completed(TP, offset)
    position = tracker.committable().get(TP, 0)
    done = set(finished)
    assert all(o in done for o in range(position))  # everything before it finished
    assert position == 50 or position not in done  # and it stops at the first gap


# -- ledger ------------------------------------------------------------------------------


def test_memory_ledger_remembers_the_most_recent_deliveries():
    ledger = MemoryLedger(capacity=2)
    ledger.record("a")
    ledger.record("b")
    assert ledger.seen("a")  # touching "a" makes "b" the oldest
    ledger.record("c")
    assert ledger.seen("a") and ledger.seen("c")
    assert not ledger.seen("b")
    assert len(ledger) == 2


def test_rocks_ledger_survives_a_restart(tmp_path):
    ledger = RocksLedger(tmp_path / "delivered")
    ledger.record("act-1")
    assert ledger.seen("act-1") and not ledger.seen("act-2")
    ledger.close()
    reopened = RocksLedger(tmp_path / "delivered")
    try:
        assert reopened.seen("act-1")
    finally:
        reopened.close()


# -- outcomes ----------------------------------------------------------------------------


def test_outcome_event_id_depends_only_on_action_and_outcome():
    assert outcome_event_id("a1", Outcome.DELIVERED) == outcome_event_id("a1", Outcome.DELIVERED)
    ids = {outcome_event_id(a, o) for a in ("a1", "a2") for o in Outcome}
    assert len(ids) == 2 * len(Outcome)


def test_outcome_touchpoint_reports_the_action_and_round_trips_the_wire():
    action = an_action(template="welcome-1")
    tp = outcome_touchpoint(
        action,
        Outcome.DELIVERED,
        connector="email",
        occurred_at=5_000,
        detail="250 OK",
        attempts=2,
        provider_message_id="m-1",
    )
    assert (tp.type, tp.name, tp.channel, tp.customer_id, tp.action_id, tp.source) == (
        "outcome",
        "Action Delivered",
        "email",
        "c1",
        "a1",
        "connector:email",
    )
    assert tp.event_id == outcome_event_id("a1", Outcome.DELIVERED)
    assert dict(tp.properties) == {
        "journey_id": "welcome",
        "journey_version": 2,
        "step": "send",
        "instance_id": "i1",
        "detail": "250 OK",
        "attempts": 2,
        "template": "welcome-1",
        "provider_message_id": "m-1",
    }
    assert decode_touchpoint(encode_touchpoint(tp)) == tp


def test_an_action_is_expired_only_after_its_expiry():
    assert not is_expired(an_action(), now_ms=10**15)
    assert not is_expired(an_action(expires_at=2_000), now_ms=2_000)
    assert is_expired(an_action(expires_at=2_000), now_ms=2_001)
