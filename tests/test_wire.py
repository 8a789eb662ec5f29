"""The wire format: Avro single-object encoding, JSON form, schema evolution."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from orchestrator import wire
from orchestrator.records import Context, NextBestAction, Touchpoint

TP = Touchpoint(
    event_id="e-1",
    type="track",
    name="Order Completed",
    channel="web",
    occurred_at=1_767_225_600_000,
    customer_id="c-1",
    properties={"total": 42.5, "items": 3, "gift": False, "coupon": None, "sku": "A1"},
    context=Context(timezone="Europe/Paris", locale="fr-FR"),
    source="web-tracker",
)

ACTION = NextBestAction(
    action_id="a" * 32,
    customer_id="c-1",
    journey_id="welcome",
    journey_version=2,
    instance_id="welcome#1",
    step="send_welcome",
    channel="email",
    created_at=1_767_225_600_000,
    template="welcome-1",
    payload={"first_name": "Ada"},
    priority=5,
    expires_at=1_767_312_000_000,
    reason="welcome@2 step send_welcome",
    trigger_event_id="e-1",
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(),
)


def test_touchpoint_round_trips_through_single_object_encoding():
    data = wire.encode_touchpoint(TP)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == wire.TOUCHPOINT.schema.fingerprint
    assert wire.decode_touchpoint(data) == TP


@given(
    st.lists(
        st.tuples(*[st.one_of(st.none(), st.sampled_from(["a", "b", "ü"]))] * 6),
        max_size=40,
    )
)
def test_every_field_of_a_touchpoint_round_trips_whatever_contexts_came_before(contexts):
    # TP with every optional field set too, in each context of the list in turn.
    full = replace(TP, anonymous_id="v-1", received_at=6, traits={"plan": "pro"}, action_id="a-1")
    for where in contexts:
        tp = replace(full, context=Context(*where))
        assert wire.decode_touchpoint(wire.encode_touchpoint(tp)) == tp


def test_the_shared_contexts_stay_bounded(monkeypatch):
    monkeypatch.setattr(wire, "_CONTEXTS_MAX", 8)
    for n in range(50):
        tp = replace(TP, context=Context(device_id=f"d{n}"))
        assert wire.decode_touchpoint(wire.encode_touchpoint(tp)).context.device_id == f"d{n}"
        assert len(wire._CONTEXTS) <= 8


def test_action_round_trips():
    assert wire.decode_action(wire.encode_action(ACTION)) == ACTION


@given(props=st.dictionaries(st.text(), scalars, max_size=5))
def test_any_scalar_properties_round_trip(props):
    tp = Touchpoint(
        event_id="e",
        type="track",
        name="x",
        channel="web",
        occurred_at=0,
        anonymous_id="anon",
        properties=props,
    )
    assert wire.decode_touchpoint(wire.encode_touchpoint(tp)).properties == props


def test_fingerprint_is_the_spec_crc64_of_the_canonical_form():
    # The Avro spec gives 0x63DD24E7CC258F8A for the schema "null", stored little-endian.
    assert wire.Schema.from_json({"type": "record", "name": "N", "fields": []}).fingerprint
    from fastavro.schema import fingerprint

    assert bytes.fromhex(fingerprint('"null"', "CRC-64-AVRO")) == (0x63DD24E7CC258F8A).to_bytes(
        8, "little"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not Avro single-object encoded"),
        (b'{"event_id": 1}', "not Avro single-object encoded"),
        (b"\xc3\x01" + b"\x00" * 8 + b"body", "unknown writer schema fingerprint"),
        (wire.encode_touchpoint(TP)[:-4], "corrupt Avro body"),
        (wire.encode_touchpoint(TP) + b"\x00", "trailing bytes"),
        (wire.encode_action(ACTION), "expected rota.v1.Touchpoint"),
    ],
)
def test_undecodable_bytes_raise_a_decode_error_that_says_why(data, message):
    with pytest.raises(wire.DecodeError, match=message):
        wire.decode_touchpoint(data)


def test_a_touchpoint_without_any_id_is_rejected():
    tp = Touchpoint(event_id="e", type="track", name="x", channel="web", occurred_at=0)
    with pytest.raises(wire.DecodeError, match="neither customer_id nor anonymous_id"):
        wire.decode_touchpoint(wire.encode_touchpoint(tp))


def _evolved_touchpoint_schema() -> dict:
    """v1 plus one optional field with a default: the kind of change the rules allow."""
    schema = copy.deepcopy(wire.TOUCHPOINT.schema.source)
    schema["fields"].append(
        {"name": "consent_purpose", "type": ["null", "string"], "default": None, "doc": "x"}
    )
    return schema


def test_new_writer_old_reader_within_the_evolution_rules():
    known = wire.SchemaSet()
    old_reader = wire.Codec(wire.TOUCHPOINT.schema, known)
    new_schema = wire.Schema.from_json(_evolved_touchpoint_schema())
    known.register(new_schema)  # the reader learns the writer schema by fingerprint
    new_writer = wire.Codec(new_schema, wire.SchemaSet())
    record = dict(_as_record(TP), consent_purpose="marketing")
    decoded = old_reader.decode(new_writer.encode(record))
    assert decoded["event_id"] == "e-1" and "consent_purpose" not in decoded


def test_old_writer_new_reader_fills_the_default():
    known = wire.SchemaSet()
    known.register(wire.TOUCHPOINT.schema)
    new_reader = wire.Codec(wire.Schema.from_json(_evolved_touchpoint_schema()), known)
    decoded = new_reader.decode(wire.encode_touchpoint(TP))
    assert decoded["consent_purpose"] is None and decoded["name"] == "Order Completed"


def test_a_touchpoint_from_a_newer_writer_decodes_to_the_same_touchpoint(monkeypatch):
    # Bytes of another schema version take fastavro's resolution, not the generated
    # reader; both must give the same Touchpoint, context included.
    newer = wire.Schema.from_json(_evolved_touchpoint_schema())
    monkeypatch.setitem(wire.KNOWN._by_fingerprint, newer.fingerprint, newer)
    data = wire.Codec(newer, wire.SchemaSet()).encode(
        dict(_as_record(TP), consent_purpose="marketing")
    )
    assert data[2:10] != wire.TOUCHPOINT.schema.fingerprint
    assert wire.decode_touchpoint(data) == wire.decode_touchpoint(wire.encode_touchpoint(TP)) == TP
    with pytest.raises(wire.DecodeError, match="trailing bytes"):
        wire.decode_touchpoint(data + b"\x00")


def test_decoded_touchpoints_share_equal_contexts():
    first, second = (wire.decode_touchpoint(wire.encode_touchpoint(TP)) for _ in range(2))
    assert first.context == TP.context and first.context is second.context


def test_json_form_round_trips_and_uses_iso_times():
    doc = TP.to_json()
    assert doc["occurred_at"] == "2026-01-01T00:00:00.000Z"
    assert Touchpoint.from_json(json.loads(json.dumps(doc))) == TP
    assert NextBestAction.from_json(ACTION.to_json()) == ACTION


def test_json_form_rejects_unknown_and_missing_fields():
    with pytest.raises(ValueError, match="unknown field"):
        Touchpoint.from_json({**TP.to_json(), "colour": "red"})
    with pytest.raises(ValueError, match=r"missing field.*name"):
        Touchpoint.from_json({k: v for k, v in TP.to_json().items() if k != "name"})


@pytest.mark.parametrize("name", ["touchpoint.avsc", "next_best_action.avsc", "deadletter.avsc"])
def test_every_schema_field_is_documented(name):
    schema = json.loads((wire.schema_dir() / name).read_text())
    undocumented = [f["name"] for f in _fields(schema) if not f.get("doc")]
    assert undocumented == []


def _fields(schema: dict):
    for f in schema["fields"]:
        yield f
        if isinstance(f["type"], dict) and f["type"].get("type") == "record":
            yield from _fields(f["type"])


def _as_record(tp: Touchpoint) -> dict:
    return wire.TOUCHPOINT.decode(wire.encode_touchpoint(tp))


def test_deadletter_round_trips():
    dl = wire.DeadLetter.now(
        reason="undecodable",
        detail="bad",
        source_topic="t",
        source_partition=1,
        source_offset=7,
        original_key=b"k",
        original_value=b"\x00\xff",
    )
    assert wire.decode_deadletter(wire.encode_deadletter(dl)) == dl
