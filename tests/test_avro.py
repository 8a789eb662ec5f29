"""The specialised Avro readers and writers give fastavro's bytes and values."""

from __future__ import annotations

import io
import math
import struct
from typing import Any

import fastavro
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator import avro, wire
from orchestrator.analytics import JourneyTransition
from orchestrator.records import NextBestAction

CODECS = [wire.TOUCHPOINT, wire.ACTION, wire.DEADLETTER, wire.TRANSITION]


def _values(schema: Any) -> st.SearchStrategy[Any]:
    """Any value ``schema`` allows (no NaN: it is not equal to itself)."""
    if isinstance(schema, dict) and schema["type"] == "record":
        return st.fixed_dictionaries({f["name"]: _values(f["type"]) for f in schema["fields"]})
    if isinstance(schema, dict) and schema["type"] == "map":
        return st.dictionaries(st.text(max_size=70), _values(schema["values"]), max_size=4)
    if isinstance(schema, dict):
        return _values(schema["type"])
    if isinstance(schema, list):
        return st.one_of([_values(branch) for branch in schema])
    return {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": st.integers(-(2**63), 2**63 - 1),
        "double": st.floats(allow_nan=False),
        "string": st.text(max_size=90),
        "bytes": st.binary(max_size=90),
    }[schema]


def _fastavro_bytes(schema: Any, record: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def _ours(schema: Any, record: Any) -> bytes:
    out = bytearray()
    avro.writer(schema)(record, out)
    return bytes(out)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.schema.name)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_every_bundled_schema_writes_fastavros_bytes_and_reads_its_values(codec, data):
    parsed = codec.schema.parsed
    record = data.draw(_values(parsed))
    expected = _fastavro_bytes(parsed, record)
    assert _ours(parsed, record) == expected
    value, end = avro.reader(parsed)(expected, 0)
    assert end == len(expected)
    assert value == fastavro.schemaless_reader(io.BytesIO(expected), parsed, None)


@settings(max_examples=250, deadline=None)
@given(data=st.data())
def test_corrupt_bodies_raise_value_errors_or_read_what_fastavro_reads(data):
    parsed = wire.TOUCHPOINT.schema.parsed
    body = bytearray(_fastavro_bytes(parsed, data.draw(_values(parsed))))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body) - 1))
        body[at] = data.draw(st.integers(0, 255))
    body = body[: data.draw(st.integers(0, len(body)))]
    try:
        ours: Any = avro.reader(parsed)(bytes(body), 0)
    except (ValueError, IndexError, struct.error):
        ours = None
    stream = io.BytesIO(bytes(body))
    try:
        theirs: Any = (fastavro.schemaless_reader(stream, parsed, None), stream.tell())
    except Exception:  # fastavro's own zoo
        theirs = None
    if ours is not None and theirs is not None:
        assert ours == theirs


def test_an_integer_beyond_64_bits_in_a_scalar_union_is_written_as_a_double():
    parsed = fastavro.parse_schema({"type": "map", "values": ["null", "long", "double"]})
    assert _ours(parsed, {"n": 2**70}) == _fastavro_bytes(parsed, {"n": 2**70})
    value, _ = avro.reader(parsed)(_ours(parsed, {"n": 2**70}), 0)
    assert math.isclose(value["n"], 2.0**70)


def test_a_value_of_the_wrong_type_names_its_field_and_key():
    with pytest.raises(TypeError, match="properties: items: a list fits no branch"):
        wire.TOUCHPOINT.encode({**_a_touchpoint(), "properties": {"items": [1, 2]}})
    with pytest.raises(TypeError, match="event_id: expected a string, got int"):
        wire.TOUCHPOINT.encode({**_a_touchpoint(), "event_id": 5})
    with pytest.raises(ValueError, match="journey_version: an integer beyond 32 bits"):
        wire.TRANSITION.encode(
            {
                "customer_id": "c",
                "journey_id": "j",
                "journey_version": 2**32,
                "kind": "entered",
                "occurred_at": 1,
            }
        )


def test_missing_fields_take_their_defaults_and_a_field_without_one_is_an_error():
    record = _a_touchpoint()
    for optional in ("customer_id", "properties", "context", "source"):
        del record[optional]
    record["anonymous_id"] = "v-1"
    parsed = wire.TOUCHPOINT.schema.parsed
    assert _ours(parsed, record) == _fastavro_bytes(parsed, record)
    del record["channel"]
    with pytest.raises(ValueError, match="no value and no default for channel"):
        wire.TOUCHPOINT.encode(record)


def test_a_schema_beyond_the_subset_is_unsupported_and_its_codec_uses_fastavro():
    source = {
        "type": "record",
        "name": "Light",
        "fields": [
            {"name": "colour", "type": {"type": "enum", "name": "C", "symbols": ["RED", "GREEN"]}},
            {"name": "ids", "type": {"type": "array", "items": "long"}},
        ],
    }
    schema = wire.Schema.from_json(source)
    with pytest.raises(avro.Unsupported):
        avro.reader(schema.parsed)
    with pytest.raises(avro.Unsupported):
        avro.writer(schema.parsed)
    codec = wire.Codec(schema, wire.SchemaSet())
    record = {"colour": "GREEN", "ids": [1, 2, 3]}
    assert codec.decode(codec.encode(record)) == record

    class Light(msgspec.Struct):
        colour: str
        ids: list[int]

    assert codec.encode_object(Light("GREEN", [1, 2, 3])) == codec.encode(record)


def test_names_in_a_schema_stay_data_in_the_generated_code():
    """Readers' and writers' source is generated from the schema: a name that looks like
    code is still just a key."""
    names = ["a'}; raise SystemExit #", 'b\\n"', "{c}"]
    schema = {
        "type": "record",
        "name": "Odd",
        "fields": [
            {"name": n, "type": t} for n, t in zip(names, ["string", "long", "double"], strict=True)
        ],
    }
    record = {names[0]: "z", names[1]: -3, names[2]: 0.5}
    body = _fastavro_bytes(fastavro.parse_schema(schema), record)
    assert avro.reader(schema)(body, 0) == (record, len(body))
    assert _ours(schema, record) == body
    with pytest.raises(ValueError, match="no value and no default for a'}; raise SystemExit #"):
        _ours(schema, {names[1]: 1, names[2]: 1.0})


def _a_touchpoint() -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "type": "track",
        "name": "Page Viewed",
        "channel": "web",
        "occurred_at": 1_767_225_600_000,
        "customer_id": "c-1",
        "anonymous_id": None,
        "received_at": None,
        "properties": {"path": "/"},
        "traits": {},
        "context": {},
        "source": "web",
        "action_id": None,
    }


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_a_reader_building_records_gives_them_the_fields_the_dict_would_hold(data):
    """``build``: the touchpoint and its context made by functions of their fields, in
    schema order, instead of dicts - from the same bytes, the same values."""
    parsed = wire.TOUCHPOINT.schema.parsed
    record = data.draw(_values(parsed))
    body = _fastavro_bytes(parsed, record)

    def made(name: str, schema: Any) -> Any:
        return lambda *fields: (
            name,
            dict(zip([f["name"] for f in schema["fields"]], fields, strict=True)),
        )

    context_schema = next(f["type"] for f in parsed["fields"] if f["name"] == "context")
    read = avro.reader(
        parsed,
        build={
            "rota.v1.Touchpoint": made("touchpoint", parsed),
            "rota.v1.Context": made("context", context_schema),
        },
    )
    (kind, fields), end = read(body, 0)
    assert (kind, end) == ("touchpoint", len(body))
    assert fields["context"] == ("context", record["context"])
    assert {**fields, "context": record["context"]} == record


OBJECTS = [
    (wire.ACTION, NextBestAction, wire.encode_action),
    (wire.TRANSITION, JourneyTransition, wire.encode_transition),
    (wire.DEADLETTER, wire.DeadLetter, wire.encode_deadletter),
]


@pytest.mark.parametrize(("codec", "cls", "encode"), OBJECTS, ids=lambda x: getattr(x, "name", ""))
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_records_written_from_their_struct_are_the_bytes_of_their_dict(codec, cls, encode, data):
    """The worker writes actions, transitions and dead letters from their Structs
    (``writer(objects=...)``, attributes instead of keys): the same bytes, which read
    back as the same record."""
    record = data.draw(_values(codec.schema.parsed))
    obj = cls(**record)
    assert encode(obj) == codec.encode(record)
    assert codec.decode(encode(obj)) == record


def test_a_field_of_the_wrong_type_in_an_object_is_named():
    t = JourneyTransition("c", "j", 1, "j#1", "entered", None, None, occurred_at="soon")
    with pytest.raises(TypeError, match="occurred_at"):
        wire.encode_transition(t)


INTEGERS = {
    "type": "record",
    "name": "N",
    "fields": [
        {"name": "i", "type": "int"},
        {"name": "from", "type": "long"},  # a Python keyword: read with getattr
    ],
}


@pytest.mark.parametrize("n", [0, 1, -1, 63, -64, 64, -65, 2**31 - 1, -(2**31), True, False])
def test_integers_at_the_edges_of_the_one_byte_inline_path_are_fastavros_bytes(n):
    parsed = fastavro.parse_schema(INTEGERS)
    record = {"i": n, "from": n}
    assert _ours(parsed, record) == _fastavro_bytes(parsed, record)

    class Obj:
        pass

    obj = Obj()
    obj.i = n
    setattr(obj, "from", n)
    out = bytearray()
    avro.writer(parsed, objects={"N"})(obj, out)
    assert bytes(out) == _fastavro_bytes(parsed, record)


@pytest.mark.parametrize("n", [2**31, -(2**31) - 1, 1.5, "1"])
def test_an_int_out_of_range_or_not_an_integer_is_refused_by_name(n):
    with pytest.raises((TypeError, ValueError), match=r"^i: "):
        _ours(fastavro.parse_schema(INTEGERS), {"i": n, "from": 0})


def test_longs_come_from_a_bounded_memo_with_the_bytes_fastavro_writes():
    """Timestamps repeat across the records of one decision: their encodings are
    remembered (``avro._LONGS``), never more than ``_LONGS_MAX`` of them."""
    parsed = "long"
    values = [1_800_000_000_000 + n * 7_919 for n in range(avro._LONGS_MAX + 500)]
    for value in [*values, *values[:10], -(2**63), 2**63 - 1]:
        assert _ours(parsed, value) == _fastavro_bytes(parsed, value)
        assert len(avro._LONGS) <= avro._LONGS_MAX
    assert avro._LONGS[2**63 - 1] == _fastavro_bytes(parsed, 2**63 - 1)
    with pytest.raises(ValueError, match="beyond 64 bits"):
        _ours(parsed, 2**63)
    assert 2**63 not in avro._LONGS


#: Around each power of 2**7: the values whose varints change length there.
_EDGES = sorted({s * (2**k + d) for k in range(0, 63, 7) for d in (-1, 0) for s in (1, -1)})


@pytest.mark.parametrize("n", [*_EDGES, 2**63 - 1, -(2**63)])
def test_longs_of_every_varint_length_read_back(n):
    """``_read_long`` is unrolled byte by byte: each length from 1 to 10 bytes."""
    body = _fastavro_bytes("long", n)
    assert avro.reader("long")(body + b"\x00", 0) == (n, len(body))


def test_malformed_lengths_varints_and_branches_are_refused_with_where():
    with pytest.raises(ValueError, match="varint longer than 10 bytes"):
        avro.reader("long")(b"\xff" * 10 + b"\x01", 0)
    with pytest.raises(ValueError, match="negative length -1 at byte 1"):
        avro.reader("string")(b"\x01abc", 0)
    with pytest.raises(ValueError, match="length 63 at byte 1 runs past the end"):
        avro.reader("string")(b"\x7eabc", 0)
    union = fastavro.parse_schema(["null", "long", "string"])
    assert avro.reader(union)(b"\x04\x02a", 0) == ("a", 3)
    with pytest.raises(ValueError, match="union branch byte 6 at 0 out of range"):
        avro.reader(union)(b"\x06", 0)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_transitions_sharing_their_first_fields_are_written_as_each_alone(data):
    """``shared_prefix``: a transition whose customer, journey, version and instance are
    the objects of the one written before reuses their encoding; any other is written
    whole. Runs of shared, equal-but-distinct and changed values give fastavro's bytes."""
    parsed = wire.TRANSITION.schema.parsed
    first = data.draw(_values(parsed))
    records = [first]
    for _ in range(data.draw(st.integers(1, 6))):
        record = {**data.draw(_values(parsed))}
        how = data.draw(st.sampled_from(["same objects", "one changed", "equal copies", "new"]))
        prefix = ("customer_id", "journey_id", "journey_version", "instance_id")
        if how == "same objects":
            record.update({k: records[-1][k] for k in prefix})
        elif how == "one changed":  # the others the same objects
            changed = data.draw(st.sampled_from(prefix))
            record.update({k: records[-1][k] for k in prefix if k != changed})
        elif how == "equal copies":  # equal, other objects: written again, same bytes
            record.update({k: _copy(records[-1][k]) for k in prefix})
        records.append(record)
    for record in records:
        written = wire.encode_transition(JourneyTransition(**record))
        assert written[wire.HEADER_LEN :] == _fastavro_bytes(parsed, record)


def _copy(value: Any) -> Any:
    if isinstance(value, str):
        return "".join(list(value)) if len(value) > 1 else value  # not interned
    return value


def test_a_shared_prefix_holds_only_immutable_scalars_of_a_record():
    parsed = wire.TOUCHPOINT.schema.parsed  # its ninth field is a map
    assert avro.writer(parsed, shared_prefix=8)
    with pytest.raises(ValueError, match="immutable scalars; not 'properties'"):
        avro.writer(parsed, shared_prefix=9)
    with pytest.raises(ValueError, match="first fields of a record"):
        avro.writer("string", shared_prefix=1)
