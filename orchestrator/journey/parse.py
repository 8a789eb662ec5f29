"""Journey files: YAML in, plain data out, with the line and column of every value.

The language is defined by ``schemas/journey.schema.json`` (JSON Schema 2020-12), the
same file editors use to complete and check journeys; this module applies it, so the
schema cannot drift from what ``rota validate`` accepts. Everything beyond structure
(step references, reachability, CEL, weights) is checked by ``journey.compile``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from orchestrator.journey.problems import Problem

#: A path into the document: mapping keys and sequence indexes.
DocPath = tuple[str | int, ...]
#: Marks for keys are stored under the key's path plus this marker.
KEY = "\x00key"


@dataclass(frozen=True, slots=True)
class Document:
    """One parsed journey file: its data and where each value was written."""

    file: str
    data: Any
    marks: dict[DocPath, tuple[int, int]] = field(repr=False)
    #: False when the document broke the schema: it is then not compiled any further.
    valid: bool = True

    def where(self, path: DocPath, *, key: bool = False) -> tuple[int, int]:
        """(line, column) of the value at ``path`` (of its key with ``key=True``), or of
        the nearest enclosing value that has a mark."""
        if key and (*path, KEY) in self.marks:
            return self.marks[(*path, KEY)]
        p = tuple(path)
        while p not in self.marks and p:
            p = p[:-1]
        return self.marks.get(p, (1, 1))

    def problem(self, path: DocPath, message: str, hint: str = "", *, key: bool = False) -> Problem:
        line, column = self.where(path, key=key)
        return Problem(self.file, line, column, message, hint)


def schema_path() -> Path:
    """Where ``journey.schema.json`` is: bundled in the wheel, else the repo's schemas/."""
    bundled = resources.files("orchestrator").joinpath("_schemas", "journey.schema.json")
    if bundled.is_file():
        return Path(str(bundled))
    return Path(__file__).resolve().parent.parent.parent / "schemas" / "journey.schema.json"


@cache
def _validator() -> Any:
    import jsonschema

    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def read_documents(path: Path) -> tuple[list[Document], list[Problem]]:
    """Parse every YAML document in ``path`` (``---`` separates several journeys)."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(file, 0, 0, f"cannot read file: {exc}", "check the path")]
    return parse_text(text, file)


def parse_text(text: str, file: str = "<string>") -> tuple[list[Document], list[Problem]]:
    """Parse and schema-check journey YAML held in a string."""
    loader = yaml.SafeLoader(text)
    docs: list[Document] = []
    problems: list[Problem] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            marks: dict[DocPath, tuple[int, int]] = {}
            before = len(problems)
            data = _value(loader, node, (), marks, problems, file)
            doc = Document(file, data, marks)
            if len(problems) == before:
                problems.extend(_schema_problems(doc))
            docs.append(Document(file, data, marks, valid=len(problems) == before))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        what = exc.problem or exc.context or "invalid YAML"
        problems.append(
            Problem(file, line, col, f"YAML syntax error: {what}", "check indentation and quoting")
        )
    except yaml.YAMLError as exc:
        problems.append(Problem(file, 0, 0, f"YAML error: {exc}", "check the file is YAML"))
    finally:
        loader.dispose()
    if not docs and not problems:
        problems.append(Problem(file, 1, 1, "empty file: no journey in it", "add a journey"))
    return docs, problems


def _value(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: DocPath,
    marks: dict[DocPath, tuple[int, int]],
    problems: list[Problem],
    file: str,
) -> Any:
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(loader, key_node)
            kline, kcol = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            if not isinstance(key, str):
                problems.append(
                    Problem(file, kline, kcol, f"key {key!r} is not a string", "quote the key")
                )
                key = str(key)
            if key in out:
                problems.append(
                    Problem(file, kline, kcol, f"duplicate key {key!r}", "remove one of them")
                )
            marks[(*path, key, KEY)] = (kline, kcol)
            out[key] = _value(loader, value_node, (*path, key), marks, problems, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _value(loader, item, (*path, i), marks, problems, file)
            for i, item in enumerate(node.value)
        ]
    return _scalar(loader, node)


def _scalar(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    value = loader.construct_object(node, deep=True)
    if not isinstance(node, yaml.ScalarNode):
        return value
    if (
        (not isinstance(value, str | int | float | bool) and value is not None)
        or (isinstance(value, int | float) and ":" in node.value)
        or (isinstance(value, bool) and node.value.lower() not in ("true", "false"))
    ):
        # YAML 1.1 reads 09:00 as the base-60 number 540, 2026-01-31 as a date and
        # yes/no/on/off as booleans; journeys mean the text (as YAML 1.2 does)
        value = node.value
    return value


def _schema_problems(doc: Document) -> Iterator[Problem]:
    errors = sorted(_validator().iter_errors(doc.data), key=lambda e: list(map(str, e.path)))
    for error in errors:
        yield _explain(doc, error)


def _explain(doc: Document, error: Any) -> Problem:
    path: DocPath = tuple(error.absolute_path)
    where = "/".join(map(str, path)) or "journey"
    kind = error.validator
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in error.schema.get("properties", {})]
        hint = f"allowed here: {', '.join(allowed)}" if allowed else ""
        if path[:1] == ("steps",) and len(path) == 2 and isinstance(error.instance, dict):
            hint = f"a {error.instance.get('type')} step takes: {', '.join(allowed)}"
        return doc.problem(
            (*path, extra[0]) if extra else path,
            f"{where}: unknown field {extra[0]!r}" if extra else f"{where}: unknown field",
            hint,
            key=True,
        )
    if kind == "required":
        return doc.problem(path, f"{where}: {error.message}", "add it")
    if kind == "pattern" and "ms|s|m|h|d|w" in error.validator_value:
        return doc.problem(
            path, f"{where}: {error.instance!r} is not a duration", "use e.g. 30m, 48h, 3d, 1d12h"
        )
    if kind == "pattern":
        return doc.problem(
            path,
            f"{where}: {error.instance!r} is not a valid name",
            f"it must match {error.validator_value}",
        )
    if kind == "enum":
        return doc.problem(
            path,
            f"{where}: {error.instance!r} is not allowed",
            f"use one of: {', '.join(map(str, error.validator_value))}",
        )
    if kind == "oneOf" and path == ("entry",):
        return doc.problem(
            path,
            "entry: give exactly one of `event` (a trigger) or `silence` (inactivity)",
            "e.g. entry: {event: Signed Up}",
        )
    if kind == "type":
        return doc.problem(
            path,
            f"{where}: {error.instance!r} is not of type {error.validator_value}",
            "fix the value's type",
        )
    return doc.problem(path, f"{where}: {error.message}", "see schemas/journey.schema.json")
