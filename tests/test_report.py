"""The journey report's arithmetic (orchestrator/report.py), what the worker records for
it (analytics transitions), and the command's errors - all without Kafka.

Expected figures are worked out by hand in the tests, not by calling the code under test.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from journey_fixtures import catalog_from_yaml, touchpoint
from test_worker_process import MemoryBackend

from orchestrator import cli, report, wire
from orchestrator.analytics import JourneyTransition
from orchestrator.records import CHANNELS, NextBestAction
from orchestrator.report import (
    FIRST_TOUCH,
    LAST_TOUCH,
    LINEAR,
    MODELS,
    TIME_DECAY,
    Window,
    attribution_weights,
    two_proportion_test,
)
from orchestrator.topics import Topics
from orchestrator.worker import timers
from orchestrator.worker.process import Incoming, Processor

DAY = 86_400_000

# -- statistics ----------------------------------------------------------------------


def test_lift_over_the_holdout_is_the_textbook_two_proportion_z_test():
    # 60 of 200 converted in the arm, 40 of 200 in the holdout: rates 0.30 and 0.20.
    # Pooled rate 100/400 = 0.25, pooled SE = sqrt(0.25 * 0.75 * (1/200 + 1/200))
    # = sqrt(0.001875) = sqrt(3)/40, so z = 0.1 / (sqrt(3)/40) = 4/sqrt(3) = 2.3094, and
    # the two-sided p = 2 * (1 - Phi(2.3094)) = 0.02092 (normal table: Phi(2.31) = 0.98956).
    # Unpooled SE = sqrt(0.3*0.7/200 + 0.2*0.8/200) = sqrt(0.00185) = 0.0430116;
    # 95 % CI = 0.1 -/+ 1.959964 * 0.0430116 = 0.1 -/+ 0.0843012.
    lift = two_proportion_test(60, 200, 40, 200)
    assert lift is not None
    assert lift.difference == pytest.approx(0.1)
    assert lift.relative == pytest.approx(0.5)  # 0.1 over the holdout's 0.2
    assert lift.z == pytest.approx(4 / math.sqrt(3))
    assert lift.p_value == pytest.approx(0.02092, abs=1e-5)
    assert lift.ci_low == pytest.approx(0.0156988, abs=1e-6)
    assert lift.ci_high == pytest.approx(0.1843012, abs=1e-6)


def test_arms_that_convert_alike_show_no_lift_and_p_of_one():
    for x in (0, 50):  # nobody converts, everybody converts: the pooled SE is zero
        lift = two_proportion_test(x, 50, x, 50)
        assert lift is not None
        assert (lift.difference, lift.ci_low, lift.ci_high, lift.z, lift.p_value) == (
            0.0,
            0.0,
            0.0,
            0.0,
            1.0,
        )
    assert two_proportion_test(0, 50, 0, 50).relative is None  # type: ignore[union-attr]
    assert two_proportion_test(3, 10, 0, 0) is None  # an empty arm: nothing to compare


def test_attribution_weights_on_a_hand_made_timeline():
    # Touches 14 days, 7 days and 0 days before the last one; half-life 7 days: raw
    # time-decay weights 1/4, 1/2, 1, normalised by 7/4 -> 1/7, 2/7, 4/7.
    conversion = 100 * DAY
    touches = [conversion - 14 * DAY, conversion - 7 * DAY, conversion]
    half_life = 7 * DAY
    assert attribution_weights(touches, conversion, FIRST_TOUCH, half_life) == [1, 0, 0]
    assert attribution_weights(touches, conversion, LAST_TOUCH, half_life) == [0, 0, 1]
    assert attribution_weights(touches, conversion, LINEAR, half_life) == pytest.approx([1 / 3] * 3)
    decay = attribution_weights(touches, conversion, TIME_DECAY, half_life)
    assert decay == pytest.approx([1 / 7, 2 / 7, 4 / 7])
    # A conversion later than the last touch ages every touch alike: same shares.
    later = attribution_weights(touches, conversion + 3 * DAY, TIME_DECAY, half_life)
    assert later == pytest.approx(decay)
    assert attribution_weights([], conversion, LINEAR, half_life) == []
    with pytest.raises(ValueError, match="unknown attribution model"):
        attribution_weights(touches, conversion, "u_shaped", half_life)


@settings(max_examples=300, deadline=None)
@given(
    times=st.lists(st.integers(0, 10**11), min_size=1, max_size=40),
    wait=st.integers(0, 10**10),
    half_life=st.integers(1, 10**10),
)
def test_every_model_hands_out_exactly_one_conversion(times, wait, half_life):
    times = sorted(times)
    for model in MODELS:
        weights = attribution_weights(times, times[-1] + wait, model, half_life)
        assert len(weights) == len(times)
        assert all(w >= 0 for w in weights)
        assert math.fsum(weights) == pytest.approx(1.0, abs=1e-9)


_CHANNELS = st.sampled_from(["email", "sms", "push"])


@st.composite
def populations(draw):
    """Random instances of one journey, some converting, with actions before and after."""
    transitions, actions = [], []
    for n in range(draw(st.integers(1, 12))):
        customer, instance = f"c{n}", f"j#{draw(st.integers(1, 2))}"
        entered = draw(st.integers(0, 50)) * DAY
        transitions.append(_t(customer, instance, "entered", entered))
        converted = draw(st.none() | st.integers(0, 30).map(lambda d, e=entered: e + d * DAY))
        if converted is not None:
            transitions.append(_t(customer, instance, "converted", converted))
        for k in range(draw(st.integers(0, 5))):
            at = entered + draw(st.integers(0, 40)) * DAY
            actions.append(_action(customer, instance, f"s{k}", draw(_CHANNELS), at))
    return transitions, actions


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(populations(), st.integers(1, 30 * DAY))
def test_credit_per_model_adds_up_to_the_touched_conversions(population, half_life):
    transitions, actions = population
    (journey,) = report.build(transitions, actions, half_life_ms=half_life).journeys
    assert journey.touched_conversions + journey.untouched_conversions == journey.converted
    for attribution in journey.attribution:
        total = math.fsum(attribution.channels.values())
        assert total == pytest.approx(journey.touched_conversions, abs=1e-9)


# -- the report over a hand-made population -------------------------------------------


def _t(
    customer: str,
    instance: str | None,
    kind: str,
    at: int,
    step: str | None = None,
    variant: str | None = None,
    journey: str = "j",
) -> JourneyTransition:
    return JourneyTransition(customer, journey, 1, instance, kind, step, variant, at)


def _action(
    customer: str, instance: str, step: str, channel: str, at: int, journey: str = "j"
) -> NextBestAction:
    return NextBestAction(
        action_id=f"{customer}|{journey}|{instance}|{step}|{channel}|{at}",
        customer_id=customer,
        journey_id=journey,
        journey_version=1,
        instance_id=instance,
        step=step,
        channel=channel,
        created_at=at,
    )


def _population() -> tuple[list[JourneyTransition], list[NextBestAction]]:
    """Six instances of journey ``j``, a split ``assign`` into a, b and the holdout:

    c1 j#1  a        email at 0, sms at 5d, converts at 10d (a push at 12d comes after)
    c2 j#1  b        push at 1d, converts at 3d
    c3 j#1  holdout  converts at 2d without any touch
    c4 j#1  holdout  exits
    c5 j#1  a        completes
    c1 j#2  a        enters again at 20d, still active
    c6      b        only a step record (its entry is past retention): not in the cohort
    """
    t = [
        _t("c1", "j#1", "entered", 0),
        _t("c1", "j#1", "step", 0, "assign", "a"),
        _t("c1", "j#1", "step", 0, "mail", "a"),
        _t("c2", "j#1", "entered", DAY),
        _t("c2", "j#1", "step", DAY, "assign", "b"),
        _t("c2", "j#1", "step", DAY, "push", "b"),
        _t("c3", "j#1", "entered", DAY),
        _t("c3", "j#1", "step", DAY, "assign", "holdout"),
        _t("c4", "j#1", "entered", DAY),
        _t("c4", "j#1", "step", DAY, "assign", "holdout"),
        _t("c5", "j#1", "entered", 2 * DAY),
        _t("c5", "j#1", "step", 2 * DAY, "assign", "a"),
        _t("c5", "j#1", "step", 2 * DAY, "mail", "a"),
        _t("c3", "j#1", "converted", 2 * DAY, "assign", "holdout"),
        _t("c2", "j#1", "converted", 3 * DAY, "push", "b"),
        _t("c4", "j#1", "exited", 4 * DAY, "assign", "holdout"),
        _t("c5", "j#1", "completed", 5 * DAY, "mail", "a"),
        _t("c1", "j#1", "converted", 10 * DAY, "mail", "a"),
        _t("c1", "j#2", "entered", 20 * DAY),
        _t("c1", "j#2", "step", 20 * DAY, "assign", "a"),
        _t("c6", "j#1", "step", 20 * DAY, "push", "b"),
        _t("c9", "x#1", "entered", 0, journey="x"),  # another journey
    ]
    t += [*t[:3], t[17]]  # a replay after a crash repeats records
    a = [
        _action("c1", "j#1", "mail", "email", 0),
        _action("c1", "j#1", "mail", "email", 0),  # the same action id again
        _action("c1", "j#1", "nudge", "sms", 5 * DAY),
        _action("c1", "j#1", "late", "push", 12 * DAY),  # after the conversion
        _action("c1", "j#2", "mail", "email", 20 * DAY),  # another instance
        _action("c1", "x#1", "other", "call_centre", DAY, journey="x"),  # another journey
        _action("c2", "j#1", "push", "push", DAY),
    ]
    return t, a


def test_report_counts_instances_once_and_measures_arms_against_the_holdout():
    transitions, actions = _population()
    r = report.build(transitions, actions, journeys=["j"], half_life_ms=5 * DAY)
    (j,) = r.journeys
    assert (j.journey_id, j.versions) == ("j", (1,))
    assert (j.entered, j.converted, j.exited, j.completed, j.active) == (6, 3, 1, 1, 1)
    assert j.conversion_rate == pytest.approx(3 / 6)
    assert [(s.step, s.reached) for s in j.steps] == [("assign", 6), ("mail", 2), ("push", 1)]
    (split,) = j.splits
    assert split.step == "assign" and split.control == "holdout"
    arms = {a.variant: a for a in split.arms}
    assert [a.variant for a in split.arms] == ["a", "b", "holdout"]
    assert (arms["a"].entered, arms["a"].converted) == (3, 1)
    assert (arms["b"].entered, arms["b"].converted) == (1, 1)
    assert (arms["holdout"].entered, arms["holdout"].converted) == (2, 1)
    assert arms["holdout"].lift is None
    assert arms["a"].lift is not None and arms["a"].lift.difference == pytest.approx(1 / 3 - 1 / 2)


def test_steps_come_in_journey_order_even_where_branches_rejoin():
    # Three instances go assign -> measure, one assign -> mail -> wait -> nudge -> measure:
    # by mean position measure (1.75) would come before wait (2).
    transitions = []
    for n, path in enumerate(
        [["assign", "measure"]] * 3 + [["assign", "mail", "wait", "nudge", "measure"]]
    ):
        transitions.append(_t(f"c{n}", "j#1", "entered", n))
        transitions += [_t(f"c{n}", "j#1", "step", n, step) for step in path]
    (j,) = report.build(transitions, []).journeys
    assert [s.step for s in j.steps] == ["assign", "mail", "wait", "nudge", "measure"]
    assert [s.reached for s in j.steps] == [4, 1, 1, 1, 4]


def test_conversions_are_credited_to_the_instances_actions_before_them():
    transitions, actions = _population()
    (j,) = report.build(transitions, actions, journeys=["j"], half_life_ms=5 * DAY).journeys
    assert (j.touched_conversions, j.untouched_conversions) == (2, 1)  # c3 had no touch
    models = {a.model: dict(a.channels) for a in j.attribution}
    # c1: email at 0 and sms at 5d before converting at 10d; c2: push only. Every
    # channel that touched a conversion is listed under every model, 0 included.
    assert models[FIRST_TOUCH] == {"email": 1.0, "push": 1.0, "sms": 0.0}
    assert models[LAST_TOUCH] == {"email": 0.0, "push": 1.0, "sms": 1.0}
    assert models[LINEAR] == pytest.approx({"email": 0.5, "sms": 0.5, "push": 1.0})
    # Ages 10d and 5d with a 5-day half-life: raw 1/4 and 1/2 -> shares 1/3 and 2/3.
    assert models[TIME_DECAY] == pytest.approx({"email": 1 / 3, "sms": 2 / 3, "push": 1.0})


def test_without_instance_ids_the_journeys_actions_since_entry_are_the_touches():
    transitions = [
        _t("c1", None, "entered", 10 * DAY),
        _t("c1", None, "converted", 12 * DAY),
    ]
    actions = [
        _action("c1", "j#1", "old", "sms", 2 * DAY),  # an earlier entry's action
        _action("c1", "j#2", "mail", "email", 11 * DAY),
    ]
    (j,) = report.build(transitions, actions).journeys
    assert {a.model: dict(a.channels) for a in j.attribution}[LINEAR] == {"email": 1.0}


def test_a_window_selects_instances_by_entry_time():
    transitions, actions = _population()
    late = report.build(transitions, actions, journeys=["j"], window=Window(15 * DAY)).journeys
    assert [(j.entered, j.converted, j.active) for j in late] == [(1, 0, 1)]
    early = Window(None, DAY)  # entries before day 1: c1 j#1 only
    (j,) = report.build(transitions, actions, journeys=["j"], window=early).journeys
    assert (j.entered, j.converted) == (1, 1)
    assert report.build(transitions, actions, window=Window(100 * DAY)).journeys == ()


def test_windows_read_as_a_duration_back_from_now_or_a_range():
    now = 1_800_000_000_000
    assert report.parse_window("7d", now) == Window(now - 7 * DAY, None)
    assert report.parse_window("2026-11-01..2026-12-01", now) == Window(
        1_793_491_200_000, 1_796_083_200_000
    )
    assert report.parse_window("..1000", now) == Window(None, 1000)
    assert report.parse_window("2026-11-01T12:00:00Z..", now) == Window(1_793_534_400_000, None)
    with pytest.raises(ValueError, match="not a window"):
        report.parse_window("last week", now)
    with pytest.raises(ValueError, match="ends before it starts"):
        report.parse_window("2026-12-01..2026-11-01", now)


def test_json_and_text_forms_carry_the_figures():
    transitions, actions = _population()
    r = report.build(transitions, actions, journeys=["j"], half_life_ms=5 * DAY)
    doc = json.loads(json.dumps(report.to_json(r)))
    (j,) = doc["journeys"]
    assert (j["entered"], j["converted"], j["conversion_rate"]) == (6, 3, 0.5)
    arms = {a["variant"]: a for a in j["splits"][0]["arms"]}
    assert set(arms["a"]["lift"]) == {"difference", "ci_low", "ci_high", "relative", "z", "p_value"}
    assert j["attribution"]["models"]["first_touch"] == {"email": 1.0, "push": 1.0, "sms": 0.0}
    assert doc["half_life"] == "5d"
    text = report.to_text(r)
    assert "journey j (version 1)" in text
    assert "split assign" in text
    assert "(control)" in text
    assert "pts [" in text  # a lift row with its interval
    assert report.to_text(report.build([], [])) == "no journey entries recorded\n"


# -- what the worker records ----------------------------------------------------------


TOPICS = Topics("unit")


def test_the_worker_records_each_transition_with_instance_and_decision_time():
    processor = Processor(catalog_from_yaml(), TOPICS)
    backend = MemoryBackend()
    signup = touchpoint("c1", "Signed Up", at=1_000)
    rec = Incoming(TOPICS.touchpoints, 0, 0, b"c1", wire.encode_touchpoint(signup))
    first = processor.process([rec], backend, now=5_000)  # the worker's clock is not used
    got = [
        (o.key, wire.decode_transition(o.value)) for o in first.out if o.topic == TOPICS.analytics
    ]
    assert [(t.kind, t.step) for _, t in got] == [
        ("entered", None),
        ("step", "send_welcome"),
        ("step", "wait_an_hour"),
    ]
    assert {(k, t.customer_id, t.instance_id, t.occurred_at) for k, t in got} == {
        (b"c1", "c1", "test_welcome#1", 1_000)
    }
    assert {t.trigger_event_id for _, t in got} == {signup.event_id}

    fire_at = 1_000 + 3_600_000 + 250  # the tick comes a little after the due time
    tick = Incoming(TOPICS.ticks, 0, 1, None, timers.encode_tick(fire_at))
    later = processor.process([tick], backend, now=fire_at + 99)
    fired = [wire.decode_transition(o.value) for o in later.out if o.topic == TOPICS.analytics]
    assert [(t.kind, t.step, t.occurred_at, t.trigger_event_id) for t in fired] == [
        ("step", "send_tips", fire_at, None),
        ("step", "done", fire_at, None),
        ("completed", "done", fire_at, None),
    ]


def test_transition_records_round_trip_and_every_schema_field_is_documented():
    t = JourneyTransition("c1", "j", 3, "j#2", "step", "assign", "holdout", 1_000, "e-1")
    assert wire.decode_transition(wire.encode_transition(t)) == t
    schema = json.loads((wire.schema_dir() / "journey_transition.avsc").read_text())
    assert [f["name"] for f in schema["fields"] if not f.get("doc")] == []
    assert TOPICS.analytics in TOPICS.all_for(CHANNELS)  # the worker creates it


def test_simulate_prints_the_report_over_the_simulated_run(tmp_path, capsys):
    from journey_fixtures import WELCOME

    from orchestrator.simulate import main

    (tmp_path / "welcome.yaml").write_text(WELCOME)
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(json.dumps(touchpoint(c, "Signed Up", at=1_000).to_json()) for c in ("c1", "c2"))
    )
    code = main(
        ["--journeys", str(tmp_path), "--events", str(events), "--until", "1970-01-02", "--report"]
    )
    assert code == 0
    out = capsys.readouterr().out
    block = out[out.index("journey test_welcome") :]
    assert "entered                      2" in block
    assert "completed                    2" in block


# -- the command's errors -------------------------------------------------------------


def test_report_without_a_cluster_address_says_what_to_set(monkeypatch, capsys):
    monkeypatch.delenv("ROTA_KAFKA_BOOTSTRAP", raising=False)
    assert cli.main(["report"]) == 2
    assert "ROTA_KAFKA_BOOTSTRAP is required" in capsys.readouterr().err


def test_report_rejects_a_bad_window_before_reading(monkeypatch, capsys):
    monkeypatch.setenv("ROTA_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # never contacted
    assert cli.main(["report", "--window", "since tuesday"]) == 2
    assert "not a window" in capsys.readouterr().err
    assert cli.main(["report", "--half-life", "0s"]) == 2
    assert "half-life must be positive" in capsys.readouterr().err
