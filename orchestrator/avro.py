"""Avro binary bodies, read and written by functions built once per schema.

fastavro interprets the schema for every record it reads or writes. The worker reads one
touchpoint and writes about one action or journey transition per event, and for these
small records the interpretation is most of the cost: fastavro read a touchpoint in
14.2 us, wrote one in 17.2 and a transition in 7.2 (AMD EPYC); these functions take 9.9,
9.7 and 4.3. ``reader`` and ``writer`` turn a parsed schema into nested closures once
(same bytes, same values). They cover the types ``schemas/`` uses - null, boolean,
int, long, double, string, bytes, records, maps and unions of these - and raise
``Unsupported`` for anything else; ``wire.Codec`` then keeps fastavro for that schema.
Schema resolution (a record written with another version of the schema) stays
fastavro's as well.

A reader takes ``(buf, pos)`` and gives ``(value, next pos)``; it raises ``ValueError``
(or ``IndexError``, ``struct.error``, ``UnicodeDecodeError``) on bytes that are not a
valid body. A writer appends the encoding of its value to a ``bytearray`` and raises
``TypeError``/``ValueError`` naming the field for a value the schema does not allow.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

Reader = Callable[[bytes, int], tuple[Any, int]]
Writer = Callable[[Any, bytearray], None]

_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_DOUBLE = struct.Struct("<d")
_MISSING = object()


class Unsupported(ValueError):
    """A schema feature these functions do not implement (fastavro handles it)."""


def _build(
    schema: Any,
    primitives: Mapping[str, Any],
    union: Callable[[list[Any], list[Any]], Any],
    record: Callable[[list[Mapping[str, Any]], list[Any]], Any],
    map_: Callable[[Any], Any],
) -> Any:
    """Walk ``schema`` once, building a function per node from its children's: the one
    walk ``reader`` and ``writer`` share (each passes its own builders)."""

    def build(node: Any) -> Any:
        if isinstance(node, str):
            try:
                return primitives[node]
            except KeyError:
                raise Unsupported(f"type {node!r}") from None
        if isinstance(node, list):
            return union(node, [build(branch) for branch in node])
        if not isinstance(node, dict):
            raise Unsupported(f"schema {node!r}")
        kind = node.get("type")
        if kind == "record":
            return record(node["fields"], [build(f["type"]) for f in node["fields"]])
        if kind == "map":
            return map_(build(node["values"]))
        if isinstance(kind, str) and kind in primitives and "logicalType" not in node:
            return primitives[kind]
        raise Unsupported(f"type {kind!r}")

    return build(schema)


# -- reading --------------------------------------------------------------------------


def _read_long(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    if b < 0x80:  # most lengths, counts and union branches: one byte
        return (b >> 1) ^ -(b & 1), pos + 1
    n = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return (n >> 1) ^ -(n & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _read_bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    b = buf[pos]
    if b < 0x80 and not b & 1:  # a length under 64: one byte, the common case
        n, pos = b >> 1, pos + 1
    else:
        n, pos = _read_long(buf, pos)
    end = pos + n
    if n < 0 or end > len(buf):
        raise ValueError(f"length {n} at byte {pos} runs past the end ({len(buf)} bytes)")
    return buf[pos:end], end


def _read_string(buf: bytes, pos: int) -> tuple[str, int]:
    # ``_read_bytes`` inlined: a touchpoint holds about fifteen strings.
    b = buf[pos]
    if b < 0x80 and not b & 1:
        n, pos = b >> 1, pos + 1
    else:
        n, pos = _read_long(buf, pos)
    end = pos + n
    if n < 0 or end > len(buf):
        raise ValueError(f"length {n} at byte {pos} runs past the end ({len(buf)} bytes)")
    return buf[pos:end].decode(), end


def _read_double(buf: bytes, pos: int) -> tuple[float, int]:
    return _DOUBLE.unpack_from(buf, pos)[0], pos + 8


def _read_boolean(buf: bytes, pos: int) -> tuple[bool, int]:
    b = buf[pos]
    if b > 1:
        raise ValueError(f"boolean byte {b} at {pos} is neither 0 nor 1")
    return b == 1, pos + 1


def _read_null(buf: bytes, pos: int) -> tuple[None, int]:
    return None, pos


_PRIMITIVE_READERS: Mapping[str, Reader] = {
    "null": _read_null,
    "boolean": _read_boolean,
    "int": _read_long,
    "long": _read_long,
    "double": _read_double,
    "string": _read_string,
    "bytes": _read_bytes,
}


def reader(schema: Any) -> Reader:
    """The reader of ``schema`` (a parsed schema, as ``fastavro.parse_schema`` gives)."""
    reader_: Reader = _build(
        schema,
        _PRIMITIVE_READERS,
        _union_reader,
        lambda fields, readers: _record_reader(
            tuple((f["name"], r) for f, r in zip(fields, readers, strict=True))
        ),
        _map_reader,
    )
    return reader_


def _union_reader(schema: list[Any], branches: list[Reader]) -> Reader:
    if schema[:1] == ["null"] and len(branches) == 2:
        value = branches[1]

        def optional(buf: bytes, pos: int) -> tuple[Any, int]:
            b = buf[pos]
            if b == 0:
                return None, pos + 1
            if b == 2:
                return value(buf, pos + 1)
            raise ValueError(f"union branch byte {b} at {pos} out of range")

        return optional
    count = len(branches)

    def union(buf: bytes, pos: int) -> tuple[Any, int]:
        index, pos = _read_long(buf, pos)
        if not 0 <= index < count:
            raise ValueError(f"union branch {index} out of range")
        return branches[index](buf, pos)

    return union


def _record_reader(fields: tuple[tuple[str, Reader], ...]) -> Reader:
    def record(buf: bytes, pos: int) -> tuple[dict[str, Any], int]:
        out = {}
        for name, read in fields:
            out[name], pos = read(buf, pos)
        return out, pos

    return record


def _map_reader(values: Reader) -> Reader:
    def map_(buf: bytes, pos: int) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        while True:
            count, pos = _read_long(buf, pos)
            if count == 0:
                return out, pos
            if count < 0:  # a block with its size in bytes
                count = -count
                _, pos = _read_long(buf, pos)
            for _ in range(count):  # each entry takes at least its key's length byte
                key, pos = _read_string(buf, pos)
                out[key], pos = values(buf, pos)

    return map_


# -- writing --------------------------------------------------------------------------


def _write_long(value: Any, out: bytearray) -> None:
    if type(value) is not int:
        if not isinstance(value, int):
            raise TypeError(f"expected an integer, got {type(value).__name__}")
        value = int(value)
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise ValueError("an integer beyond 64 bits for a long")
    n = (value << 1) ^ (value >> 63)
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _write_int(value: Any, out: bytearray) -> None:
    if isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
        raise ValueError("an integer beyond 32 bits for an int")
    _write_long(value, out)


def _write_bytes(value: Any, out: bytearray) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes, got {type(value).__name__}")
    _write_long(len(value), out)
    out += value


def _write_string(value: Any, out: bytearray) -> None:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    raw = value.encode()
    n = len(raw)
    if n < 0x40:
        out.append(n << 1)
    else:
        _write_long(n, out)
    out += raw


def _write_double(value: Any, out: bytearray) -> None:
    if not isinstance(value, float | int):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    out += _DOUBLE.pack(value)


def _write_boolean(value: Any, out: bytearray) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {type(value).__name__}")
    out.append(1 if value else 0)


def _write_null(value: Any, out: bytearray) -> None:
    if value is not None:
        raise TypeError(f"expected null, got {type(value).__name__}")


_PRIMITIVE_WRITERS: Mapping[str, Writer] = {
    "null": _write_null,
    "boolean": _write_boolean,
    "int": _write_int,
    "long": _write_long,
    "double": _write_double,
    "string": _write_string,
    "bytes": _write_bytes,
}


def writer(schema: Any) -> Writer:
    """The writer of ``schema`` (a parsed schema, as ``fastavro.parse_schema`` gives)."""
    writer_: Writer = _build(
        schema,
        _PRIMITIVE_WRITERS,
        _union_writer,
        lambda fields, writers: _record_writer(
            tuple((f["name"], w, _default(f)) for f, w in zip(fields, writers, strict=True))
        ),
        _map_writer,
    )
    return writer_


def _default(field: Mapping[str, Any]) -> Any:
    """A field's default, as a value its writer takes. JSON gives bytes defaults as
    strings, which would need converting: left to fastavro."""
    if "default" not in field:
        return _MISSING
    value = field["default"]
    first = field["type"][0] if isinstance(field["type"], list) else field["type"]
    if isinstance(value, str) and _kind(first) in ("bytes", "fixed"):
        raise Unsupported(f"bytes default of field {field['name']!r}")
    return value


def _kind(schema: Any) -> str:
    if isinstance(schema, dict):
        schema = schema.get("type")
    if isinstance(schema, str):
        return schema
    raise Unsupported(f"union branch {schema!r}")


#: Python type -> the branch kinds it may be written as, best first.
_UNION_CHOICES: Mapping[type, tuple[str, ...]] = {
    type(None): ("null",),
    bool: ("boolean",),
    int: ("long", "int", "double"),
    float: ("double",),
    str: ("string",),
    bytes: ("bytes",),
    dict: ("map", "record"),
}


def _union_writer(schema: list[Any], writers: list[Writer]) -> Writer:
    kinds = [_kind(branch) for branch in schema]
    if kinds[:1] == ["null"] and len(kinds) == 2:
        value_writer = writers[1]

        def optional(value: Any, out: bytearray) -> None:
            if value is None:
                out.append(0)
            else:
                out.append(2)
                value_writer(value, out)

        return optional
    if len(kinds) != len(set(kinds)) or {"map", "record"} <= set(kinds):
        raise Unsupported(f"union {kinds} with branches of one kind")
    # Per Python type, the (index, writer) pairs to try in order: the first that accepts
    # the value wins (an int beyond 64 bits is written as a double, as fastavro does).
    choices = {
        t: [(i, writers[i]) for kind in preferred for i, k in enumerate(kinds) if k == kind]
        for t, preferred in _UNION_CHOICES.items()
    }

    def union(value: Any, out: bytearray) -> None:
        options = choices.get(type(value))
        if options is None:
            options = next((choices[t] for t in _UNION_CHOICES if isinstance(value, t)), [])
        for index, write in options:
            mark = len(out)
            _write_long(index, out)
            try:
                write(value, out)
                return
            except ValueError:
                del out[mark:]
        raise TypeError(f"a {type(value).__name__} fits no branch of union {kinds}")

    return union


def _record_writer(fields: tuple[tuple[str, Writer, Any], ...]) -> Writer:
    def record(value: Any, out: bytearray) -> None:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a record (mapping), got {type(value).__name__}")
        for name, write, default in fields:
            item = value.get(name, default)
            if item is _MISSING:
                raise ValueError(f"no value and no default for {name}")
            try:
                write(item, out)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{name}: {exc}") from None

    return record


def _map_writer(values: Writer) -> Writer:
    def map_(value: Any, out: bytearray) -> None:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a map, got {type(value).__name__}")
        if value:
            _write_long(len(value), out)
            for key, item in value.items():
                _write_string(key, out)
                try:
                    values(item, out)
                except (TypeError, ValueError) as exc:
                    raise type(exc)(f"{key}: {exc}") from None
        out.append(0)

    return map_
