"""``rota simulate``: run journeys offline over recorded touchpoints.

The same decision core the worker runs, over a JSON-lines file of touchpoints (the JSON
form of ``schemas/README.md``), in file order. Time is simulated: before an event is
decided, every timer due at or before its ``occurred_at`` fires (in due order, then in
the order set), with ``now`` = the timer's due time; at the end, timers due up to
``--until`` fire too. Output, one line per action, then a funnel per journey version (and,
with ``--report``, the report `rota report` prints, over the simulated run).

``Simulation`` is the engine without the command line; tests drive it directly.
"""

from __future__ import annotations

import argparse
import heapq
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import orjson

from orchestrator.analytics import JourneyTransition, transitions
from orchestrator.core import bandit
from orchestrator.core.decide import Decision, decide
from orchestrator.core.decision import FunnelEvent, TimerFired
from orchestrator.core.state import CustomerState
from orchestrator.journey.catalog import Catalog, load_catalog
from orchestrator.journey.plan import SplitStep
from orchestrator.journey.policy_file import load_policy
from orchestrator.journey.problems import JourneyValidationError
from orchestrator.records import CHANNELS, NextBestAction, Touchpoint, iso, parse_time
from orchestrator.settings import Settings


@dataclass
class Simulation:
    """Customer states, pending timers and everything decided so far, in memory."""

    catalog: Catalog
    trace_customer: str | None = None
    on_decision: Callable[[str, str, Decision], None] | None = None
    states: dict[str, CustomerState] = field(default_factory=dict)
    actions: list[NextBestAction] = field(default_factory=list)
    funnel: list[FunnelEvent] = field(default_factory=list)
    #: What a worker would publish on the analytics topic (``orchestrator.report`` reads it).
    transitions: list[JourneyTransition] = field(default_factory=list)
    clock: int | None = None
    #: Offer statistics: one set for every customer (a worker keeps one per partition).
    bandits: dict[str, tuple[int, int]] = field(default_factory=dict)
    _timers: list[tuple[int, int, str, str]] = field(default_factory=list)
    _seq: int = 0

    def feed(self, tp: Touchpoint) -> Decision:
        """Fire the timers due by ``tp.occurred_at``, then decide ``tp``."""
        self.advance_to(tp.occurred_at)
        customer = tp.subject
        decision = self._decide(customer, tp, f"event {tp.name!r} ({tp.event_id})")
        self.clock = max(self.clock or tp.occurred_at, tp.occurred_at)
        return decision

    def advance_to(self, until: int) -> None:
        """Fire every pending timer due at or before ``until``."""
        while self._timers and self._timers[0][0] <= until:
            due, _, customer, timer_id = heapq.heappop(self._timers)
            fired = TimerFired(customer, timer_id, due, now=due)
            self._decide(customer, fired, f"timer {timer_id}")
            self.clock = max(self.clock or due, due)

    def _decide(self, customer: str, event: Touchpoint | TimerFired, what: str) -> Decision:
        traced = customer == self.trace_customer
        decision = decide(
            self.states.get(customer),
            event,
            self.catalog,
            customer_id=customer,
            trace=traced,
            bandits=self.bandits,
        )
        self.states[customer] = decision.state
        bandit.learn(self.bandits, decision.bandit_pulls, decision.bandit_wins)
        self.actions.extend(decision.actions)
        self.funnel.extend(decision.funnel)
        if decision.funnel:
            if isinstance(event, TimerFired):
                at, trigger = event.now, None
            else:
                at, trigger = event.occurred_at, event.event_id
            self.transitions.extend(transitions(customer, decision.funnel, at, trigger))
        for timer in decision.timers_set:
            self._seq += 1
            heapq.heappush(
                self._timers, (timer.due_at, self._seq, timer.customer_id, timer.timer_id)
            )
        if self.on_decision is not None:
            self.on_decision(customer, what, decision)
        return decision

    def waiting(self) -> Counter[tuple[str, int]]:
        """Live instances per (journey, version): customers still inside."""
        return Counter((i.journey_id, i.version) for s in self.states.values() for i in s.instances)


def format_action(a: NextBestAction) -> str:
    """One stable, readable line per action."""
    parts = [
        iso(a.created_at),
        a.customer_id,
        f"{a.journey_id}@{a.journey_version}",
        a.step,
        a.channel,
        a.template or "-",
    ]
    if a.offer:
        parts.append(f"offer={a.offer}")
    if "variant" in a.payload:
        parts.append(f"variant={a.payload['variant']}")
    parts.append(f"id={a.action_id}")
    return "  ".join(parts)


def funnel_report(sim: Simulation) -> list[str]:
    """Per journey version: entered, per-step counts, converted, exited, completed,
    still waiting, and per-variant conversion for splits."""
    counts: dict[tuple[str, int], Counter[str]] = defaultdict(Counter)
    assigned: dict[tuple[str, int], Counter[str]] = defaultdict(Counter)
    converted_by: dict[tuple[str, int], Counter[str]] = defaultdict(Counter)
    for f in sim.funnel:
        key = (f.journey_id, f.journey_version)
        if f.kind == "step":
            counts[key][f"step:{f.step}"] += 1
            plan = sim.catalog.plan(*key)
            if plan and isinstance(plan.steps.get(f.step or ""), SplitStep) and f.variant:
                assigned[key][f.variant] += 1
        else:
            counts[key][f.kind] += 1
            if f.kind == "converted" and f.variant:
                converted_by[key][f.variant] += 1
    waiting = sim.waiting()
    lines: list[str] = []
    for key in sorted(set(counts) | set(waiting)):
        c = counts[key]
        plan = sim.catalog.plan(*key)
        goal = f" (goal: {plan.goal.event})" if plan and plan.goal else ""
        lines.append(f"funnel {key[0]}@{key[1]}{goal}")
        entered = c["entered"]
        lines.append(f"  {'entered':<24}{entered:>7}")
        for name in plan.steps if plan else ():
            lines.append(f"  {'  ' + name:<24}{c['step:' + name]:>7}")
        rate = f"  ({c['converted'] / entered:.1%})" if entered else ""
        lines.append(f"  {'converted':<24}{c['converted']:>7}{rate}")
        for kind in ("exited", "completed"):
            lines.append(f"  {kind:<24}{c[kind]:>7}")
        lines.append(f"  {'still waiting':<24}{waiting[key]:>7}")
        for variant, n in sorted(assigned[key].items()):
            won = converted_by[key][variant]
            lines.append(f"  variant {variant:<16}{n:>7}  converted {won} ({won / n:.1%})")
    return lines


def read_touchpoints(
    lines: Iterable[str], source: str
) -> Iterable[tuple[int, Touchpoint | None, str | None]]:
    """(line number, touchpoint or None, error) for each non-blank line."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            tp = Touchpoint.from_json(orjson.loads(line))
            tp.subject  # noqa: B018 - raises when the touchpoint names no one
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            yield n, None, f"{source}:{n}: bad touchpoint: {exc}"
            continue
        yield n, tp, None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="rota simulate",
        description="Run journeys offline over a JSON-lines file of touchpoints.",
    )
    parser.add_argument("--journeys", required=True, action="append", help="file or directory")
    parser.add_argument("--events", required=True, help="JSON lines, one touchpoint each")
    parser.add_argument("--until", help="after the last event, fire timers due up to this time")
    parser.add_argument("--trace", metavar="CUSTOMER", help="explain every decision for them")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad line")
    parser.add_argument("--channel", action="append", default=[], help="extra channel name")
    parser.add_argument(
        "--policy",
        type=Path,
        help="contact policy file (default: ROTA_POLICY, else policy.yaml if present)",
    )
    parser.add_argument(
        "--report", action="store_true", help="then the report `rota report` would print"
    )
    args = parser.parse_args(argv)
    out = sys.stdout
    channels = (*CHANNELS, *args.channel)
    try:
        catalog = load_catalog(args.journeys, channels)
        policy = load_policy(args.policy or Settings.from_env().policy_file(), channels)
    except JourneyValidationError as exc:
        print(exc, file=sys.stderr)
        print(f"rota simulate: {len(exc.problems)} problem(s) in the journeys", file=sys.stderr)
        return 2
    catalog = catalog.with_policy(policy)
    until = None
    if args.until:
        try:
            until = parse_time(args.until)
        except ValueError as exc:
            print(f"rota simulate: --until: {exc}", file=sys.stderr)
            return 2
    sim = Simulation(catalog, trace_customer=args.trace, on_decision=_printer(out))
    bad = 0
    try:
        handle = Path(args.events).open(encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        print(f"rota simulate: {exc}", file=sys.stderr)
        return 2
    with handle:
        for _, tp, error in read_touchpoints(handle, args.events):
            if tp is None:
                bad += 1
                print(error, file=sys.stderr)
                if args.strict:
                    return 1
                continue
            sim.feed(tp)
    if until is not None:
        sim.advance_to(until)
    out.write("\n")
    for line in funnel_report(sim):
        out.write(line + "\n")
    if args.report:
        from orchestrator import report

        out.write("\n" + report.to_text(report.build(sim.transitions, sim.actions)))
    if bad:
        print(f"rota simulate: {bad} bad input line(s) skipped", file=sys.stderr)
        return 1
    return 0


def _printer(out: TextIO) -> Callable[[str, str, Decision], None]:
    """Print each decision's actions as it happens, preceded by its reasons when traced."""

    def show(customer: str, what: str, decision: Decision) -> None:
        if decision.trace:
            out.write(f"# {customer}: {what}\n")
            for line in decision.trace:
                out.write(f"#   {line}\n")
        for action in decision.actions:
            out.write(format_action(action) + "\n")

    return show
