"""The contact policy: consent and reachability, quiet hours, frequency caps, priority
across journeys, expiry - one behaviour per test, then a property test that caps and
quiet hours hold under any interleaving of journeys, events and timers."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core.decide import Decision, decide
from orchestrator.core.decision import TimerFired
from orchestrator.core.policy import Cap, Policy, QuietHours
from orchestrator.core.state import CustomerState
from orchestrator.journey.catalog import Catalog
from orchestrator.journey.policy_file import parse_policy
from orchestrator.journey.problems import JourneyValidationError
from orchestrator.records import CHANNELS, Context, Touchpoint, parse_time

H = 3_600_000
D = 24 * H
PARIS = "Europe/Paris"
_ids = itertools.count()


def journey(jid: str, trigger: str, channel: str, *, priority: int = 0, extra: str = "") -> str:
    return f"""
id: {jid}
name: {jid}
version: 1
priority: {priority}
entry: {{event: {trigger}, reentry: always}}
steps:
  send: {{type: action, channel: {channel}, template: {jid}, next: done{extra}}}
  done: {{type: end}}
"""


CONTACTS = {"email": "ann@example.com", "phone": "+447700900123"}


def ev(name: str, at: int, **traits) -> Touchpoint:
    return Touchpoint(
        event_id=f"e{next(_ids)}",
        type="track",
        name=name,
        channel="web",
        occurred_at=at,
        customer_id="c1",
        traits={**CONTACTS, **traits},
        context=Context(timezone=PARIS),
    )


def paris(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(PARIS)).timestamp() * 1000)


class Customer:
    """One customer through the core, firing due timers in order like the worker."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.state: CustomerState | None = None
        self.timers: dict[str, int] = {}
        self.sent: list[tuple[int, object]] = []  # (when it went out, action)
        self.last: Decision | None = None

    def _take(self, d: Decision, now: int) -> Decision:
        self.state = d.state
        self.sent += [(now, a) for a in d.actions]
        for t in d.timers_set:
            self.timers[t.timer_id] = t.due_at
        self.last = d
        return d

    def send(self, tp: Touchpoint) -> Decision:
        self.run_until(tp.occurred_at)
        return self._take(decide(self.state, tp, self.catalog, customer_id="c1"), tp.occurred_at)

    def run_until(self, now: int) -> None:
        while self.timers:
            tid = min(self.timers, key=lambda t: (self.timers[t], t))
            due = self.timers[tid]
            if due > now:
                return
            del self.timers[tid]
            fired = TimerFired("c1", tid, due, due)
            self._take(decide(self.state, fired, self.catalog, customer_id="c1"), due)


def test_marketing_needs_consent_and_a_working_address_transactional_only_the_address():
    catalog = Catalog.from_yaml(
        journey("promo", "Go", "email"),
        journey("receipt", "Go", "email", extra=", category: transactional"),
    )
    d = decide(None, ev("Go", T0, email_consent=False), catalog, customer_id="c1")
    assert [a.journey_id for a in d.actions] == ["receipt"]
    assert [(a.journey_id, why) for a, why in d.suppressed] == [("promo", "no_consent")]

    bounced = decide(None, ev("Go", T0, email_bounced=True), catalog, customer_id="c1")
    assert bounced.actions == ()
    assert sorted(why for _, why in bounced.suppressed) == ["unreachable", "unreachable"]


T0 = paris("2026-03-02T12:00")


def test_quiet_hours_defer_marketing_to_the_morning_and_let_transactional_through():
    policy = Policy(quiet_hours=QuietHours(21 * 60, 8 * 60))
    catalog = Catalog.from_yaml(
        journey("promo", "Go", "email"),
        journey("receipt", "Go", "email", extra=", category: transactional"),
    ).with_policy(policy)
    c = Customer(catalog)
    night = paris("2026-03-02T22:30")
    d = c.send(ev("Go", night))
    assert [a.journey_id for a in d.actions] == ["receipt"]
    assert [(a.journey_id, why) for a, why in d.deferred] == [("promo", "quiet_hours")]
    (timer,) = [t for t in d.timers_set if t.timer_id.startswith("defer:")]
    assert timer.due_at == paris("2026-03-03T08:00")
    assert c.state is not None and len(c.state.pending) == 1

    c.run_until(paris("2026-03-03T09:00"))
    assert [(when, a.journey_id) for when, a in c.sent] == [
        (night, "receipt"),
        (paris("2026-03-03T08:00"), "promo"),
    ]
    assert "deferred by quiet hours" in c.sent[-1][1].reason
    assert c.state.pending == ()


def test_a_cap_lets_the_highest_priorities_through_and_defers_the_rest_until_it_frees():
    policy = Policy(caps=(Cap(2, D),))
    catalog = Catalog.from_yaml(
        journey("low", "Go", "email", priority=1),
        journey("high", "Go", "email", priority=90),
        journey("mid", "Go", "sms", priority=50),
    ).with_policy(policy)
    c = Customer(catalog)
    d = c.send(ev("Go", T0))
    assert [a.journey_id for a in d.actions] == ["high", "mid"]
    assert [(a.journey_id, why) for a, why in d.deferred] == [("low", "frequency_cap")]
    c.run_until(T0 + D + H)
    assert [(when, a.journey_id) for when, a in c.sent][-1] == (T0 + D, "low")


def test_a_step_may_ask_to_be_dropped_rather_than_deferred_and_a_channel_has_its_own_cap():
    policy = Policy(caps=(Cap(1, 7 * D, "sms"),))
    catalog = Catalog.from_yaml(
        journey("sms_promo", "Go", "sms", extra=", if_capped: drop"),
        journey("mail", "Go", "email"),
    ).with_policy(policy)
    c = Customer(catalog)
    c.send(ev("Go", T0))
    second = c.send(ev("Go", T0 + D))
    assert [a.journey_id for a in second.actions] == ["mail"]  # email has no cap
    assert [(a.journey_id, why) for a, why in second.suppressed] == [("sms_promo", "frequency_cap")]
    assert c.state is not None and c.state.pending == ()
    later = c.send(ev("Go", T0 + 7 * D + 1))
    assert sorted(a.journey_id for a in later.actions) == ["mail", "sms_promo"]


def test_an_action_that_would_wait_past_its_expiry_is_dropped():
    policy = Policy(quiet_hours=QuietHours(21 * 60, 8 * 60))
    catalog = Catalog.from_yaml(
        journey("flash", "Go", "email", extra=", expires_in: 2h")
    ).with_policy(policy)
    d = decide(None, ev("Go", paris("2026-03-02T23:00")), catalog, customer_id="c1")
    assert d.actions == () and d.deferred == ()
    assert [why for _, why in d.suppressed] == ["quiet_hours"]


def test_the_policy_file_is_read_and_every_mistake_is_shown_with_its_line():
    policy = parse_policy(
        "caps:\n  - {max: 3, per: 1d}\n  - {channel: sms, max: 1, per: 7d}\n"
        'quiet_hours: {from: "21:00", to: "08:00"}\n',
        "policy.yaml",
        CHANNELS,
    )
    assert policy == Policy((Cap(3, D), Cap(1, 7 * D, "sms")), QuietHours(21 * 60, 8 * 60))
    with pytest.raises(JourneyValidationError) as err:
        parse_policy(
            "caps:\n  - {max: 0, per: 1d}\n  - {channel: fax, max: 1, per: 1d}\n"
            '  - {max: 2, per: soon}\nquiet_hours: {from: "25:00", to: "08:00"}\nextra: 1\n',
            "policy.yaml",
            CHANNELS,
        )
    lines = [(p.line, p.message.split(",")[0]) for p in err.value.problems]
    assert lines == [
        (2, "max must be a whole number >= 1"),
        (3, "unknown channel 'fax'"),
        (4, "not a duration: 'soon' (use e.g. 30m"),
        (5, "quiet_hours.from must be a time HH:MM"),
        (6, "unknown key 'extra'"),
    ]


def test_the_shipped_policy_file_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    policy = parse_policy((root / "policy.yaml").read_text(), "policy.yaml", CHANNELS)
    assert policy.caps and policy.quiet_hours is not None


# -- the property: caps and quiet hours hold, whatever happens -------------------------

PROPERTY_POLICY = Policy(
    caps=(Cap(2, D), Cap(1, 7 * D, "sms")), quiet_hours=QuietHours(21 * 60, 8 * 60)
)
PROPERTY_CATALOG = Catalog.from_yaml(
    journey("a", "A", "email", priority=50, extra=", expires_in: 3d"),
    journey("b", "B", "sms", priority=10),
    journey("c", "C", "push", priority=30, extra=", if_capped: drop"),
    journey("t", "T", "email", extra=", category: transactional"),
    """
id: drip
name: drip
version: 1
entry: {event: A, reentry: always}
steps:
  first: {type: action, channel: email, template: d1, next: pause}
  pause: {type: wait, duration: 5h, next: second}
  second: {type: action, channel: sms, template: d2, next: done}
  done: {type: end}
""",
).with_policy(PROPERTY_POLICY)
MARKETING = {"a", "b", "c", "drip"}


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("ABCT"), st.integers(min_value=0, max_value=14 * 60)),
        min_size=1,
        max_size=25,
    ),
    st.integers(min_value=0, max_value=23 * 60 + 59),
)
def test_caps_are_never_exceeded_and_quiet_hours_never_violated(events, start_minute):
    c = Customer(PROPERTY_CATALOG)
    at = paris("2026-03-02T00:00") + start_minute * 60_000
    for name, gap_minutes in events:
        at += gap_minutes * 60_000
        c.send(ev(name, at, push_token="tok"))
    c.run_until(at + 400 * D)  # everything deferred has gone out or been dropped
    assert c.state is not None and c.state.pending == ()

    marketing = [(when, a) for when, a in c.sent if a.journey_id in MARKETING]
    for cap in PROPERTY_POLICY.caps:
        times = sorted(w for w, a in marketing if cap.applies_to(a.channel))
        for i, t in enumerate(times):
            in_window = [u for u in times[: i + 1] if u > t - cap.per]
            assert len(in_window) <= cap.max, (cap, t, times)
    for when, a in marketing:
        local = datetime.fromtimestamp(when / 1000, tz=UTC).astimezone(ZoneInfo(PARIS))
        assert 8 <= local.hour < 21, (a.journey_id, local)
    for when, a in c.sent:  # nothing went out after its expiry
        assert a.expires_at is None or when < a.expires_at
    assert any(a.journey_id == "t" for _, a in c.sent) == any(n == "T" for n, _ in events)


def test_parse_time_is_what_the_helpers_assume():
    assert paris("2026-03-02T12:00") == parse_time("2026-03-02T11:00:00Z")


def test_rota_policy_names_a_file_or_none(tmp_path):
    from pathlib import Path

    from orchestrator.settings import Settings, SettingsError

    assert Settings.from_env({"ROTA_POLICY": "none"}).policy_file() is None
    mine = tmp_path / "p.yaml"
    mine.write_text("caps: [{max: 1, per: 1d}]\n")
    assert Settings.from_env({"ROTA_POLICY": str(mine)}).policy_file() == mine
    with pytest.raises(SettingsError, match="no such file"):
        Settings.from_env({"ROTA_POLICY": str(tmp_path / "missing.yaml")}).policy_file()
    assert Settings(policy=Path("none")).policy_file() is None
