"""Journey conditions: CEL expressions compiled once per journey version.

Conditions run through the ``common-expression-language`` package (Rust): safe, not
Turing-complete, no Python ``eval``. Converting Python values into CEL values costs
microseconds per map entry, far more than evaluating the expression, so each compiled
condition remembers which parts of its variables it reads (``event.properties.total``
reads ``event -> properties -> total``) and is handed only those - where it can, as
one variable per field path (``Condition.flat``). A missing key is not an error in the
projection: the expression then sees the key absent, exactly as it would on the whole
value (``has(event.properties.coupon)`` stays false).

The commonest condition compares one field with a literal (``event.properties.value >=
0.0``, ``profile.traits.country == "FR"``). Where CEL's answer for the value found is
certain - same kinds, no conversion that could lose digits, no error - it is computed in
Python (``Comparison``), ~0.2 us instead of the binding's ~1.5 us; any other value runs
CEL.

Evaluation never raises: a condition that fails at run time (a missing key, a type
mismatch) is *false*, and the error text is returned for traces.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import cel

#: Variables every condition may name. Documented in journeys/README.md.
VARIABLES: frozenset[str] = frozenset({"event", "profile", "journey", "now"})

#: Functions of standard CEL (plus operators, which the compiler names with symbols).
#: An expression calling anything else would fail on every evaluation, so validation
#: rejects it up front.
FUNCTIONS: frozenset[str] = frozenset(
    {
        "size", "has", "int", "uint", "double", "string", "bool", "bytes", "dyn", "type",
        "timestamp", "duration", "matches", "contains", "startsWith", "endsWith",
        "exists", "all", "exists_one", "map", "filter",
        "getFullYear", "getMonth", "getDayOfYear", "getDayOfMonth", "getDate",
        "getDayOfWeek", "getHours", "getMinutes", "getSeconds", "getMilliseconds",
        "max", "min",
    }
)  # fmt: skip

_MACRO_BINDING = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_TOKEN = re.compile(
    r"""(?P<str>[rR]?[bB]?("{3}.*?"{3}|'{3}.*?'{3}|"(\\.|[^"\\])*"|'(\\.|[^'\\])*'))"""
    r"|(?P<ident>[A-Za-z_]\w*)|(?P<dot>\.)|(?P<space>\s+)|(?P<other>.)",
    re.S,
)

#: ``_p0 <op> <literal>``: a flattened condition that compares one field path with a
#: number (no ``u`` suffix, no hex), a string without escapes, or a boolean.
_COMPARISON = re.compile(
    r"\s*_p0\s*(?P<op>==|!=|<=|>=|<|>)\s*(?:"
    r"(?P<num>-?\d+(?P<frac>\.\d+)?(?P<exp>[eE][-+]?\d+)?)"
    r"|\"(?P<dq>[^\"\\\n\r]*)\"|'(?P<sq>[^'\\\n\r]*)'|(?P<bool>true|false))\s*"
)
_OPERATORS: Mapping[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip
#: CEL compares an int with a double by converting the int: exact up to 2**53.
_EXACT = 2**53
_INT64 = 2**63

#: A projection tree: key -> subtree, or None for "the whole value".
Tree = dict[str, "Tree | None"]


class ConditionError(ValueError):
    """A condition that does not compile or names something unknown."""

    def __init__(self, message: str, hint: str = "", column: int = 0):
        super().__init__(message)
        self.hint = hint
        self.column = column


#: A field path read as one variable of a flattened program: (variable, root, keys).
Path = tuple[str, str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Comparison:
    """``<field path> <op> <literal>`` (the path is ``_p0`` of the flattened program),
    answered in Python where that gives CEL's answer for certain: a number with a number
    (an int within int64, compared with a double only up to 2**53, where CEL's
    conversion is exact; NaN only for equality - ordering it is CEL's error), an ASCII
    string with a string, a boolean with a boolean. Anything else - another type, a
    string CEL might refuse (a lone surrogate) - gets ``None``: run CEL."""

    op: Callable[[Any, Any], bool]
    literal: bool | int | float | str
    ordering: bool

    def result(self, value: Any) -> bool | None:
        lit = self.literal
        kind = type(value)
        if kind is int:
            certain = -_INT64 <= value < _INT64 and (
                type(lit) is int or (type(lit) is float and -_EXACT <= value <= _EXACT)
            )
        elif kind is float:
            certain = (type(lit) is float or (type(lit) is int and -_EXACT <= lit <= _EXACT)) and (
                value == value or not self.ordering
            )
        elif kind is str:
            certain = type(lit) is str and value.isascii()
        else:
            certain = kind is bool and type(lit) is bool
        return self.op(value, lit) if certain else None


def _comparison(flat_source: str) -> Comparison | None:
    m = _COMPARISON.fullmatch(flat_source)
    if m is None:
        return None
    literal: bool | int | float | str
    if m["num"] is not None:
        if m["frac"] is None and m["exp"] is None:
            literal = int(m["num"])
            if not -_INT64 <= literal < _INT64:
                return None
        else:
            literal = float(m["num"])
    elif m["bool"] is not None:
        literal = m["bool"] == "true"
    else:
        literal = m["dq"] if m["dq"] is not None else m["sq"]
    op = m["op"]
    return Comparison(_OPERATORS[op], literal, op not in ("==", "!="))


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled CEL expression and the parts of its variables it reads.

    ``flat`` is the same expression with each field path (``event.properties.value``)
    read as one top-level variable (``paths``), when the expression has no calls,
    indexes or optional selections; ``None`` otherwise. It is run whenever every path
    leads to a value, and gives what ``program`` gives then: selecting a key of a map
    is all a path does. A path that does not resolve runs ``program`` on the
    projection instead, so a missing key fails exactly as it always did. ``comparison``
    answers ``flat`` in Python when it compares its one path with a literal, for the
    values where that is certain to agree with CEL."""

    source: str
    program: Any = field(repr=False, compare=False)
    reads: Mapping[str, Tree | None] = field(repr=False, compare=False)
    flat: Any = field(default=None, repr=False, compare=False)
    paths: tuple[Path, ...] = field(default=(), repr=False, compare=False)
    comparison: Comparison | None = field(default=None, repr=False, compare=False)

    def evaluate(self, variables: Callable[[str], Any]) -> tuple[bool, str | None]:
        """``(result, error)``; ``variables(name)`` gives the whole value of a variable."""
        program, activation = self.flat, None
        if self.comparison is not None:  # its one path, read once
            value = _resolved(variables, self.paths[0])
            if value is not _MISSING:
                result = self.comparison.result(value)
                if result is not None:
                    return result, None
                activation = {self.paths[0][0]: value}
        elif program is not None:
            activation = self._flat_activation(variables)
        if activation is None:
            program = self.program
            activation = {
                name: variables(name) if tree is None else _project(variables(name), tree)
                for name, tree in self.reads.items()
            }
        try:
            result = program.execute(activation)
        except (KeyError, RuntimeError, TypeError, ValueError, OverflowError) as exc:
            return False, f"{type(exc).__name__}: {exc}"
        if not isinstance(result, bool):
            return False, f"condition gave {type(result).__name__} {result!r}, not a boolean"
        return result, None

    def _flat_activation(self, variables: Callable[[str], Any]) -> dict[str, Any] | None:
        activation = {name: variables(name) for name, tree in self.reads.items() if tree is None}
        for path in self.paths:
            value = _resolved(variables, path)
            if value is _MISSING:
                return None
            activation[path[0]] = value
        return activation


_MISSING: Any = object()


def _resolved(variables: Callable[[str], Any], path: Path) -> Any:
    """The value at the end of ``path``, or ``_MISSING`` where a key is absent."""
    _, root, keys = path
    value = variables(root)
    for key in keys:
        if type(value) is not dict and not isinstance(value, Mapping):
            return _MISSING
        value = value.get(key, _MISSING)
        if value is _MISSING:
            return value
    return value


def compile_condition(source: str, allowed: Collection[str] = VARIABLES) -> Condition:
    """Compile ``source``; ``ConditionError`` says what is wrong and how to fix it."""
    if not isinstance(source, str) or not source.strip():
        raise ConditionError("empty condition", "write a CEL expression, e.g. profile.nps >= 9")
    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError, TypeError) as exc:
        text = str(exc)
        col = re.search(r"<input>:\d+:(\d+):", text)
        detail = text.split("ERROR: <input>:", 1)[-1].split("\n", 1)[0]
        detail = re.sub(r"^\d+:\d+:\s*", "", detail)
        raise ConditionError(
            f"CEL does not compile: {detail}",
            "see https://github.com/google/cel-spec/blob/master/doc/langdef.md",
            int(col.group(1)) if col else 0,
        ) from None
    bound = set(_MACRO_BINDING.findall(source))
    unknown = sorted(set(program.variables()) - set(allowed) - bound)
    if unknown:
        raise ConditionError(
            f"unknown variable(s) {', '.join(unknown)} in CEL condition {source!r}",
            f"conditions may use {', '.join(sorted(allowed))}",
        )
    functions = {
        f for f in program.functions() if f[:1].isalpha() and f not in FUNCTIONS and f != "in"
    }
    if functions:
        raise ConditionError(
            f"unknown function(s) {', '.join(sorted(functions))} in CEL condition {source!r}",
            "only standard CEL functions are available",
        )
    reads: dict[str, Tree | None] = {}
    for name in sorted(set(program.variables()) & set(allowed)):
        reads[name] = _reads(source, name)
    flat, paths = _flattened(source, reads)
    comparison = _comparison(flat.source) if flat is not None else None
    return Condition(source, program, reads, flat, paths, comparison)


def _flattened(source: str, reads: Mapping[str, Tree | None]) -> tuple[Any, tuple[Path, ...]]:
    """``source`` with each field path of a variable replaced by a variable of its own
    (``_p0``, ``_p1``, ...), compiled, and those paths; ``(None, ())`` when the
    expression calls, indexes or optionally selects anything, or reads no path.

    The CEL binding converts every map and map entry of an activation into CEL values
    at ~2.5-5 us each; a scalar variable costs ~1-3 us. ``event.properties.value >= 0``
    ran in 14-15 us with its projection ``{"event": {"properties": {"value": x}}}``."""
    if any(m.lastgroup == "other" and m.group() in "([?" for m in _TOKEN.finditer(source)):
        return None, ()
    names: dict[tuple[str, ...], str] = {}
    pieces: list[str] = []
    done = 0
    for start, end, path in _selections(source, reads):
        if len(path) > 1:
            name = names.setdefault(path, f"_p{len(names)}")
            pieces += [source[done:start], name]
            done = end
    if not names:
        return None, ()
    try:
        flat = cel.compile("".join(pieces) + source[done:])
    except (ValueError, RuntimeError, TypeError):
        return None, ()
    return flat, tuple((name, path[0], path[1:]) for path, name in names.items())


def _reads(source: str, root: str) -> Tree | None:
    """The paths under ``root`` that ``source`` reads, or None when it reads it whole.

    A path is ``root`` followed by ``.field`` selections; it stops at a method call
    (``.size()``), an index (``[...]``) or anything else, and then the value at that
    point is passed whole. Over-including is always safe; this only saves conversions.
    """
    tree: Tree = {}
    for _, _, path in _selections(source, {root}):
        if len(path) == 1:
            return None
        node: Tree = tree
        for k, key in enumerate(path[1:], 2):
            if key in node and node[key] is None:
                break
            if k == len(path):
                node[key] = None
            else:
                child = node.get(key)
                if child is None:
                    child = node[key] = {}
                node = child
    return tree


def _selections(source: str, roots: Collection[str]) -> Iterator[tuple[int, int, tuple[str, ...]]]:
    """Each place ``source`` reads a variable in ``roots``: its span in ``source`` and its
    path, the variable then its ``.field`` selections up to a method call, if any."""
    tokens = [m for m in _TOKEN.finditer(source) if m.lastgroup != "space"]
    for i, m in enumerate(tokens):
        if m.lastgroup != "ident" or m.group() not in roots:
            continue
        if i > 0 and tokens[i - 1].lastgroup == "dot":
            continue  # a field named like a variable
        path, end, j = [m.group()], m.end(), i + 1
        while (
            j + 1 < len(tokens)
            and tokens[j].lastgroup == "dot"
            and tokens[j + 1].lastgroup == "ident"
            and not (j + 2 < len(tokens) and tokens[j + 2].group() == "(")
        ):
            path.append(tokens[j + 1].group())
            end = tokens[j + 1].end()
            j += 2
        yield m.start(), end, tuple(path)


def _project(value: Any, tree: Tree) -> Any:
    if not isinstance(value, Mapping):
        return value
    out = {}
    for key, sub in tree.items():
        if key in value:
            out[key] = value[key] if sub is None else _project(value[key], sub)
    return out
