"""``rota report`` against a real worker on the real broker.

A split test with a holdout and a goal, a population of a few hundred customers of
whom a known subset converts: the report the command prints must equal the figures
this test works out from the population it generated. Which arm each customer lands
in is computed offline by the pure core (as tests/test_worker_failures.py does);
everything else - who converts, which actions touched them and when - follows from how
the population was built.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections import defaultdict
from statistics import NormalDist

import pytest
from confluent_kafka import Producer
from conftest import read_topic

from orchestrator import wire
from orchestrator.core.decide import decide
from orchestrator.core.state import CustomerState
from orchestrator.journey.catalog import Catalog
from orchestrator.kafka_security import producer_config
from orchestrator.records import CHANNELS, Context, Touchpoint
from orchestrator.report_cli import read_records
from orchestrator.topics import Topics, ensure_topics

pytestmark = pytest.mark.kafka

#: Arm ``email_first`` gets an email at once and, if they open it, an SMS; arm
#: ``push_first`` a push; the holdout nothing. Everyone is measured for 30 days. No
#: timer fires during the test (the waits are 30 days of real time), so every action's
#: time is the time of a touchpoint this test chose.
JOURNEY = """
id: report_split
name: Report split test
version: 1
entry:
  event: Signed Up
  reentry: never
goal:
  event: Order Completed
  within: 30d
steps:
  assign:
    type: split
    variants:
      - {name: email_first, weight: 45, next: welcome_email}
      - {name: push_first, weight: 45, next: welcome_push}
    holdout: {weight: 10, next: measure}
  welcome_email: {type: action, channel: email, template: welcome, next: wait_open}
  wait_open:
    type: wait_for
    event: Email Opened
    timeout: 30d
    on_event: nudge_sms
    on_timeout: measure
  nudge_sms: {type: action, channel: sms, template: nudge, next: measure}
  welcome_push: {type: action, channel: push, template: welcome, next: measure}
  measure: {type: wait, duration: 30d, next: done}
  done: {type: end}
"""
CUSTOMERS = 360
HOUR, DAY = 3_600_000, 86_400_000
HALF_LIFE = 7 * DAY
#: Sign-ups start 20 days ago: everything the test publishes is in the past, and the
#: journey's 30-day timers are not due before the test ends.
T0 = int(time.time() * 1000) - 20 * DAY


def _signed_up(i: int) -> int:
    return T0 + i * 60_000


def _opens(i: int) -> bool:
    return i % 3 != 0


def _converts(i: int, arm: str) -> bool:
    """The known subset: a different share per arm, so the arms really differ."""
    return i % {"email_first": 2, "push_first": 4, "holdout": 5}[arm] == 0


def _converted_at(i: int) -> int:
    return _signed_up(i) + (1 + i % 5) * DAY


def _tp(cid: str, n: int, name: str, at: int, **traits: object) -> Touchpoint:
    return Touchpoint(
        event_id=f"{cid}-{n}",
        type="track",
        name=name,
        channel="web",
        occurred_at=at,
        customer_id=cid,
        traits=traits,  # type: ignore[arg-type]
        context=Context(timezone="UTC"),
    )


def _population(arms: dict[str, str] | None = None) -> list[Touchpoint]:
    """Everyone signs up; two in three open the email (an hour later); the converters
    order 1-5 days after signing up. Without ``arms``, only the sign-ups."""
    events = []
    for i in range(CUSTOMERS):
        cid = f"r{i:04d}"
        events.append(
            _tp(
                cid,
                0,
                "Signed Up",
                _signed_up(i),
                email=f"{cid}@example.com",
                phone=f"+3360000{i:04d}",
                push_token=f"token-{cid}",
                push_consent=True,
            )
        )
        if arms is None:
            continue
        if _opens(i):
            events.append(_tp(cid, 1, "Email Opened", _signed_up(i) + HOUR))
        if _converts(i, arms[cid]):
            events.append(_tp(cid, 2, "Order Completed", _converted_at(i)))
    return events


def _arms(catalog: Catalog) -> dict[str, str]:
    """Each customer's arm, by the pure core over their sign-up."""
    arms = {}
    for tp in _population():
        state = CustomerState.empty(tp.subject)
        decision = decide(state, tp, catalog, customer_id=tp.subject)
        (arm,) = [f.variant for f in decision.funnel if f.step == "assign"]
        assert arm is not None
        arms[tp.subject] = arm
    return arms


def _z_test(x: int, n: int, x0: int, n0: int) -> dict[str, float]:
    p, p0 = x / n, x0 / n0
    se = math.sqrt(p * (1 - p) / n + p0 * (1 - p0) / n0)
    pooled = (x + x0) / (n + n0)
    z = (p - p0) / math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / n0))
    return {
        "difference": p - p0,
        "ci_low": p - p0 - 1.959963984540054 * se,
        "ci_high": p - p0 + 1.959963984540054 * se,
        "z": z,
        "p_value": 2 * (1 - NormalDist().cdf(abs(z))),
    }


def _expected(arms: dict[str, str]) -> dict:
    """The report's figures, from how the population was built."""
    entered: dict[str, int] = defaultdict(int)
    converted: dict[str, int] = defaultdict(int)
    credit: dict[str, dict[str, float]] = {
        m: defaultdict(float) for m in ("first_touch", "last_touch", "linear", "time_decay")
    }
    touched = untouched = 0
    for i in range(CUSTOMERS):
        arm = arms[f"r{i:04d}"]
        entered[arm] += 1
        if not _converts(i, arm):
            continue
        converted[arm] += 1
        if arm == "holdout":
            untouched += 1
            continue
        touched += 1
        if arm == "push_first":
            touches = [("push", _signed_up(i))]
        else:
            touches = [("email", _signed_up(i))]
            if _opens(i):
                touches.append(("sms", _signed_up(i) + HOUR))
        age = [_converted_at(i) - at for _, at in touches]
        decay = [2 ** (-a / HALF_LIFE) for a in age]
        for n, (channel, _) in enumerate(touches):
            credit["first_touch"][channel] += n == 0
            credit["last_touch"][channel] += n == len(touches) - 1
            credit["linear"][channel] += 1 / len(touches)
            credit["time_decay"][channel] += decay[n] / sum(decay)
    a_openers = sum(1 for i in range(CUSTOMERS) if arms[f"r{i:04d}"] == "email_first" and _opens(i))
    steps = {
        "assign": CUSTOMERS,
        "welcome_email": entered["email_first"],
        "wait_open": entered["email_first"],
        "nudge_sms": a_openers,
        "welcome_push": entered["push_first"],
        "measure": a_openers + entered["push_first"] + entered["holdout"],
    }
    return {
        "entered": dict(entered),
        "converted": dict(converted),
        "steps": steps,
        "credit": {m: dict(c) for m, c in credit.items()},
        "touched": touched,
        "untouched": untouched,
    }


def _rota_report(kafka, topics: Topics, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ROTA_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "ROTA_TOPIC_PREFIX": topics.prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "report", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_rota_report_measures_a_split_test_and_attributes_its_conversions(
    kafka, topics, tmp_path, start_worker
):
    catalog = Catalog.from_yaml(JOURNEY)
    arms = _arms(catalog)
    expected = _expected(arms)
    assert min(expected["entered"].values()) >= 20  # every arm is populated
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "split.yaml").write_text(JOURNEY)
    ensure_topics(kafka.bootstrap, topics.all_for(CHANNELS), partitions=4)
    producer = Producer({**producer_config(kafka.bootstrap), "enable.idempotence": True})
    events = _population(arms)
    # A customer's events in order; a few strangers order without ever signing up.
    events += [_tp(f"s{n}", 0, "Order Completed", T0 + n) for n in range(5)]
    for tp in events:
        producer.produce(
            topics.touchpoints, key=tp.subject.encode(), value=wire.encode_touchpoint(tp)
        )
    assert producer.flush(30) == 0

    start_worker(journeys)
    # Every transition: entered + one per step reached + the conversions.
    transitions = CUSTOMERS + sum(expected["steps"].values()) + sum(expected["converted"].values())
    read_topic(
        kafka.bootstrap, topics.analytics, until=lambda m: len(m) >= transitions, timeout=120
    )
    sent = {
        "email": expected["entered"]["email_first"],
        "sms": expected["steps"]["nudge_sms"],
        "push": expected["entered"]["push_first"],
    }
    for channel, count in sent.items():
        read_topic(kafka.bootstrap, topics.actions(channel), until=lambda m, n=count: len(m) >= n)

    done = _rota_report(kafka, topics, "--format", "json", "--half-life", "7d")
    assert done.returncode == 0, done.stderr
    assert "rota report: read" in done.stderr
    (j,) = json.loads(done.stdout)["journeys"]
    converted = sum(expected["converted"].values())
    assert j["journey_id"] == "report_split"
    assert (j["entered"], j["converted"]) == (CUSTOMERS, converted)
    assert j["conversion_rate"] == pytest.approx(converted / CUSTOMERS)
    assert (j["exited"], j["completed"]) == (0, 0)
    assert j["active"] == CUSTOMERS - converted
    assert {s["step"]: s["reached"] for s in j["steps"]} == expected["steps"]
    assert j["steps"][0]["step"] == "assign" and j["steps"][-1]["step"] == "measure"

    (split,) = j["splits"]
    assert (split["step"], split["control"]) == ("assign", "holdout")
    got = {a["variant"]: a for a in split["arms"]}
    assert {v: a["entered"] for v, a in got.items()} == expected["entered"]
    assert {v: a["converted"] for v, a in got.items()} == expected["converted"]
    n0, x0 = expected["entered"]["holdout"], expected["converted"]["holdout"]
    assert got["holdout"]["lift"] is None
    for arm in ("email_first", "push_first"):
        n, x = expected["entered"][arm], expected["converted"][arm]
        assert got[arm]["rate"] == pytest.approx(x / n)
        lift = got[arm]["lift"]
        for name, value in _z_test(x, n, x0, n0).items():
            assert lift[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name

    attribution = j["attribution"]
    assert attribution["touched_conversions"] == expected["touched"]
    assert attribution["untouched_conversions"] == expected["untouched"]
    for model, credit in expected["credit"].items():
        assert attribution["models"][model] == pytest.approx(credit, rel=1e-9), model

    # A window over the first half of the sign-ups measures only those entries.
    half = CUSTOMERS // 2
    window = f"{T0}..{_signed_up(half)}"
    done = _rota_report(kafka, topics, "--format", "json", "--window", window)
    assert done.returncode == 0, done.stderr
    (j,) = json.loads(done.stdout)["journeys"]
    assert j["entered"] == half
    assert j["converted"] == sum(_converts(i, arms[f"r{i:04d}"]) for i in range(half))

    # Read in-process: progress ends at the snapshot's size, every transition was read.
    calls: list[tuple[int, int]] = []
    records = read_records(kafka.bootstrap, topics, progress=lambda n, t: calls.append((n, t)))
    assert calls[-1] == (records.read, records.read)
    assert len(records.transitions) == transitions
    assert len(records.actions) == sum(sent.values())

    text = _rota_report(kafka, topics, "--journey", "report_split")
    assert text.returncode == 0, text.stderr
    assert f"entered{CUSTOMERS:>23}" in text.stdout
    assert "split assign" in text.stdout


def test_rota_report_before_any_worker_ran_says_so(kafka, topics):
    done = _rota_report(kafka, topics)
    assert done.returncode == 2
    assert f"no topic {topics.analytics}" in done.stderr
    assert "ROTA_TOPIC_PREFIX" in done.stderr
