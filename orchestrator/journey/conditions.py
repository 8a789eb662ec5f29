"""Journey conditions: CEL expressions compiled once per journey version.

Conditions run through the ``common-expression-language`` package (Rust): safe, not
Turing-complete, no Python ``eval``. Converting Python values into CEL values costs
microseconds per map entry, far more than evaluating the expression, so each compiled
condition remembers which parts of its variables it reads (``event.properties.total``
reads ``event -> properties -> total``) and is handed only those - where it can, as
one variable per field path (``Condition.flat``). A missing key is not an error in the
projection: the expression then sees the key absent, exactly as it would on the whole
value (``has(event.properties.coupon)`` stays false).

Evaluation never raises: a condition that fails at run time (a missing key, a type
mismatch) is *false*, and the error text is returned for traces.
"""

from __future__ import annotations

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
class Condition:
    """A compiled CEL expression and the parts of its variables it reads.

    ``flat`` is the same expression with each field path (``event.properties.value``)
    read as one top-level variable (``paths``), when the expression has no calls,
    indexes or optional selections; ``None`` otherwise. It is run whenever every path
    leads to a value, and gives what ``program`` gives then: selecting a key of a map
    is all a path does. A path that does not resolve runs ``program`` on the
    projection instead, so a missing key fails exactly as it always did."""

    source: str
    program: Any = field(repr=False, compare=False)
    reads: Mapping[str, Tree | None] = field(repr=False, compare=False)
    flat: Any = field(default=None, repr=False, compare=False)
    paths: tuple[Path, ...] = field(default=(), repr=False, compare=False)

    def evaluate(self, variables: Callable[[str], Any]) -> tuple[bool, str | None]:
        """``(result, error)``; ``variables(name)`` gives the whole value of a variable."""
        program = self.flat
        activation = self._flat_activation(variables) if program is not None else None
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
        for name, root, keys in self.paths:
            value = variables(root)
            for key in keys:
                if not isinstance(value, Mapping) or key not in value:
                    return None
                value = value[key]
            activation[name] = value
        return activation


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
    return Condition(source, program, reads, flat, paths)


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
