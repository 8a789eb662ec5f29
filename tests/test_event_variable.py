"""The ``event`` variable of conditions: a touchpoint's fields looked up as read give the
mapping conditions have always seen."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core.decision import TimerFired
from orchestrator.core.event_variable import TIMER_EVENT, EventView, event_variable
from orchestrator.journey.conditions import compile_condition
from orchestrator.records import Context, Touchpoint

_TEXT = st.text(max_size=5)
_OPTIONAL = st.none() | _TEXT
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT

touchpoints = st.builds(
    Touchpoint,
    event_id=_TEXT,
    type=st.sampled_from(["track", "page", "identify"]),
    name=_TEXT,
    channel=st.sampled_from(["web", "email", ""]),
    occurred_at=st.integers(0, 2**50),
    customer_id=_OPTIONAL,
    anonymous_id=_OPTIONAL,
    received_at=st.none() | st.integers(0, 2**50),
    properties=st.dictionaries(_TEXT, _SCALARS, max_size=3),
    traits=st.dictionaries(_TEXT, _SCALARS, max_size=3),
    context=st.builds(Context, locale=_OPTIONAL, timezone=_OPTIONAL, device_id=_OPTIONAL),
    source=_OPTIONAL,
    action_id=_OPTIONAL,
)


def _as_dict(tp: Touchpoint) -> dict[str, Any]:
    """The variable as a plain dict, written out field by field (journeys/README.md)."""
    out: dict[str, Any] = {
        "event_id": tp.event_id, "name": tp.name, "type": tp.type, "channel": tp.channel,
        "occurred_at": tp.occurred_at, "properties": tp.properties, "traits": tp.traits,
        "context": tp.context.present(),
    }  # fmt: skip
    for key in ("action_id", "source", "anonymous_id", "customer_id"):
        if getattr(tp, key) is not None:
            out[key] = getattr(tp, key)
    return out


@settings(max_examples=300, deadline=None)
@given(tp=touchpoints, probe=st.sampled_from(["source", "received_at", "nope", "context", "name"]))
def test_the_view_is_the_touchpoints_fields_with_unset_ones_absent(tp, probe):
    view = event_variable(tp)
    assert isinstance(view, EventView)
    expected = _as_dict(tp)
    assert dict(view) == expected
    assert list(view) == list(expected)  # the same order
    assert len(view) == len(expected)
    assert (probe in view) == (probe in expected)
    assert view.get(probe, "absent") == expected.get(probe, "absent")
    if probe in expected:
        assert view[probe] == expected[probe]


@settings(max_examples=200, deadline=None)
@given(tp=touchpoints)
def test_conditions_read_the_view_as_they_read_the_dict(tp):
    for source in (
        "has(event.action_id) && event.action_id == 'x'",
        "event.properties.value >= 0.0",
        "event.channel == 'web'",
        "has(event.context.locale)",
        "size(event.traits) > 0",
        "event.source != null",
        "'source' in event && size(event) > 8",  # read whole
    ):
        cond = compile_condition(source)
        view = event_variable(tp)
        whole = _as_dict(tp)
        got = cond.evaluate(lambda name: view)  # noqa: B023 - used within the loop
        want = cond.evaluate(lambda name: whole)  # noqa: B023
        assert got[0] == want[0] and (got[1] is None) == (want[1] is None), source


def test_a_fired_timer_is_an_event_named_for_timers():
    fired = TimerFired(customer_id="c", timer_id="t1", due_at=5, now=7)
    value = event_variable(fired)
    assert value["name"] == TIMER_EVENT and value["timer_id"] == "t1"
    assert value["occurred_at"] == 7 and value["due_at"] == 5
