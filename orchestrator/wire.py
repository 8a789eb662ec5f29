"""Bytes on Kafka: Avro single-object encoding of the records in ``schemas/``.

Every value starts with the two marker bytes ``C3 01`` and the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, followed by the
Avro binary body (the Avro specification's "single object encoding"). A reader therefore
knows which schema wrote a record without a schema registry, and resolves it against
its own (reader) schema by Avro's evolution rules. The schema set a process knows is
the bundled one plus anything passed to ``SchemaSet.register``.
"""

from __future__ import annotations

import copy
import io
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form
from msgspec import Struct
from msgspec.structs import asdict

from orchestrator import avro
from orchestrator.analytics import JourneyTransition
from orchestrator.records import Context, NextBestAction, Touchpoint, require_fields

T = TypeVar("T")
MAGIC = b"\xc3\x01"
HEADER_LEN = 10


class DecodeError(ValueError):
    """The bytes are not a record this process can read; the message says why."""


def schema_dir() -> Path:
    """Where the ``.avsc`` files are: inside the wheel, else the source checkout."""
    bundled = resources.files("orchestrator").joinpath("_schemas")
    if bundled.is_dir():
        return Path(str(bundled))
    return Path(__file__).resolve().parent.parent / "schemas"


def _strip_logical_types(node: Any) -> Any:
    """Times stay integer milliseconds in memory: fastavro would otherwise build a
    ``datetime`` per field per record. Canonical form ignores logicalType, so the
    fingerprint is unchanged."""
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


@dataclass(frozen=True)
class Schema:
    name: str
    source: dict[str, Any]
    parsed: Any
    fingerprint: bytes

    @classmethod
    def from_json(cls, source: Mapping[str, Any]) -> Schema:
        src: dict[str, Any] = copy.deepcopy(dict(source))
        parsed = fastavro.parse_schema(_strip_logical_types(src), _write_hint=True)
        canonical = to_parsing_canonical_form(fastavro.parse_schema(copy.deepcopy(src)))
        # fastavro gives the spec's little-endian byte order already (checked against
        # the spec's value for "null": 0x63DD24E7CC258F8A).
        fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        name = f"{src.get('namespace', '')}.{src['name']}".lstrip(".")
        return cls(name=name, source=src, parsed=parsed, fingerprint=fp)


class SchemaSet:
    """Writer schemas this process can read, by fingerprint."""

    def __init__(self) -> None:
        self._by_fingerprint: dict[bytes, Schema] = {}

    def register(self, schema: Schema) -> Schema:
        self._by_fingerprint[schema.fingerprint] = schema
        return schema

    def get(self, fp: bytes) -> Schema | None:
        return self._by_fingerprint.get(fp)


class Codec:
    """Encodes with one (current) schema; decodes anything written by a known schema
    of the same record name, resolving to the current one."""

    def __init__(
        self,
        schema: Schema,
        known: SchemaSet,
        types: Mapping[str, Callable[..., Any]] | None = None,
        shared_prefix: int = 0,
    ) -> None:
        """``types``: per record (full name: the schema's own, and any held directly by
        a field of it), what ``decode_object`` makes of it - a Struct, or a function
        called with its fields in schema order - and what ``encode_object`` reads its
        fields from (attributes). Made and read straight from and into the bytes: no
        dict is built only to be read back. ``shared_prefix``: see ``avro.writer``."""
        self.schema = schema
        self.known = known
        known.register(schema)
        self._header = MAGIC + schema.fingerprint
        self._types = dict(types or {})
        self._records = _records(schema.parsed)
        for name, made in self._types.items():
            if name not in self._records:
                raise ValueError(
                    f"{name} is not a record held directly by a field of {schema.name}"
                )
            if isinstance(made, type):
                _fields_in_schema_order(self._records[name], made)
        # The schema's own records take the specialised path (orchestrator/avro.py).
        self._read: avro.Reader | None = _or_none(avro.reader, schema.parsed)
        self._write: avro.Writer | None = _or_none(avro.writer, schema.parsed)
        self._read_object: avro.Reader | None = _or_none(
            lambda parsed: avro.reader(parsed, build=self._types), schema.parsed
        )
        self._write_object: avro.Writer | None = _or_none(
            lambda parsed: avro.writer(
                parsed, objects={schema.name, *self._types}, shared_prefix=shared_prefix
            ),
            schema.parsed,
        )

    def record(self, name: str) -> Mapping[str, Any]:
        """The parsed schema of record ``name`` (full name), this one or one it holds."""
        return self._records[name]

    def encode(self, record: Mapping[str, Any]) -> bytes:
        if self._write is None:
            buf = io.BytesIO()
            buf.write(self._header)
            fastavro.schemaless_writer(buf, self.schema.parsed, record)
            return buf.getvalue()
        return self._written(record, self._write)

    def encode_object(self, record: Any) -> bytes:
        """``encode`` of an object whose attributes are the record's fields (the
        Struct of the record): no dict is built for it."""
        if self._write_object is None:
            return self.encode(asdict(record))
        return self._written(record, self._write_object)

    def _written(self, record: Any, write: avro.Writer) -> bytes:
        out = bytearray(self._header)
        write(record, out)
        return bytes(out)

    def decode(self, data: bytes) -> dict[str, Any]:
        return self.read(data, self._read, _record)

    def decode_object(self, data: bytes) -> Any:
        """``decode`` as ``types`` makes the record (see ``__init__``)."""
        return self.read(data, self._read_object, self._made)

    def _made(self, value: Any, schema: Mapping[str, Any] | None = None) -> Any:
        """A record of fastavro's (a dict) as ``types`` makes it, and the records held
        by its fields."""
        schema = schema or self.schema.parsed
        fields = []
        for f in schema["fields"]:
            item = _record(value)[f["name"]]
            kind = f["type"]
            if isinstance(kind, dict) and kind.get("name") in self._types:
                item = self._made(item, kind)
            fields.append(item)
        return self._types[schema["name"]](*fields)

    def read(self, data: bytes, reader: avro.Reader | None, convert: Callable[[Any], T]) -> T:
        """``data``'s record as ``reader`` (a reader of this codec's schema) gives it
        when this schema wrote it; otherwise, resolved from its writer's schema by
        fastavro, as ``convert`` makes it of fastavro's dict. ``DecodeError`` says
        what is wrong with bytes that are not such a record."""
        if type(data) is bytes and data[:HEADER_LEN] == self._header:
            writer = self.schema  # the common case, checked in one compare
        else:
            writer = self._writer(data)
        try:
            if writer is self.schema and reader is not None:
                out, end = reader(bytes(data), HEADER_LEN)
            else:
                body = io.BytesIO(data[HEADER_LEN:])
                resolve_to = None if writer is self.schema else self.schema.parsed
                out = convert(fastavro.schemaless_reader(body, writer.parsed, resolve_to))
                end = HEADER_LEN + body.tell()
        except DecodeError:
            raise
        except Exception as exc:  # corrupt input raises a zoo of types
            raise DecodeError(f"corrupt Avro body: {type(exc).__name__}: {exc}") from exc
        if end != len(data):
            raise DecodeError("trailing bytes after the Avro record")
        return out  # the reader's record, or convert's

    def _writer(self, data: bytes) -> Schema:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise DecodeError(
                "not Avro single-object encoded (missing C3 01 marker); "
                "publish with orchestrator.publish or see schemas/README.md"
            )
        fp = bytes(data[2:HEADER_LEN])
        writer = self.known.get(fp)
        if writer is None:
            raise DecodeError(
                f"unknown writer schema fingerprint {fp.hex()}; "
                "register the writer's schema (SchemaSet.register) to read it"
            )
        if writer.name != self.schema.name:
            raise DecodeError(f"record is a {writer.name}, expected {self.schema.name}")
        return writer


def _records(schema: Any) -> dict[str, Mapping[str, Any]]:
    """The record ``schema`` is (parsed), and those its fields hold directly, by name."""
    found = {schema["name"]: schema}
    for f in schema["fields"]:
        if isinstance(f["type"], dict) and f["type"].get("type") == "record":
            found.update(_records(f["type"]))
    return found


def _record(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError("Avro body is not a record")
    return value


def _or_none(build: Callable[[Any], T], parsed: Any) -> T | None:
    try:
        return build(parsed)
    except avro.Unsupported:
        return None


@cache
def load_schema(filename: str) -> Schema:
    with open(schema_dir() / filename, encoding="utf-8") as fh:
        return Schema.from_json(json.load(fh))


def _fields_in_schema_order(schema: Mapping[str, Any], cls: type[Struct]) -> None:
    """A record is made by calling its type with the fields in schema order."""
    require_fields(cls, [f["name"] for f in schema["fields"]], "the schema's")


#: Contexts seen lately, shared: a channel's events repeat a few of them (locale, time
#: zone, device type, app), and a ``Context`` is immutable. Bounded: emptied when full.
_CONTEXTS: dict[tuple[str | None, ...], Context] = {}
_CONTEXTS_MAX = 4096


def _shared_context(*where: str | None) -> Context:
    context = _CONTEXTS.get(where)
    if context is None:
        if len(_CONTEXTS) >= _CONTEXTS_MAX:
            _CONTEXTS.clear()
        context = _CONTEXTS[where] = Context(*where)
    return context


KNOWN = SchemaSet()
TOUCHPOINT = Codec(
    load_schema("touchpoint.avsc"),
    KNOWN,
    types={"rota.v1.Touchpoint": Touchpoint, "rota.v1.Context": _shared_context},
)
# _shared_context makes Contexts from the fields in schema order, like a Struct.
_fields_in_schema_order(TOUCHPOINT.record("rota.v1.Context"), Context)
ACTION = Codec(
    load_schema("next_best_action.avsc"), KNOWN, types={"rota.v1.NextBestAction": NextBestAction}
)
TRANSITION = Codec(
    load_schema("journey_transition.avsc"),
    KNOWN,
    types={"rota.v1.JourneyTransition": JourneyTransition},
    # customer, journey, version, instance: one decision's transitions share them (a
    # fired reminder writes three, an offer's entry four).
    shared_prefix=4,
)


def encode_touchpoint(tp: Touchpoint) -> bytes:
    return TOUCHPOINT.encode_object(tp)


def decode_touchpoint(data: bytes) -> Touchpoint:
    tp: Touchpoint = TOUCHPOINT.decode_object(data)
    if not tp.customer_id and not tp.anonymous_id:
        raise DecodeError(f"touchpoint {tp.event_id!r} has neither customer_id nor anonymous_id")
    return tp


def encode_action(action: NextBestAction) -> bytes:
    return ACTION.encode_object(action)


def decode_action(data: bytes) -> NextBestAction:
    action: NextBestAction = ACTION.decode_object(data)
    return action


class DeadLetter(Struct, frozen=True, gc=False):
    """A record that could not be processed, with where it came from and why."""

    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    original_key: bytes | None
    original_value: bytes | None
    failed_at: int
    component: str = "worker"

    @classmethod
    def now(cls, **fields: Any) -> DeadLetter:
        return cls(failed_at=int(time.time() * 1000), **fields)


DEADLETTER = Codec(load_schema("deadletter.avsc"), KNOWN, types={"rota.v1.DeadLetter": DeadLetter})


def encode_deadletter(dl: DeadLetter) -> bytes:
    return DEADLETTER.encode_object(dl)


def decode_deadletter(data: bytes) -> DeadLetter:
    dl: DeadLetter = DEADLETTER.decode_object(data)
    return dl


def encode_transition(t: JourneyTransition) -> bytes:
    return TRANSITION.encode_object(t)


def decode_transition(data: bytes) -> JourneyTransition:
    transition: JourneyTransition = TRANSITION.decode_object(data)
    return transition
