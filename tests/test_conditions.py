"""Conditions evaluated with field paths as variables give what the whole expression
gives on the projected values."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.journey.conditions import Condition, compile_condition

EXPRESSIONS = [
    "event.properties.value >= 0.0",
    "event.properties.value > 10 && profile.traits.plan == 'gold'",
    "event.properties.value < 5 || event.properties.other == 'event.properties.value'",
    "event.properties == {} || event.properties.value != null",
    "'value' in event.properties && event.name == 'Offer'",
    "event . properties . value == 1 && now > 0",
    "profile.counts.Viewed + 1 > profile.order_count",
    "event.properties.value == event.properties.value",
]

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-20, 20),
    st.floats(-20, 20, allow_nan=False),
    st.sampled_from(["gold", "event.properties.value", ""]),
)
_KEYS = st.sampled_from(["value", "other", "plan", "Viewed"])


def _variables(data: st.DataObject) -> dict[str, Any]:
    nested = st.one_of(_SCALARS, st.dictionaries(_KEYS, _SCALARS, max_size=2))
    return {
        "event": {
            "name": data.draw(st.sampled_from(["Offer", "Viewed"])),
            "properties": data.draw(st.dictionaries(_KEYS, nested, max_size=3)),
        },
        "profile": {
            "traits": data.draw(st.dictionaries(_KEYS, _SCALARS, max_size=3)),
            "counts": data.draw(st.dictionaries(_KEYS, st.integers(0, 5), max_size=2)),
            "order_count": data.draw(st.integers(0, 5)),
        },
        "now": data.draw(st.integers(-1, 1)),
    }


def _unflattened(cond: Condition) -> Condition:
    return replace(cond, flat=None, paths=())


@settings(max_examples=300, deadline=None)
@given(source=st.sampled_from(EXPRESSIONS), data=st.data())
def test_flattened_paths_give_what_the_whole_expression_gives(source, data):
    cond = compile_condition(source)
    assert cond.flat is not None
    values = _variables(data)
    result, error = cond.evaluate(values.__getitem__)
    whole_result, whole_error = _unflattened(cond).evaluate(values.__getitem__)
    assert result == whole_result
    assert (error is None) == (whole_error is None)


def test_a_path_is_one_variable_and_text_in_strings_stays_text():
    cond = compile_condition("event.name == 'event.name' && event.name != profile.name")
    assert [(root, keys) for _, root, keys in cond.paths] == [
        ("event", ("name",)),
        ("profile", ("name",)),
    ]
    variables = {"event": {"name": "event.name"}, "profile": {"name": "x"}}
    assert cond.evaluate(variables.__getitem__) == (True, None)


def test_a_missing_key_fails_as_the_whole_expression_does():
    cond = compile_condition("event.properties.value >= 0.0")
    variables = {"event": {"properties": {}}}
    result, error = cond.evaluate(variables.__getitem__)
    assert (result, error) == _unflattened(cond).evaluate(variables.__getitem__)
    assert result is False and error is not None and "value" in error


def test_calls_indexes_and_optional_selections_keep_the_whole_expression():
    for source in (
        "has(event.properties.coupon)",
        "event.properties['value'] > 1",
        "size(event.properties) > 0",
        "event.properties.value > 1 ? true : false",
        "now > 0",
    ):
        assert compile_condition(source).flat is None, source
