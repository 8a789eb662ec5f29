"""Schema-valid journey data to a ``JourneyPlan``, with every semantic check.

The schema has already said the document is well-formed; this module checks what a
schema cannot: that step references exist, every step is reachable, no loop can spin
without a wait, split weights add up to 100, CEL compiles and names only known
variables, channels exist. All problems are collected, each pointing at the line of the
offending value.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from orchestrator.journey.conditions import VARIABLES, Condition, ConditionError, compile_condition
from orchestrator.journey.duration import parse_duration
from orchestrator.journey.parse import DocPath, Document
from orchestrator.journey.plan import (
    HOLDOUT,
    ActionStep,
    BranchStep,
    EndStep,
    Entry,
    ExitRule,
    Goal,
    JourneyPlan,
    Migration,
    SplitStep,
    Step,
    UpdateStep,
    Variant,
    WaitForStep,
    WaitStep,
)
from orchestrator.journey.problems import Problem
from orchestrator.records import CHANNELS

#: Steps that hand control back until time passes or an event arrives.
WAITING_STEPS = (WaitStep, WaitForStep)

SEGMENT_VARIABLES = frozenset({"profile", "now"})


def compile_document(
    doc: Document, channels: Collection[str] = CHANNELS
) -> tuple[JourneyPlan | None, list[Problem]]:
    """Compile one schema-valid document. The plan is None when there are problems."""
    c = _Compiler(doc, frozenset(channels))
    plan = c.compile()
    return (plan if not c.problems else None), c.problems


class _Compiler:
    def __init__(self, doc: Document, channels: frozenset[str]):
        self.doc = doc
        self.data: dict[str, Any] = doc.data
        self.channels = channels
        self.problems: list[Problem] = []

    def error(self, path: DocPath, message: str, hint: str = "", *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, hint, key=key))

    def cond(
        self, path: DocPath, source: str | None, allowed: Collection[str] = VARIABLES
    ) -> Condition | None:
        if source is None:
            return None
        try:
            return compile_condition(source, allowed)
        except ConditionError as exc:
            line, col = self.doc.where(path)
            # point into the expression when it sits on the same line as its key
            self.problems.append(
                Problem(self.doc.file, line, col + max(0, exc.column - 1), str(exc), exc.hint)
            )
            return None

    def dur(self, path: DocPath, text: str | None) -> int | None:
        if text is None:
            return None
        try:
            return parse_duration(text)
        except ValueError as exc:  # the schema pattern normally catches this first
            self.error(path, str(exc))
            return None

    def compile(self) -> JourneyPlan:
        d = self.data
        steps_data: dict[str, dict[str, Any]] = d["steps"]
        names = list(steps_data)
        start = d.get("start", names[0])
        if start not in steps_data:
            self._unknown_step(("start",), start, names)
        steps = {name: self._step(name, raw) for name, raw in steps_data.items()}
        self._check_references(steps_data, names)
        if not self.problems:
            self._check_graph(start, steps)
        entry = self._entry(d["entry"])
        exits = tuple(self._exit(i, raw) for i, raw in enumerate(d.get("exit", [])))
        goal = None
        if "goal" in d:
            g = d["goal"]
            goal = Goal(
                g["event"],
                self.cond(("goal", "condition"), g.get("condition")),
                self.dur(("goal", "within"), g.get("within")),
            )
        migrations: dict[int, Migration] = {}
        for i, m in enumerate(d.get("migrations", [])):
            if m["from"] >= d["version"]:
                self.error(
                    ("migrations", i, "from"),
                    f"migration from version {m['from']} in version {d['version']}",
                    "migrate only from older versions",
                )
            for old, new in m["steps"].items():
                if new not in steps_data:
                    self._unknown_step(("migrations", i, "steps", old), new, names)
            migrations[m["from"]] = Migration(m["from"], dict(m["steps"]))
        listens = set()
        for step in steps.values():
            if isinstance(step, WaitForStep):
                listens.add(step.event)
        listens.update(x.event for x in exits if x.event)
        if goal:
            listens.add(goal.event)
        return JourneyPlan(
            id=d["id"],
            version=d["version"],
            name=d["name"],
            description=d.get("description", ""),
            owner=d.get("owner", ""),
            priority=d.get("priority", 0),
            stage=d.get("stage"),
            entry=entry,
            exits=exits,
            goal=goal,
            start=start,
            steps=steps,
            migrations=migrations,
            source=self.doc.file,
            listens=frozenset(listens),
            exit_on_any=any(x.event is None for x in exits),
        )

    # -- parts -------------------------------------------------------------------

    def _entry(self, e: dict[str, Any]) -> Entry:
        reentry = e.get("reentry", "never")
        if reentry == "cooldown" and "cooldown" not in e:
            self.error(
                ("entry", "reentry"),
                "reentry: cooldown needs a `cooldown` duration",
                "e.g. cooldown: 7d",
            )
        if "cooldown" in e and reentry != "cooldown":
            self.error(
                ("entry", "cooldown"),
                f"`cooldown` is ignored with reentry: {reentry}",
                "set reentry: cooldown, or remove cooldown",
                key=True,
            )
        silence = e.get("silence")
        return Entry(
            event=e.get("event"),
            silence_events=tuple(silence.get("events", ())) if silence else (),
            silence_for=self.dur(("entry", "silence", "for"), silence["for"]) if silence else None,
            condition=self.cond(("entry", "condition"), e.get("condition")),
            segment=self.cond(("entry", "segment"), e.get("segment"), SEGMENT_VARIABLES),
            reentry=reentry,
            cooldown=self.dur(("entry", "cooldown"), e.get("cooldown")) or 0,
            max_live=e.get("max_live", 1),
        )

    def _exit(self, i: int, raw: dict[str, Any]) -> ExitRule:
        return ExitRule(raw.get("event"), self.cond(("exit", i, "condition"), raw.get("condition")))

    def _step(self, name: str, s: dict[str, Any]) -> Step:
        p: DocPath = ("steps", name)
        kind = s["type"]
        if kind == "action":
            if ("channel" in s) == ("channels" in s):
                self.error(
                    p,
                    f"step {name!r}: give exactly one of `channel` or `channels`",
                    "channel: email, or channels: [sms, push] for the best available",
                )
            chans = (s["channel"],) if "channel" in s else tuple(s.get("channels", ()))
            field = "channel" if "channel" in s else "channels"
            for i, ch in enumerate(chans):
                if ch not in self.channels:
                    at: DocPath = (*p, "channel") if field == "channel" else (*p, "channels", i)
                    close = difflib.get_close_matches(ch, self.channels, 1)
                    self.error(
                        at,
                        f"step {name!r}: unknown channel {ch!r}",
                        f"did you mean {close[0]!r}?"
                        if close
                        else f"known channels: {', '.join(sorted(self.channels))}",
                    )
            if "offer" in s and "offers" in s:
                self.error(
                    (*p, "offers"),
                    f"step {name!r}: give `offer` or `offers`, not both",
                    "offers: [A, B] lets a bandit choose; offer: A always sends A",
                )
            return ActionStep(
                name,
                chans,
                "channels" in s,
                s.get("template"),
                s.get("offer"),
                dict(s.get("params", {})),
                s.get("priority", self.data.get("priority", 0)),
                self.dur((*p, "expires_in"), s.get("expires_in")),
                s["next"],
                s.get("category", "marketing"),
                s.get("if_capped", "defer"),
                s.get("choose", "first"),
                tuple(s.get("offers", ())),
                s.get("segment_by"),
            )
        if kind == "wait":
            given = [k for k in ("duration", "until_time", "until_trait") if k in s]
            if len(given) != 1:
                self.error(
                    p,
                    f"step {name!r}: a wait takes exactly one of duration, until_time, until_trait",
                    "e.g. duration: 2d",
                )
            if "offset" in s and "until_trait" not in s:
                self.error(
                    (*p, "offset"),
                    f"step {name!r}: offset only applies to until_trait",
                    "remove it",
                    key=True,
                )
            until_time = None
            if "until_time" in s:
                hh, mm = s["until_time"].split(":")
                until_time = int(hh) * 60 + int(mm)
            return WaitStep(
                name,
                self.dur((*p, "duration"), s.get("duration")),
                until_time,
                s.get("until_trait"),
                self.dur((*p, "offset"), s.get("offset")) or 0,
                s["next"],
            )
        if kind == "wait_for":
            return WaitForStep(
                name,
                s["event"],
                self.cond((*p, "condition"), s.get("condition")),
                self.dur((*p, "timeout"), s["timeout"]) or 0,
                s["on_event"],
                s["on_timeout"],
            )
        if kind == "branch":
            cases = []
            for i, case in enumerate(s["cases"]):
                cond = self.cond((*p, "cases", i, "when"), case["when"])
                if cond is not None:
                    cases.append((cond, case["next"]))
            return BranchStep(name, tuple(cases), s["default"])
        if kind == "split":
            return self._split(name, s)
        if kind == "update":
            if "traits" not in s and "stage" not in s:
                self.error(
                    p,
                    f"step {name!r}: an update sets `traits`, `stage` or both",
                    "e.g. stage: retention",
                )
            return UpdateStep(name, dict(s.get("traits", {})), s.get("stage"), s["next"])
        return EndStep(name)

    def _split(self, name: str, s: dict[str, Any]) -> SplitStep:
        p: DocPath = ("steps", name)
        parts = [(v["name"], float(v["weight"]), v["next"]) for v in s["variants"]]
        if "holdout" in s:
            parts.append((HOLDOUT, float(s["holdout"]["weight"]), s["holdout"]["next"]))
        seen: set[str] = set()
        for i, (vname, _, _) in enumerate(parts[: len(s["variants"])]):
            if vname in seen or vname == HOLDOUT:
                self.error(
                    (*p, "variants", i, "name"),
                    f"step {name!r}: variant name {vname!r} is used twice or reserved",
                    "give each variant its own name",
                )
            seen.add(vname)
        total = sum(w for _, w, _ in parts)
        if abs(total - 100.0) > 1e-9:
            self.error(
                (*p, "variants"),
                f"step {name!r}: split weights add up to {total:g}, not 100",
                "adjust the variant (and holdout) weights to total 100",
            )
        variants, upper = [], 0.0
        for vname, weight, nxt in parts:
            upper += weight
            variants.append(Variant(vname, upper, nxt))
        return SplitStep(name, tuple(variants))

    # -- graph -------------------------------------------------------------------

    def _unknown_step(self, path: DocPath, ref: str, names: list[str]) -> None:
        close = difflib.get_close_matches(ref, names, 1)
        self.error(
            path,
            f"unknown step {ref!r}",
            f"did you mean {close[0]!r}?" if close else f"steps are: {', '.join(names)}",
        )

    def _check_references(self, steps: dict[str, dict[str, Any]], names: list[str]) -> None:
        for name, s in steps.items():
            for path, ref in _references(s):
                if ref not in steps:
                    self._unknown_step(("steps", name, *path), ref, names)

    def _check_graph(self, start: str, steps: Mapping[str, Step]) -> None:
        reachable: set[str] = set()
        todo = [start]
        while todo:
            name = todo.pop()
            if name not in reachable:
                reachable.add(name)
                todo.extend(successors(steps[name]))
        for name in steps:
            if name not in reachable:
                self.error(
                    ("steps", name),
                    f"step {name!r} is unreachable from {start!r}",
                    "link to it from another step, or remove it",
                    key=True,
                )
        loop = _instant_loop(steps)
        if loop:
            self.error(
                ("steps", loop[0]),
                f"loop without a wait: {' -> '.join([*loop, loop[0]])}",
                "put a wait or wait_for step in the loop",
                key=True,
            )


def _references(s: dict[str, Any]) -> Iterator[tuple[DocPath, str]]:
    for key in ("next", "on_event", "on_timeout", "default"):
        if key in s:
            yield (key,), s[key]
    for i, case in enumerate(s.get("cases", [])):
        yield ("cases", i, "next"), case["next"]
    for i, v in enumerate(s.get("variants", [])):
        yield ("variants", i, "next"), v["next"]
    if "holdout" in s:
        yield ("holdout", "next"), s["holdout"]["next"]


def successors(step: Step) -> tuple[str, ...]:
    """The steps ``step`` can lead to."""
    if isinstance(step, ActionStep | WaitStep | UpdateStep):
        return (step.next,)
    if isinstance(step, WaitForStep):
        return (step.on_event, step.on_timeout)
    if isinstance(step, BranchStep):
        return (*(n for _, n in step.cases), step.default)
    if isinstance(step, SplitStep):
        return tuple(v.next for v in step.variants)
    return ()


def _instant_loop(steps: Mapping[str, Step]) -> list[str] | None:
    """A cycle through steps that run without waiting, if any (it would spin forever)."""
    instant = {n for n, s in steps.items() if not isinstance(s, WAITING_STEPS)}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for nxt in successors(steps[name]):
            if nxt not in instant:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[name] = 2
        return None

    for name in steps:
        if name in instant and name not in state:
            found = visit(name)
            if found:
                return found
    return None
