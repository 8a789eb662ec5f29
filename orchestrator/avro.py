"""Avro binary bodies, read and written by functions built once per schema.

fastavro interprets the schema for every record it reads or writes. The worker reads one
touchpoint and writes about one action or journey transition per event, and for these
small records the interpretation is most of the cost. ``reader`` and ``writer`` generate
the source of one function per schema, once (same bytes, same values as fastavro). On
a touchpoint (AMD EPYC, 2026-12-04): fastavro read it in 28.4 us and wrote it in 34.1;
the nested closures these functions were before, one call per field and value, took
22.0 and 16.9; the generated ones take 13.1 and 13.2. They cover the types
``schemas/`` uses - null, boolean, int, long, double, string, bytes, records, maps and
unions of these - and raise ``Unsupported`` for anything else; ``wire.Codec`` then
keeps fastavro for that schema. Schema resolution (a record written with another
version of the schema) stays fastavro's as well.

A reader takes ``(buf, pos)`` and gives ``(value, next pos)``; it raises ``ValueError``
(or ``IndexError``, ``struct.error``, ``UnicodeDecodeError``) on bytes that are not a
valid body. A writer appends the encoding of its value to a ``bytearray`` and raises
``TypeError``/``ValueError`` naming the field for a value the schema does not allow.
"""

from __future__ import annotations

import keyword
import linecache
import struct
from collections.abc import Callable, Collection, Mapping
from typing import Any

Reader = Callable[[bytes, int], tuple[Any, int]]
Writer = Callable[[Any, bytearray], None]

_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_DOUBLE = struct.Struct("<d")
_MISSING = object()
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "double", "string", "bytes"})


class Unsupported(ValueError):
    """A schema feature these functions do not implement (fastavro handles it)."""


# -- reading --------------------------------------------------------------------------


def _varint_reader_source(max_bytes: int = 10) -> str:
    """The source of ``_read_long``, unrolled: a 6-byte varint (a timestamp) read byte
    by byte in a loop cost Python ~30 bytecodes a byte, unrolled ~18."""
    lines = [
        "def _read_long(buf, pos):",
        "    b = buf[pos]",
        "    if b < 0x80:  # most lengths, counts and union branches: one byte",
        "        return (b >> 1) ^ -(b & 1), pos + 1",
        "    n = b & 0x7F",
    ]
    for i in range(1, max_bytes):
        lines += [
            f"    b = buf[pos + {i}]",
            "    if b < 0x80:",
            f"        n |= b << {7 * i}",
            f"        return (n >> 1) ^ -(n & 1), pos + {i + 1}",
            f"    n |= (b & 0x7F) << {7 * i}",
        ]
    lines.append(f"    raise ValueError('varint longer than {max_bytes} bytes')")
    return "\n".join(lines) + "\n"


def reader(schema: Any, build: Mapping[str, Callable[..., Any]] | None = None) -> Reader:
    """The reader of ``schema`` (a parsed schema, as ``fastavro.parse_schema`` gives).

    Its source is generated: one function reading the whole record in straight-line
    code, fields into locals and then one dict display per record, with the one-byte
    lengths, counts and union branches read inline. Names from the schema appear in
    the source only as ``repr`` literals.

    ``build`` maps a record's full name to a function called with its fields in
    schema order, whose result stands for the record instead of a dict: a caller that
    wants its own type then does not build a dict only to read it back."""
    source = _ReaderSource(build or {})
    source.line(0, "def read(buf, pos):")
    source.line(1, "size = len(buf)")
    source.node(schema, 1, "value")
    source.line(1, "return value, pos")
    namespace: dict[str, Any] = {
        "_read_long": _read_long,
        "_double": _DOUBLE.unpack_from,
        **source.constants,
    }
    read: Reader = _compiled(source.text(), "reader", schema, namespace)["read"]
    return read


def _compiled(text: str, role: str, schema: Any, namespace: dict[str, Any]) -> dict[str, Any]:
    """``namespace`` after running ``text``; tracebacks through it show its lines."""
    name = schema.get("name", "") if isinstance(schema, dict) else str(schema)
    filename = f"<avro {role} {name}>"
    exec(compile(text, filename, "exec"), namespace)
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    return namespace


_read_long: Callable[[bytes, int], tuple[int, int]] = _compiled(
    _varint_reader_source(), "reader", "long", {}
)["_read_long"]


def _optional(branches: list[Any]) -> bool:
    """A union of null and one other type: written inline, branch 0 or 1."""
    return len(branches) == 2 and _kind(branches[0]) == "null"


class _Source:
    """Lines of generated code, fresh names for its locals, and the walk over a schema
    that readers and writers share (each spells its own nodes)."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._names = 0
        #: Values the code cannot spell (defaults, union writers, record builders), by
        #: the name ``constant`` gave them in the function's namespace.
        self.constants: dict[str, Any] = {}

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"

    def line(self, depth: int, code: str) -> None:
        self._lines.append("    " * depth + code)

    def local(self, stem: str) -> str:
        self._names += 1
        return f"{stem}{self._names}"

    def constant(self, value: Any) -> str:
        name = self.local("K")
        self.constants[name] = value
        return name

    def node(self, schema: Any, d: int, var: str) -> None:
        """Emit, at depth ``d``, the code for one schema node's value in local ``var``."""
        if isinstance(schema, list):
            self._union(schema, d, var)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind == "record":
                self._record(schema["fields"], d, var, schema.get("name", ""))
            elif kind == "map":
                self._map(schema["values"], d, var)
            elif isinstance(kind, str) and kind in _PRIMITIVES and "logicalType" not in schema:
                self._primitive(kind, d, var)
            else:
                raise Unsupported(f"type {kind!r}")
        elif isinstance(schema, str) and schema in _PRIMITIVES:
            self._primitive(schema, d, var)
        else:
            raise Unsupported(f"type {schema!r}")

    def _union(self, branches: list[Any], d: int, var: str) -> None:
        raise NotImplementedError

    def _record(self, fields: list[Mapping[str, Any]], d: int, var: str, record: str) -> None:
        raise NotImplementedError

    def _map(self, values: Any, d: int, var: str) -> None:
        raise NotImplementedError

    def _primitive(self, kind: str, d: int, var: str) -> None:
        raise NotImplementedError


class _ReaderSource(_Source):
    """The lines of a reader. ``node`` emits code that reads one value of a schema
    node at ``pos`` into a local and leaves ``pos`` after it; ``b`` is scratch.
    ``build`` names the records made by a function of their fields (a constant of the
    namespace, called with the fields in schema order) instead of a dict."""

    def __init__(self, build: Mapping[str, Callable[..., Any]]) -> None:
        super().__init__()
        self._build = build

    def _primitive(self, kind: str, d: int, into: str) -> None:
        if kind in ("long", "int"):
            self._long(d, into)
        elif kind in ("string", "bytes"):
            self._bytes(d, into, decode=kind == "string")
        elif kind == "double":
            self.line(d, f"{into} = _double(buf, pos)[0]")
            self.line(d, "pos += 8")
        elif kind == "boolean":
            self.line(d, "b = buf[pos]")
            self.line(d, "if b > 1:")
            self.line(d + 1, "raise ValueError(f'boolean byte {b} at {pos} is neither 0 nor 1')")
            self.line(d, f"{into} = b == 1")
            self.line(d, "pos += 1")
        else:
            self.line(d, f"{into} = None")

    def _long(self, d: int, into: str) -> None:
        self.line(d, "b = buf[pos]")
        self.line(d, "if b < 0x80:")
        self.line(d + 1, f"{into} = (b >> 1) ^ -(b & 1)")
        self.line(d + 1, "pos += 1")
        self.line(d, "else:")
        self.line(d + 1, f"{into}, pos = _read_long(buf, pos)")

    def _bytes(self, d: int, into: str, *, decode: bool) -> None:
        n = self.local("n")
        self.line(d, "b = buf[pos]")
        self.line(d, "if not b & 0x81:")  # one byte, even: a length under 64
        self.line(d + 1, "pos += 1")
        self.line(d + 1, "end = pos + (b >> 1)")
        self.line(d, "else:")
        self.line(d + 1, f"{n}, pos = _read_long(buf, pos)")
        self.line(d + 1, f"if {n} < 0:")
        self.line(d + 2, f"raise ValueError(f'negative length {{{n}}} at byte {{pos}}')")
        self.line(d + 1, f"end = pos + {n}")
        self.line(d, "if end > size:")
        message = "length {end - pos} at byte {pos} runs past the end ({size} bytes)"
        self.line(d + 1, f"raise ValueError(f'{message}')")
        self.line(d, f"{into} = buf[pos:end]" + (".decode()" if decode else ""))
        self.line(d, "pos = end")

    def _record(self, fields: list[Mapping[str, Any]], d: int, into: str, record: str) -> None:
        values = []
        for f in fields:
            value = self.local("f")
            self.node(f["type"], d, value)
            values.append((f["name"], value))
        build = self._build.get(record)
        if build is None:
            self.line(d, f"{into} = {{{', '.join(f'{k!r}: {v}' for k, v in values)}}}")
            return
        self.line(d, f"{into} = {self.constant(build)}({', '.join(v for _, v in values)})")

    def _map(self, values: Any, d: int, into: str) -> None:
        count, key, item = self.local("c"), self.local("k"), self.local("x")
        self.line(d, f"{into} = {{}}")
        self.line(d, "while True:")
        self._long(d + 1, count)
        self.line(d + 1, f"if {count} == 0:")
        self.line(d + 2, "break")
        self.line(d + 1, f"if {count} < 0:")  # a block with its size in bytes
        self.line(d + 2, f"{count} = -{count}")
        self.line(d + 2, "_, pos = _read_long(buf, pos)")
        self.line(d + 1, f"for _ in range({count}):")
        self._bytes(d + 2, key, decode=True)
        self.node(values, d + 2, item)
        self.line(d + 2, f"{into}[{key}] = {item}")

    def _union(self, branches: list[Any], d: int, into: str) -> None:
        if len(branches) > 64:  # the branch index would take two bytes
            raise Unsupported(f"a union of {len(branches)} types")
        # The branch's byte itself is compared (zigzag: branch i is the byte 2i) - an
        # optional value (null or one type) as much as any union.
        self.line(d, "b = buf[pos]")
        self.line(d, "pos += 1")
        for i, branch in enumerate(branches):
            self.line(d, f"{'if' if i == 0 else 'elif'} b == {2 * i}:")
            self.node(branch, d + 1, into)
        self.line(d, "else:")
        self.line(d + 1, "raise ValueError(f'union branch byte {b} at {pos - 1} out of range')")


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


#: The encodings of longs written lately. Writing a 6-byte varint (a timestamp) takes
#: Python ~7,000 instructions and a look-up here ~300; and the records of one decision
#: carry the same time (a fired reminder's action and three transitions all carry the
#: firing time). Bounded: emptied when full.
_LONGS: dict[int, bytes] = {}
_LONGS_MAX = 4096


def _long_bytes(value: int) -> bytes:
    """The varint of ``value`` (an ``int``), remembered in ``_LONGS``."""
    out = bytearray()
    _write_long(value, out)
    if len(_LONGS) >= _LONGS_MAX:
        _LONGS.clear()
    encoded = _LONGS[value] = bytes(out)
    return encoded


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


#: What a shared prefix (``writer``) may hold: immutable, so one object, one encoding.
_SHAREABLE = frozenset({"null", "string", "int", "long"})

_PRIMITIVE_WRITERS: Mapping[str, Writer] = {
    "null": _write_null,
    "boolean": _write_boolean,
    "int": _write_int,
    "long": _write_long,
    "double": _write_double,
    "string": _write_string,
    "bytes": _write_bytes,
}


def writer(schema: Any, objects: Collection[str] = (), shared_prefix: int = 0) -> Writer:
    """The writer of ``schema`` (a parsed schema, as ``fastavro.parse_schema`` gives).

    Generated like ``reader``'s: records and maps in straight-line code, strings,
    one-byte integers and optional (null or one type) values inline, other longs from
    a memo (``_LONGS``), each field in a ``try`` that names it in the error. A union
    of several types goes through ``_union_writer``, which tries the branches a value
    may take in order.

    The records named in ``objects`` (full names) are read as attributes of an object
    (each field an attribute, none defaulted) rather than keys of a mapping: a caller
    holding a Struct then builds no dict only for it to be written.

    ``shared_prefix``: the first fields of the record (strings, ints, longs, null or an
    optional one of these), encoded once for consecutive records whose values there
    are the same objects - the journey transitions of one decision share customer,
    journey, version and instance."""
    if shared_prefix and not (isinstance(schema, dict) and schema.get("type") == "record"):
        raise ValueError("a shared prefix is the first fields of a record")
    source = _WriterSource(objects, shared_prefix)
    source.line(0, "def write(value, out):")
    source.node(schema, 1, "value")
    namespace: dict[str, Any] = {
        "Mapping": Mapping,
        "_MISSING": _MISSING,
        "_LONGS": _LONGS,
        "_long_bytes": _long_bytes,
        "_encode": str.encode,
        **{f"_write_{kind}": w for kind, w in _PRIMITIVE_WRITERS.items()},
        **source.constants,
    }
    write: Writer = _compiled(source.text(), "writer", schema, namespace)["write"]
    return write


class _WriterSource(_Source):
    """The lines of a writer. ``node`` emits code that appends the encoding of the
    value in a local to ``out``; values the code cannot spell (field defaults, union
    writers) are constants ``K<n>`` of its namespace."""

    def __init__(self, objects: Collection[str], shared: int = 0) -> None:
        super().__init__()
        self._objects = objects
        self._shared = shared

    def _primitive(self, kind: str, d: int, value: str) -> None:
        if kind == "string":
            self._string(d, value)
        elif kind in ("int", "long"):
            # Versions, counts, priorities: one byte, inline. Timestamps: from the memo
            # (``_long_bytes``). Anything else is checked by ``_write_int``/``_write_long``.
            self.line(d, f"if type({value}) is not int:")
            self.line(d + 1, f"_write_{kind}({value}, out)")
            self.line(d, f"elif -64 <= {value} < 64:")
            self.line(d + 1, f"out.append(({value} << 1) ^ ({value} >> 7))")
            self.line(d, "else:")
            if kind == "long":
                self.line(d + 1, f"out += _LONGS.get({value}) or _long_bytes({value})")
            else:  # its range checked
                self.line(d + 1, f"_write_int({value}, out)")
        elif kind == "null":
            self.line(d, f"if {value} is not None:")
            self.line(d + 1, f"raise TypeError(f'expected null, got {{type({value}).__name__}}')")
        else:
            self.line(d, f"_write_{kind}({value}, out)")

    def _string(self, d: int, value: str) -> None:
        # ``_write_string`` inlined: a touchpoint holds about fifteen strings. The type
        # is checked by ``str.encode`` itself (a ``try`` costs nothing until it raises).
        self.line(d, "try:")
        self.line(d + 1, f"raw = _encode({value})")
        self.line(d, "except TypeError:")
        message = f"expected a string, got {{type({value}).__name__}}"
        self.line(d + 1, f"raise TypeError(f'{message}') from None")
        self.line(d, "size = len(raw)")
        self.line(d, "if size < 0x40:")
        self.line(d + 1, "out.append(size << 1)")
        self.line(d, "else:")
        self.line(d + 1, "_write_long(size, out)")
        self.line(d, "out += raw")

    def _mapping(self, d: int, value: str, what: str) -> None:
        self.line(d, f"if type({value}) is not dict and not isinstance({value}, Mapping):")
        self.line(d + 1, f"raise TypeError(f'expected {what}, got {{type({value}).__name__}}')")

    def _record(self, fields: list[Mapping[str, Any]], d: int, value: str, record: str) -> None:
        if record not in self._objects:
            self._mapping(d, value, "a record (mapping)")
        # The written record is the first one met: its own fields only, none nested.
        shared, self._shared = self._shared, 0
        items = [self._load(f, d, value, record) for f in fields[:shared]]
        if shared:
            self._shared_prefix(fields[:shared], d, items)
        for f in fields[shared:]:
            self._field(f["name"], d, self._load(f, d, value, record), f["type"])

    def _load(self, f: Mapping[str, Any], d: int, value: str, record: str) -> str:
        """Emit the line reading field ``f`` of the record in ``value`` into a new local."""
        item, name = self.local("v"), f["name"]
        if record in self._objects:
            if name.isidentifier() and not keyword.iskeyword(name):
                self.line(d, f"{item} = {value}.{name}")
            else:  # a field named ``from``, say
                self.line(d, f"{item} = getattr({value}, {name!r})")
            return item
        default = _default(f)
        self.line(d, f"{item} = {value}.get({name!r}, {self.constant(default)})")
        if default is _MISSING:
            self.line(d, f"if {item} is _MISSING:")
            self.line(d + 1, f"raise ValueError({f'no value and no default for {name}'!r})")
        return item

    def _shared_prefix(self, fields: list[Mapping[str, Any]], d: int, items: list[str]) -> None:
        """The encoding of the first fields, reused while they are the same objects as
        the last record's (held, with it, in one tuple: read and replaced whole)."""
        for f in fields:
            kinds = f["type"] if isinstance(f["type"], list) else [f["type"]]
            if not all(_kind(k) in _SHAREABLE for k in kinds):
                raise ValueError(f"a shared prefix holds immutable scalars; not {f['name']!r}")
        last = self.constant([(*(object() for _ in items), b"")])
        self.line(d, f"last = {last}[0]")
        same = " and ".join(f"{item} is last[{n}]" for n, item in enumerate(items))
        self.line(d, f"if {same}:")
        self.line(d + 1, f"out += last[{len(items)}]")
        self.line(d, "else:")
        self.line(d + 1, "start = len(out)")
        for f, item in zip(fields, items, strict=True):
            self._field(f["name"], d + 1, item, f["type"])
        self.line(d + 1, f"{last}[0] = ({', '.join(items)}, bytes(out[start:]))")

    def _field(self, name: str, d: int, item: str, schema: Any) -> None:
        self.line(d, "try:")
        self.node(schema, d + 1, item)
        self.line(d, "except (TypeError, ValueError) as exc:")
        self.line(d + 1, f"raise type(exc)({f'{name}: '!r} + str(exc)) from None")

    def _map(self, values: Any, d: int, value: str) -> None:
        key, item = self.local("k"), self.local("x")
        self._mapping(d, value, "a map")
        self.line(d, f"if {value}:")
        self.line(d + 1, f"_write_long(len({value}), out)")
        self.line(d + 1, f"for {key}, {item} in {value}.items():")
        self._string(d + 2, key)
        self.line(d + 2, "try:")
        self.node(values, d + 3, item)
        self.line(d + 2, "except (TypeError, ValueError) as exc:")
        self.line(d + 3, f"raise type(exc)(f'{{{key}}}: {{exc}}') from None")
        self.line(d, "out.append(0)")

    def _union(self, branches: list[Any], d: int, value: str) -> None:
        if _optional(branches):
            self.line(d, f"if {value} is None:")
            self.line(d + 1, "out.append(0)")
            self.line(d, "else:")
            self.line(d + 1, "out.append(2)")
            self.node(branches[1], d + 1, value)
            return
        writers = [
            _PRIMITIVE_WRITERS[b]
            if isinstance(b, str) and b in _PRIMITIVE_WRITERS
            else writer(b, self._objects)
            for b in branches
        ]
        self.line(d, f"{self.constant(_union_writer(branches, writers))}({value}, out)")


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
    """A union of several types (an optional value is written inline, see ``writer``)."""
    kinds = [_kind(branch) for branch in schema]
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
