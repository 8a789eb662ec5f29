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
    return replace(cond, flat=None, paths=(), comparison=None)


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


# -- comparisons answered in Python ----------------------------------------------------

_OPS = ["==", "!=", "<", "<=", ">", ">="]
#: Values a field may hold, around the edges where Python and CEL could part: ints past
#: 2**53 (CEL compares them with a double by converting them) and past int64, NaN,
#: infinities, non-ASCII text and lone surrogates (which CEL refuses), non-scalars.
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-30, 30),
    st.sampled_from([2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1]),
    st.integers(),
    st.floats(),
    st.sampled_from([9007199254740992.0, 9007199254740994.0, -0.0]),
    st.text(max_size=4),
    st.text(st.characters(codec="utf-8"), max_size=3),
    st.sampled_from(["FR", "fr", "", "\ud800", "Zürich", "a'b"]),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.sampled_from(["a"]), st.integers(0, 3), max_size=1),
)
#: What a double-quoted CEL string may hold without an escape.
_STRING_BODIES = st.text(
    st.characters(exclude_characters='"\\\n\r', exclude_categories=["Cs"]), max_size=3
)
_LITERALS = st.one_of(
    st.integers(-30, 30).map(str),
    st.sampled_from(["9007199254740993", "-9007199254740993", "9223372036854775807"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["0.0", "-0.0", "1e3", "2.5E-1", "9007199254740992.0"]),
    st.sampled_from(["true", "false"]),
    _STRING_BODIES.map(lambda s: f'"{s}"'),
    st.sampled_from(["'FR'", "'Zürich'", "''"]),
)


_EDGE_VALUES = [
    None, True, False, 0, 1, -1, 2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1, 2**63, -(2**63),
    -(2**63) - 1, 0.0, -0.0, 1.5, float("nan"), float("inf"), float("-inf"),
    9007199254740992.0, "", "FR", "Zürich", "\ud800", [1], {"a": 1},
]  # fmt: skip
_EDGE_LITERALS = [
    "0", "-1", "9007199254740992", "9007199254740993", "9223372036854775807",
    "-9223372036854775808", "0.0", "-0.0",
    "1e3", "9007199254740992.0", "true", "false", "''", "'FR'", '"Zürich"',
]  # fmt: skip


def test_every_edge_compares_as_cel_does():
    for op in _OPS:
        for literal in _EDGE_LITERALS:
            for value in _EDGE_VALUES:
                _check_against_cel(op, literal, value)


@settings(max_examples=2000, deadline=None)
@given(op=st.sampled_from(_OPS), literal=_LITERALS, value=_VALUES)
def test_a_comparison_answered_in_python_gives_what_cel_gives(op, literal, value):
    _check_against_cel(op, literal, value)


def _check_against_cel(op: str, literal: str, value: Any) -> None:
    cond = compile_condition(f"event.properties.v {op} {literal}")
    assert cond.comparison is not None, (op, literal)
    variables = {"event": {"properties": {"v": value}}}
    answer = cond.comparison.result(value)
    try:
        cel_result, cel_error = cond.flat.execute({"_p0": value}), None
    except Exception as exc:  # any error is CEL's "false, with a reason"
        cel_result, cel_error = False, exc
    if answer is not None:
        assert cel_error is None, (value, op, literal, cel_error)
        assert answer == cel_result, (value, op, literal)
    result, error = cond.evaluate(variables.__getitem__)
    assert result == (cel_result if cel_error is None else False)
    assert (error is None) == (cel_error is None)


def test_common_comparisons_skip_cel_and_others_keep_it():
    for source in (
        "event.properties.value >= 0.0",
        "profile.traits.country == 'FR'",
        'event.channel == "email"',
        "profile.order_count > -1",
        "profile.traits.do_not_contact != true",
    ):
        assert compile_condition(source).comparison is not None, source
    for source in (
        "event.properties.value >= 0u",  # unsigned: another type
        "event.properties.value == 0x10",
        "profile.traits.country == 'F\\'R'",  # an escape
        "profile.traits.country == null",
        "1 < event.properties.value",
        "event.properties.value > 1 && now > 0",
        "has(event.properties.value)",
        "now > 0",
    ):
        assert compile_condition(source).comparison is None, source


def test_a_comparison_on_a_missing_key_fails_as_cel_does():
    cond = compile_condition("profile.traits.country == 'FR'")
    result, error = cond.evaluate({"profile": {"traits": {}}}.__getitem__)
    assert result is False and error is not None and "country" in error
