"""Invariants of the decision core over random event streams (hypothesis)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from orchestrator.core.decide import Decision, _Run, _unheard, decide
from orchestrator.core.state import CustomerState, Instance
from orchestrator.journey.catalog import Catalog, load_catalog
from orchestrator.records import Touchpoint
from orchestrator.simulate import Simulation

H = 3_600_000
T0 = 1_772_438_400_000

TEST_JOURNEYS = """
id: once
name: Once
version: 1
entry: {event: A, reentry: never}
goal: {event: Buy, within: 2d}
exit: [{event: Stop}]
steps:
  hi: {type: action, channel: email, template: hi, next: listen}
  listen:
    type: wait_for
    event: B
    timeout: 3h
    on_event: yes
    on_timeout: no
  "yes": {type: action, channel: sms, template: yes, next: done}
  "no": {type: action, channels: [push, email], template: no, next: done}
  done: {type: end}
---
id: cool
name: Cooldown
version: 1
entry: {event: B, reentry: cooldown, cooldown: 5h, condition: 'event.channel != "sms"'}
exit: [{event: Stop}, {condition: 'has(profile.traits.vip) && profile.traits.vip == true'}]
steps:
  w: {type: wait, duration: 2h, next: s}
  s: {type: split, variants: [{name: a, weight: 50, next: send}], holdout: {weight: 50, next: w2}}
  send: {type: action, channel: email, template: cool, next: w2}
  w2: {type: wait, duration: 1h, next: done}
  done: {type: end}
---
id: many
name: Many
version: 1
entry: {event: A, reentry: always, max_live: 2}
goal: {event: Buy}
steps:
  w: {type: wait, duration: 4h, next: s}
  s: {type: action, channel: sms, template: many, next: done}
  done: {type: end}
---
id: quiet
name: Quiet
version: 1
entry: {silence: {events: [A, B], for: 6h}, reentry: always}
steps:
  s: {type: action, channel: email, template: quiet, next: done}
  done: {type: end}
"""

CATALOGS = [
    Catalog.from_yaml(TEST_JOURNEYS),
    load_catalog([Path(__file__).resolve().parent.parent / "journeys"]),
]
NAMES = ["A", "B", "Buy", "Stop", "Noise", "Signed Up", "Product Added", "Order Completed",
         "Email Opened", "NPS Submitted", "Product Viewed"]  # fmt: skip
CUSTOMERS = ["c1", "c2", "c3"]


@st.composite
def streams(draw: st.DrawFn) -> list[Touchpoint]:
    n = draw(st.integers(1, 40))
    at = T0
    events: list[Touchpoint] = []
    for i in range(n):
        if events and draw(st.integers(0, 9)) == 0:
            events.append(draw(st.sampled_from(events)))  # an at-least-once redelivery
            continue
        at += draw(st.integers(0, 8 * H))
        traits = draw(
            st.sampled_from([{}, {}, {"vip": True}, {"email": "x@y"}, {"push_consent": True}])
        )
        events.append(
            Touchpoint(
                event_id=f"e{i}",
                type="track",
                name=draw(st.sampled_from(NAMES)),
                channel=draw(st.sampled_from(["web", "sms", "email"])),
                occurred_at=at,
                customer_id=draw(st.sampled_from(CUSTOMERS)),
                properties={"score": draw(st.integers(0, 10)), "total": 10, "price": 30},
                traits=traits,
            )
        )
    return events


def simulate(catalog: Catalog, events: list[Touchpoint], check=None) -> Simulation:
    sim = Simulation(catalog, on_decision=check)
    for e in events:
        sim.feed(e)
    sim.advance_to(events[-1].occurred_at + 40 * 24 * H)
    return sim


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(streams(), st.sampled_from(CATALOGS))
def test_the_core_is_deterministic(events, catalog):
    one, two = simulate(catalog, events), simulate(catalog, events)
    assert one.actions == two.actions
    assert one.funnel == two.funnel
    assert {c: s.to_bytes() for c, s in one.states.items()} == {
        c: s.to_bytes() for c, s in two.states.items()
    }


@SETTINGS
@given(streams(), st.sampled_from(CATALOGS))
def test_no_action_after_an_instance_ended(events, catalog):
    live: dict[str, set[str]] = defaultdict(set)
    ended: set[tuple[str, str]] = set()

    def check(customer: str, what: str, d: Decision) -> None:
        for a in d.actions:
            assert (customer, a.instance_id) not in ended, f"acted after the end: {a}"
        now = {i.instance_id for i in d.state.instances}
        for gone in live[customer] - now:
            ended.add((customer, gone))
        live[customer] = now

    simulate(catalog, events, check)


@SETTINGS
@given(streams())
def test_reentry_rules_and_live_caps_hold(events):
    catalog = CATALOGS[0]
    entries: dict[tuple[str, str], list[int]] = defaultdict(list)
    exits: dict[tuple[str, str], int] = {}

    def check(customer: str, what: str, d: Decision) -> None:
        per_journey: dict[str, int] = defaultdict(int)
        for i in d.state.instances:
            per_journey[i.journey_id] += 1
        for jid, n in per_journey.items():
            assert n <= catalog.current[jid].entry.max_live
        for f in d.funnel:
            key = (customer, f.journey_id)
            if f.kind == "entered":
                now = d.state.history[f.journey_id].last_entry_at
                assert now is not None
                if f.journey_id == "once":
                    assert not entries[key], "re-entered a never-re-enter journey"
                if f.journey_id == "cool" and key in exits:
                    assert now - exits[key] >= 5 * H
                entries[key].append(now)
            elif f.kind in ("converted", "exited", "completed"):
                hist = d.state.history[f.journey_id]
                assert hist.last_exit_at is not None
                exits[key] = hist.last_exit_at

    simulate(catalog, events, check)


@SETTINGS
@given(streams(), st.sampled_from(CATALOGS), st.data())
def test_replaying_a_seen_event_changes_nothing(events, catalog, data):
    sim = simulate(catalog, events)
    event = data.draw(st.sampled_from(events))
    state: CustomerState = sim.states[event.subject]
    if event.event_id not in state.seen:
        return  # fell out of the window (older than the dedup horizon)
    d = decide(state, event, catalog, customer_id=event.subject)
    assert d.state is state
    assert (d.actions, d.timers_set, d.timers_cancelled, d.funnel) == ((), (), (), ())


@SETTINGS
@given(streams(), st.sampled_from(CATALOGS))
def test_an_event_no_journey_hears_decides_as_the_full_run_does(events, catalog):
    """``decide`` skips the journeys for an event none of them can react to; what it
    returns then is what running every journey over the event returns."""
    sim = Simulation(catalog)
    for e in events:
        sim.advance_to(e.occurred_at)
        state = sim.states.get(e.subject) or CustomerState.empty(e.subject)
        if e.event_id not in state.seen and _unheard(state, e, catalog):
            fast = decide(state, e, catalog, customer_id=e.subject)
            full = _Run(state, e, e.occurred_at, catalog, False).on_touchpoint(e)
            assert fast.state.to_bytes() == full.state.to_bytes()
            assert replace(fast, state=full.state) == full
        sim.feed(e)


def test_an_event_no_live_instance_listens_for_takes_the_shortcut():
    catalog = CATALOGS[0]
    enter = Touchpoint(event_id="e1", type="track", name="A", channel="web",
                       occurred_at=T0, customer_id="c1")  # fmt: skip
    state = decide(None, enter, catalog, customer_id="c1").state
    noise = replace(enter, event_id="e2", name="Noise", occurred_at=T0 + 1)
    assert sorted(i.journey_id for i in state.instances) == ["many", "once"]
    assert _unheard(state, noise, catalog)
    assert not _unheard(state, replace(noise, name="B"), catalog)  # "once" waits for B
    assert not _unheard(state, replace(noise, name="A"), catalog)  # starts journeys
    d = decide(state, noise, catalog, customer_id="c1")
    assert d.state.instances == state.instances
    assert d.state.profile.counts == {"A": 1, "Noise": 1}


@SETTINGS
@given(streams(), st.sampled_from(CATALOGS))
def test_state_bytes_round_trip_at_every_step(events, catalog):
    def check(customer: str, what: str, d: Decision) -> None:
        raw = d.state.to_bytes()
        assert CustomerState.from_bytes(raw) == d.state
        assert CustomerState.from_bytes(raw).to_bytes() == raw

    simulate(catalog, events, check)


_text = st.text(max_size=5)
_opt_text = st.none() | _text
_int = st.integers(min_value=0, max_value=2**40)
instances = st.builds(
    Instance,
    journey_id=_text,
    version=_int,
    instance_id=_text,
    step=_text,
    entered_at=_int,
    step_at=_int,
    variant=_opt_text,
    visits=st.dictionaries(_text, _int, max_size=3),
    timer_id=_opt_text,
    due_at=st.none() | _int,
    moves=_int,
    last_action_id=_opt_text,
)


@given(instances, _text, _int, st.dictionaries(_text, _int, max_size=3), _opt_text)
def test_the_instance_builders_change_only_what_they_name(inst, name, at, visits, acted):
    assert inst.at_step(name, at, visits, acted) == replace(
        inst,
        step=name,
        step_at=at,
        visits=visits,
        timer_id=None,
        due_at=None,
        moves=inst.moves + 1,
        last_action_id=acted,
    )
    assert inst.waiting(name, at) == replace(inst, timer_id=name, due_at=at)
    assert inst.untimed() == replace(inst, timer_id=None, due_at=None)
