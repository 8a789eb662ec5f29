"""Each shipped journey in ``journeys/``, simulated: the exact actions it takes."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from orchestrator.journey.catalog import load_catalog
from orchestrator.records import Context, Touchpoint, iso, parse_time
from orchestrator.simulate import Simulation

JOURNEYS = Path(__file__).resolve().parent.parent / "journeys"
_ids = itertools.count()


@pytest.fixture(scope="module")
def catalog():
    return load_catalog([JOURNEYS])


def ev(at: str, name: str, customer: str = "c1", channel: str = "web", **kw) -> Touchpoint:
    return Touchpoint(
        event_id=f"e{next(_ids)}",
        type=kw.pop("type", "track"),
        name=name,
        channel=channel,
        occurred_at=parse_time(at),
        customer_id=customer,
        **kw,
    )


def run(catalog, events: list[Touchpoint], until: str, journey: str) -> list[tuple]:
    sim = Simulation(catalog)
    for e in events:
        sim.feed(e)
    sim.advance_to(parse_time(until))
    return [
        (iso(a.created_at), a.customer_id, a.step, a.channel, a.template, a.offer)
        for a in sim.actions
        if a.journey_id == journey
    ]


EMAIL_ONLY = {"email": "c1@example.com"}
REACHABLE = {"email": "c1@example.com", "phone": "+4470000001", "push_consent": True}


def test_welcome_series(catalog):
    signed_up = ev(
        "2026-03-02T08:00:00Z", "Signed Up", type="identify", traits=EMAIL_ONLY,
        context=Context(timezone="Europe/Paris"),
    )  # fmt: skip
    assert run(catalog, [signed_up], "2026-04-01T00:00:00Z", "welcome") == [
        ("2026-03-02T08:00:00.000Z", "c1", "send_welcome", "email", "welcome_1", None),
        # a day, then the next 10:00 in Paris (09:00Z), on email: push was not allowed
        ("2026-03-03T09:00:00.000Z", "c1", "send_tips", "email", "welcome_tips", None),
        ("2026-03-06T09:00:00.000Z", "c1", "send_offer", "email", "welcome_offer", "WELCOME10"),
    ]


def test_welcome_series_stops_at_the_first_order(catalog):
    events = [
        ev("2026-03-02T08:00:00Z", "Signed Up", traits={**EMAIL_ONLY, "push_consent": True}),
        ev("2026-03-04T12:00:00Z", "Order Completed", properties={"total": 42.0}),
    ]
    assert [a[2:4] for a in run(catalog, events, "2026-04-01T00:00:00Z", "welcome")] == [
        ("send_welcome", "email"),
        ("send_tips", "push"),
    ]


def test_cart_abandonment_cascades_to_sms_when_the_email_is_not_opened(catalog):
    events = [
        ev("2026-03-02T08:00:00Z", "Signed Up", traits=REACHABLE),
        ev("2026-03-02T12:00:00Z", "Product Added", properties={"sku": "A", "price": 30}),
    ]
    assert run(catalog, events, "2026-03-20T00:00:00Z", "cart_abandonment") == [
        ("2026-03-02T13:00:00.000Z", "c1", "remind_email", "email", "cart_reminder", None),
        ("2026-03-03T13:00:00.000Z", "c1", "nudge", "sms", "cart_nudge", "FREESHIP"),
    ]


def test_cart_abandonment_falls_back_to_push_without_a_phone(catalog):
    events = [
        ev("2026-03-02T08:00:00Z", "Signed Up", traits={**EMAIL_ONLY, "push_consent": True}),
        ev("2026-03-02T12:00:00Z", "Product Added"),
    ]
    channels = [a[3] for a in run(catalog, events, "2026-03-20T00:00:00Z", "cart_abandonment")]
    assert channels == ["email", "push"]


def test_cart_abandonment_stops_when_the_email_is_opened_or_on_purchase(catalog):
    sim = Simulation(catalog)
    sim.feed(ev("2026-03-02T08:00:00Z", "Signed Up", traits=REACHABLE))
    sim.feed(ev("2026-03-02T12:00:00Z", "Product Added"))
    sim.advance_to(parse_time("2026-03-02T13:00:00Z"))
    (reminder,) = [a for a in sim.actions if a.journey_id == "cart_abandonment"]
    sim.feed(
        ev("2026-03-02T15:00:00Z", "Email Opened", channel="email", action_id=reminder.action_id)
    )
    sim.advance_to(parse_time("2026-03-20T00:00:00Z"))
    assert [a.step for a in sim.actions if a.journey_id == "cart_abandonment"] == ["remind_email"]

    bought = [
        ev("2026-03-02T08:00:00Z", "Signed Up", "c2", traits=REACHABLE),
        ev("2026-03-02T12:00:00Z", "Product Added", "c2"),
        ev("2026-03-02T12:30:00Z", "Order Completed", "c2", properties={"total": 30}),
    ]
    assert run(catalog, bought, "2026-03-20T00:00:00Z", "cart_abandonment") == []


def test_browse_abandonment_offers_a_discount_to_first_timers_only(catalog):
    events = [
        ev("2026-03-02T08:00:00Z", "Product Viewed", "new", traits={"email": "n@x"},
           properties={"sku": "A", "price": 30}),
        ev("2026-03-02T08:00:00Z", "Order Completed", "old", properties={"total": 10}),
        ev("2026-03-02T09:00:00Z", "Product Viewed", "old", traits={"email": "o@x"},
           properties={"sku": "A", "price": 30}),
        ev("2026-03-02T09:00:00Z", "Product Viewed", "cheap", traits={"email": "c@x"},
           properties={"sku": "B", "price": 5}),
        ev("2026-03-02T09:00:00Z", "Product Viewed", "carted", traits={"email": "k@x"},
           properties={"sku": "A", "price": 30}),
        ev("2026-03-02T09:30:00Z", "Product Added", "carted"),
    ]  # fmt: skip
    assert run(catalog, events, "2026-03-10T00:00:00Z", "browse_abandonment") == [
        ("2026-03-02T10:00:00.000Z", "new", "remind_with_discount", "email", "browse_reminder",
         "BROWSE5"),
        ("2026-03-02T11:00:00.000Z", "old", "remind", "email", "browse_reminder", None),
    ]  # fmt: skip


def test_winback_reaches_past_buyers_after_30_silent_days(catalog):
    events = [
        ev("2026-01-01T10:00:00Z", "Signed Up", traits=REACHABLE),
        ev("2026-01-05T10:30:00Z", "Order Completed", properties={"total": 80}),
        ev("2026-01-10T10:30:00Z", "Product Viewed", properties={"price": 5}),  # resets
        # a browser who never bought: silent too, but outside the segment
        ev("2026-01-10T10:30:00Z", "Product Viewed", "browser", properties={"price": 5}),
    ]
    assert run(catalog, events, "2026-03-01T00:00:00Z", "winback") == [
        # 30 days after the last activity, rounded up to the hour
        ("2026-02-09T11:00:00.000Z", "c1", "come_back", "email", "winback_offer", "COMEBACK15"),
        ("2026-02-12T11:00:00.000Z", "c1", "last_try", "sms", "winback_last_chance",
         "COMEBACK15"),
    ]  # fmt: skip


def test_nps_follow_up_depends_on_the_score(catalog):
    events = []
    for customer, score in (("detractor", 3), ("passive", 7), ("promoter", 10)):
        events += [
            ev("2026-03-01T10:00:00Z", "Order Completed", customer, properties={"total": 20},
               traits={"email": f"{customer}@example.com"}),
            ev("2026-03-05T10:00:00Z", "NPS Submitted", customer, channel="email",
               properties={"score": score}),
        ]  # fmt: skip
    events.append(
        ev("2026-03-01T10:00:00Z", "Order Completed", "silent", traits={"email": "s@example.com"})
    )
    events.sort(key=lambda e: e.occurred_at)  # a recording is in time order
    assert run(catalog, events, "2026-04-01T00:00:00Z", "post_purchase_nps") == [
        ("2026-03-04T10:00:00.000Z", "detractor", "ask", "email", "nps_survey", None),
        ("2026-03-04T10:00:00.000Z", "passive", "ask", "email", "nps_survey", None),
        ("2026-03-04T10:00:00.000Z", "promoter", "ask", "email", "nps_survey", None),
        ("2026-03-04T10:00:00.000Z", "silent", "ask", "email", "nps_survey", None),
        ("2026-03-05T10:00:00.000Z", "detractor", "support_call", "call_centre",
         "detractor_callback", None),
        ("2026-03-05T10:00:00.000Z", "passive", "thanks", "email", "nps_thanks", None),
        ("2026-03-05T10:00:00.000Z", "promoter", "referral_ask", "email", "referral_ask",
         "REFER20"),
    ]  # fmt: skip


def test_nps_promoters_move_to_the_advocacy_stage(catalog):
    sim = Simulation(catalog)
    sim.feed(ev("2026-03-01T10:00:00Z", "Order Completed", "p"))
    sim.feed(ev("2026-03-05T10:00:00Z", "NPS Submitted", "p", properties={"score": 9}))
    assert sim.states["p"].profile.stage == "advocacy"


def test_ab_test_with_holdout_assigns_deterministically_and_measures_every_arm(catalog):
    customers = [f"cust-{n:03d}" for n in range(60)]
    events = [
        ev("2026-03-01T10:00:00Z", "Order Completed", c, traits=REACHABLE, properties={"total": 9})
        for c in customers
    ]
    sim = Simulation(catalog)
    for e in events:
        sim.feed(e)
    # every third customer orders again after the nudge (day 7), within the 21-day goal
    for c in customers[::3]:
        sim.feed(ev("2026-03-10T10:00:00Z", "Order Completed", c, properties={"total": 9}))
    sim.advance_to(parse_time("2026-04-30T00:00:00Z"))
    actions = [a for a in sim.actions if a.journey_id == "second_order_test"]
    by_variant = {a.customer_id: a.payload["variant"] for a in actions}
    assert {a.step for a in actions} == {"discount_email", "reminder_push"}
    assert all(a.created_at == parse_time("2026-03-08T10:00:00Z") for a in actions)
    assert all(
        (a.step, a.channel, a.offer)
        in (("discount_email", "email", "SECOND10"), ("reminder_push", "push", None))
        for a in actions
    )
    assigned = {
        f.variant for f in sim.funnel if f.journey_id == "second_order_test" and f.step == "assign"
    }
    assert assigned == {"discount", "reminder", "holdout"}
    holdouts = len(customers) - len(by_variant)
    assert 1 <= holdouts <= 15
    converted = [
        f for f in sim.funnel if f.journey_id == "second_order_test" and f.kind == "converted"
    ]
    assert len(converted) == 20 and {f.variant for f in converted} <= assigned
    # the same customers get the same variants on a second run
    again = run(catalog, events, "2026-04-30T00:00:00Z", "second_order_test")
    assert sorted(a[1] for a in again) == sorted(by_variant)
