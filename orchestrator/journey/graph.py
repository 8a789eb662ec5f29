"""A journey drawn as a diagram a marketer can read: Mermaid or Graphviz DOT text.

Journeys are code, reviewed as YAML; the people who own the customer experience think
in boxes and arrows. ``diagram`` turns a compiled ``JourneyPlan`` (the same model the
worker runs, so the picture cannot disagree with the engine) into a neutral
``Diagram``: one node per step saying what it does, a start node for the entry, a note
for the goal and exits, one edge per way a step can continue, labelled with its
condition, event, timeout or split weight. ``to_mermaid`` and ``to_dot`` only encode
that diagram, so both formats always show the same thing.

Live numbers are optional: a ``Funnel`` (``orchestrator.funnel``: the workers' funnel
counters for one journey) is shown on the nodes. The counters are per journey id,
summed over versions.

Pure: text and values in, text out. Reading files, scraping workers and running
Graphviz are the CLI's job (``rota journeys graph``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from orchestrator.funnel import Funnel
from orchestrator.journey.compile import successors
from orchestrator.journey.conditions import Condition
from orchestrator.journey.duration import format_duration
from orchestrator.journey.plan import (
    HOLDOUT,
    ActionStep,
    BranchStep,
    Entry,
    JourneyPlan,
    SplitStep,
    Step,
    UpdateStep,
    WaitForStep,
    WaitStep,
    step_type,
)
from orchestrator.records import Scalar

Kind = Literal["entry", "action", "wait", "wait_for", "branch", "split", "update", "end", "note"]


@dataclass(frozen=True, slots=True)
class Node:
    """``lines`` are plain text (the renderers escape them); the first is the title."""

    id: str
    kind: Kind
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    label: str = ""


@dataclass(frozen=True, slots=True)
class Diagram:
    """What both formats draw. ``note`` (if any) is attached to ``start``."""

    title: str
    start: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    note: Node | None = None


# -- the diagram --------------------------------------------------------------------


def diagram(plan: JourneyPlan, funnel: Funnel | None = None) -> Diagram:
    """The diagram of ``plan``, with ``funnel`` counts on the nodes when given.

    Nodes and edges follow the order the journey file lists its steps, so the same file
    always gives the same text (diffs of a checked-in diagram stay small).
    """
    ids = _step_ids(plan.steps)
    entry = Node("entry", "entry", _entry_lines(plan.entry, funnel))
    nodes = [entry]
    edges = [Edge(entry.id, ids[plan.start])]
    for name, step in plan.steps.items():
        lines = [name, *_step_lines(step)]
        if funnel is not None:
            lines.append(f"{funnel.steps.get(name, 0):,} reached")
        nodes.append(Node(ids[name], step_type(step), tuple(lines)))
        labels = _edge_labels(step)
        edges.extend(
            Edge(ids[name], ids[target], label)
            for target, label in zip(successors(step), labels, strict=True)
        )
    note_lines = _note_lines(plan, funnel)
    note = Node("rules", "note", note_lines) if note_lines else None
    return Diagram(
        title=f"{plan.name} ({plan.id} v{plan.version})",
        start=entry.id,
        nodes=tuple(nodes),
        edges=tuple(edges),
        note=note,
    )


def _step_ids(steps: Mapping[str, Step]) -> dict[str, str]:
    """Node ids safe in both formats. Step names may hold ``-`` (an edge in Mermaid) or
    be ``end`` (a Mermaid keyword), so every id is ``step_`` plus the name made of word
    characters, numbered on the rare clash."""
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for name in steps:
        base = "step_" + re.sub(r"\W", "_", name)
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}_{n}"
        ids[name] = candidate
        taken.add(candidate)
    return ids


def _entry_lines(entry: Entry, funnel: Funnel | None) -> tuple[str, ...]:
    if entry.event is not None:
        lines = [f"Enters on {entry.event}"]
    else:
        quiet = ", ".join(entry.silence_events) if entry.silence_events else "any event"
        lines = [f"Enters after {format_duration(entry.silence_for or 0)} without {quiet}"]
    if entry.condition is not None:
        lines.append(f"if {_cel(entry.condition)}")
    if entry.segment is not None:
        lines.append(f"segment: {_cel(entry.segment)}")
    if entry.reentry == "never":
        lines.append("once per customer")
    elif entry.reentry == "cooldown":
        lines.append(f"again {format_duration(entry.cooldown)} after leaving")
    else:
        lines.append("every time")
    if entry.max_live > 1:
        lines.append(f"up to {entry.max_live} at once")
    if funnel is not None:
        lines.append(f"{funnel.entered:,} entered")
    return tuple(lines)


def _step_lines(step: Step) -> list[str]:
    if isinstance(step, ActionStep):
        via = " or ".join(step.channels)
        channel = f"best of {via}" if step.best_of and len(step.channels) > 1 else via
        lines = [f"send {channel}" + (f": {step.template}" if step.template else "")]
        if step.offer:
            lines.append(f"offer {step.offer}")
        return lines
    if isinstance(step, WaitStep):
        if step.duration is not None:
            return [f"wait {format_duration(step.duration)}"]
        if step.until_time is not None:
            hours, minutes = divmod(step.until_time, 60)
            return [f"wait until {hours:02d}:{minutes:02d} local time"]
        shift = ""
        if step.offset:
            shift = (" +" if step.offset > 0 else " ") + format_duration(step.offset)
        return [f"wait until the date in {step.until_trait}{shift}"]
    if isinstance(step, WaitForStep):
        lines = [f"wait for {step.event}", f"up to {format_duration(step.timeout)}"]
        if step.condition is not None:
            lines.append(f"if {_cel(step.condition)}")
        return lines
    if isinstance(step, BranchStep):
        return ["branch: first match wins"]
    if isinstance(step, SplitStep):
        return ["split: A/B test"]
    if isinstance(step, UpdateStep):
        lines = [f"set {key} = {_scalar(value)}" for key, value in step.traits.items()]
        if step.stage:
            lines.append(f"set stage {step.stage}")
        return lines
    return ["end"]


def _edge_labels(step: Step) -> tuple[str, ...]:
    """One label per entry of ``successors(step)``, in the same order."""
    if isinstance(step, WaitForStep):
        return (step.event, f"no {step.event} in {format_duration(step.timeout)}")
    if isinstance(step, BranchStep):
        return (*(f"if {_cel(cond)}" for cond, _ in step.cases), "otherwise")
    if isinstance(step, SplitStep):
        labels, lower = [], 0.0
        for v in step.variants:
            weight = f"{v.upper - lower:.6g}%"
            labels.append(f"holdout {weight}" if v.name == HOLDOUT else f"{v.name} {weight}")
            lower = v.upper
        return tuple(labels)
    return ("",) * len(successors(step))


def _note_lines(plan: JourneyPlan, funnel: Funnel | None) -> tuple[str, ...]:
    lines = []
    if plan.goal is not None:
        within = f" within {format_duration(plan.goal.within)}" if plan.goal.within else ""
        cond = f" if {_cel(plan.goal.condition)}" if plan.goal.condition else ""
        lines.append(f"Goal: {plan.goal.event}{within}{cond}")
    for rule in plan.exits:
        cond = _cel(rule.condition) if rule.condition else ""
        if rule.event is None:
            lines.append(f"Exit when {cond}")
        else:
            lines.append(f"Exit on {rule.event}" + (f" if {cond}" if cond else ""))
    if funnel is not None:
        rate = f" ({funnel.converted / funnel.entered:.1%})" if funnel.entered else ""
        lines.append(f"{funnel.converted:,} converted{rate}")
        lines.append(f"{funnel.exited:,} exited, {funnel.completed:,} completed")
    return tuple(lines)


def _cel(condition: Condition) -> str:
    """The expression as written (the renderers put it on one line)."""
    return condition.source


def _scalar(value: Scalar) -> str:
    return json.dumps(value, ensure_ascii=False)


# -- Mermaid ------------------------------------------------------------------------

#: Node shapes: (opening, closing) around the quoted label.
_MERMAID_SHAPES: Mapping[Kind, tuple[str, str]] = {
    "entry": ("([", "])"),
    "action": ("[", "]"),
    "wait": ("(", ")"),
    "wait_for": ("{{", "}}"),
    "branch": ("{", "}"),
    "split": ("[/", "\\]"),
    "update": ("[[", "]]"),
    "end": ("([", "])"),
    "note": (">", "]"),
}

#: Fill and stroke per kind, shared by both formats.
_COLOURS: Mapping[Kind, tuple[str, str]] = {
    "entry": ("#d8f3dc", "#2d6a4f"),
    "action": ("#dbeafe", "#1d4ed8"),
    "wait": ("#fef3c7", "#b45309"),
    "wait_for": ("#fef3c7", "#b45309"),
    "branch": ("#ede9fe", "#6d28d9"),
    "split": ("#ede9fe", "#6d28d9"),
    "update": ("#e0f2f1", "#00695c"),
    "end": ("#e5e7eb", "#374151"),
    "note": ("#fffbeb", "#a16207"),
}

#: What Mermaid would not show as written inside a quoted label, as its ``#code;``
#: entities: ``"`` ends the label, ``#`` starts an entity, ``& < >`` are HTML, ``\\n``
#: is a line break, and a label opening with a backtick is Markdown. One pass replaces
#: them all, so the entities' own ``#`` are not escaped again.
_MERMAID_ENTITIES: Mapping[str, str] = {
    "#": "#35;",
    '"': "#quot;",
    "&": "#amp;",
    "<": "#lt;",
    ">": "#gt;",
    "\\": "#92;",
    "`": "#96;",
}
_MERMAID_SPECIAL = re.compile("|".join(re.escape(c) for c in _MERMAID_ENTITIES))


def to_mermaid(d: Diagram) -> str:
    """A Mermaid ``flowchart`` (GitHub, GitLab and most wikis render it in a
    ```` ```mermaid ```` block)."""
    out = ["---", f"title: {json.dumps(d.title)}", "---", "flowchart TD"]
    nodes = [*d.nodes, d.note] if d.note else list(d.nodes)
    for node in nodes:
        opening, closing = _MERMAID_SHAPES[node.kind]
        label = "<br/>".join(_mermaid_text(line) for line in node.lines)
        out.append(f'    {node.id}{opening}"{label}"{closing}:::{_mermaid_class(node.kind)}')
    for edge in d.edges:
        label = f'|"{_mermaid_text(edge.label)}"|' if edge.label else ""
        out.append(f"    {edge.source} -->{label} {edge.target}")
    if d.note:
        out.append(f"    {d.start} -.- {d.note.id}")
    for kind in sorted({node.kind for node in nodes}):
        fill, stroke = _COLOURS[kind]
        out.append(f"    classDef {_mermaid_class(kind)} fill:{fill},stroke:{stroke},color:#111827")
    return "\n".join(out) + "\n"


def _mermaid_text(text: str) -> str:
    return _MERMAID_SPECIAL.sub(lambda m: _MERMAID_ENTITIES[m.group()], _one_line(text))


def _mermaid_class(kind: Kind) -> str:
    """``end`` is a Mermaid keyword, so class names are prefixed."""
    return f"rota_{kind}"


# -- Graphviz -----------------------------------------------------------------------

_DOT_SHAPES: Mapping[Kind, str] = {
    "entry": 'shape=box, style="rounded,filled,bold"',
    "action": "shape=box, style=filled",
    "wait": 'shape=box, style="rounded,filled"',
    "wait_for": "shape=hexagon, style=filled",
    "branch": "shape=diamond, style=filled",
    "split": "shape=invtrapezium, style=filled",
    "update": "shape=component, style=filled",
    "end": 'shape=box, style="rounded,filled", peripheries=2',
    "note": "shape=note, style=filled",
}


def to_dot(d: Diagram) -> str:
    """Graphviz DOT (``dot -Tsvg`` or ``-Tpng`` draws it)."""
    out = [
        "digraph journey {",
        f"    label={_dot_string(d.title)};",
        "    labelloc=t;",
        '    fontname="Helvetica";',
        "    rankdir=TB;",
        "    nodesep=0.6;",
        '    node [fontname="Helvetica", fontsize=11];',
        '    edge [fontname="Helvetica", fontsize=10];',
    ]
    nodes = [*d.nodes, d.note] if d.note else list(d.nodes)
    for node in nodes:
        fill, stroke = _COLOURS[node.kind]
        label = "\\n".join(_dot_escape(line) for line in node.lines)
        out.append(
            f'    "{node.id}" [label="{label}", {_DOT_SHAPES[node.kind]}, '
            f'fillcolor="{fill}", color="{stroke}"];'
        )
    for edge in d.edges:
        label = f" [label={_dot_string(edge.label)}]" if edge.label else ""
        out.append(f'    "{edge.source}" -> "{edge.target}"{label};')
    if d.note:
        out.append(f'    "{d.start}" -> "{d.note.id}" [style=dotted, arrowhead=none];')
        out.append(f'    {{ rank=same; "{d.start}"; "{d.note.id}"; }}')
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_string(text: str) -> str:
    return f'"{_dot_escape(text)}"'


def _dot_escape(text: str) -> str:
    """Inside a DOT string a backslash starts an escape (``\\n``, ``\\N``, ...), so it is
    doubled; Graphviz reads HTML entities in labels, so ``&`` is one."""
    return _one_line(text).replace("&", "&amp;").replace("\\", "\\\\").replace('"', '\\"')


def _one_line(text: str) -> str:
    """Line breaks inside a value would break either format; labels break only between
    lines."""
    return " ".join(text.split())
