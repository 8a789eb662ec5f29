"""Journey measurement: funnels, split tests against their holdout, and multi-touch
attribution of conversions to channels, from the records the worker publishes.

Pure: journey transitions (``orchestrator/analytics.py``) and next-best-actions in, a
``Report`` out; no Kafka, no clock. ``rota report`` (``orchestrator/report_cli.py``)
reads the topics and prints it; tests and ``rota simulate --report`` feed it directly.

The definitions (the README's "Reports" section says the same for users):

- **The unit is the journey instance** (one entry of one customer; with
  ``reentry: never`` that is the customer). Records arrive at least once, so everything
  is counted per distinct instance and a replayed record changes nothing.
- **Cohort**: the instances whose ``entered`` record was read and, with a window, whose
  entry time falls in it. Steps, arms and conversions count cohort instances only,
  whenever they happened, so a rate is never above 1 and a window compares like with
  like (an instance that entered last week and converted today counts for last week).
- **Arms**: an instance is in arm V of split S when its step record at S carries V (the
  first record of the instance with that variant). Per arm: instances assigned,
  converted, rate.
- **Lift over the holdout**: the difference of conversion rates, arm minus holdout, with
  a 95 % confidence interval from the unpooled (Wald) standard error, and the two-sided
  p-value of the pooled two-proportion z-test; ``relative`` is the difference over the
  holdout's rate. Without a holdout arm there is no lift.
- **Attribution**: the touches of a conversion are the actions sent by its instance
  (``NextBestAction.instance_id``; all of the customer's actions from the journey since
  entry when a record has no instance id) created at or before the conversion, in time
  order (ties by action id). Each touched conversion hands out exactly one conversion:
  first touch (all to the first), last touch (all to the last), linear (equal shares),
  time decay (weight ``2 ** -(age / half_life)``, age = conversion time - action time,
  normalised; default half-life 7 days). Conversions with no touch (a holdout's, say)
  are counted apart. Touches are what Rota decided (``created_at``), delivered or not.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from statistics import NormalDist
from typing import Any

from orchestrator.analytics import CONVERTED, ENDINGS, ENTERED, STEP, JourneyTransition
from orchestrator.journey.duration import format_duration, parse_duration
from orchestrator.journey.plan import HOLDOUT
from orchestrator.records import NextBestAction, iso, parse_time

FIRST_TOUCH = "first_touch"
LAST_TOUCH = "last_touch"
LINEAR = "linear"
TIME_DECAY = "time_decay"
MODELS = (FIRST_TOUCH, LAST_TOUCH, LINEAR, TIME_DECAY)
DEFAULT_HALF_LIFE_MS = 7 * 86_400_000
CONFIDENCE = 0.95


# -- the report ----------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Which entries form the cohort: ``start <= entered_at < end`` (either open)."""

    start: int | None = None
    end: int | None = None

    def contains(self, at: int) -> bool:
        return (self.start is None or at >= self.start) and (self.end is None or at < self.end)


def parse_window(text: str, now: int) -> Window:
    """``30d`` (entries in the 30 days up to ``now``) or ``FROM..UNTIL`` (ISO-8601 times
    or epoch ms, either side may be left empty); ``ValueError`` saying so otherwise."""
    text = text.strip()
    if ".." not in text:
        try:
            span = parse_duration(text)
        except ValueError:
            raise ValueError(
                f"not a window: {text!r} (use a duration such as 7d, or FROM..UNTIL with "
                "ISO-8601 times, e.g. 2026-11-01..2026-12-01)"
            ) from None
        if span <= 0:
            raise ValueError(f"a window must be a positive duration, got {text!r}")
        return Window(now - span, None)
    start_text, _, end_text = text.partition("..")
    start = _window_time(start_text) if start_text.strip() else None
    end = _window_time(end_text) if end_text.strip() else None
    if start is not None and end is not None and end <= start:
        raise ValueError(f"window {text!r} ends before it starts")
    return Window(start, end)


def _window_time(text: str) -> int:
    text = text.strip()
    return parse_time(int(text) if text.isdigit() else text)


@dataclass(frozen=True)
class Lift:
    """An arm against the holdout. Rates are fractions (0.05 is 5 %)."""

    difference: float
    ci_low: float
    ci_high: float
    relative: float | None
    z: float
    p_value: float


@dataclass(frozen=True)
class Arm:
    variant: str
    entered: int
    converted: int
    rate: float
    #: None for the holdout itself and for splits without one.
    lift: Lift | None = None


@dataclass(frozen=True)
class Split:
    step: str
    arms: tuple[Arm, ...]
    #: The arm the others are measured against (``holdout``), if the split has one.
    control: str | None


@dataclass(frozen=True)
class StepCount:
    step: str
    reached: int
    rate: float


@dataclass(frozen=True)
class Attribution:
    model: str
    #: Conversions credited per channel (every channel that touched a conversion, 0
    #: included), most credited first; the values sum to the touched conversions.
    channels: Mapping[str, float]


@dataclass(frozen=True)
class JourneyReport:
    journey_id: str
    versions: tuple[int, ...]
    entered: int
    converted: int
    exited: int
    completed: int
    #: Entered and not ended (yet): still waiting or acting.
    active: int
    conversion_rate: float
    #: In journey order, as the records show it (see ``_journey_order``).
    steps: tuple[StepCount, ...]
    splits: tuple[Split, ...]
    attribution: tuple[Attribution, ...]
    touched_conversions: int
    untouched_conversions: int


@dataclass(frozen=True)
class Report:
    journeys: tuple[JourneyReport, ...]
    window: Window = field(default_factory=Window)
    half_life_ms: int = DEFAULT_HALF_LIFE_MS


# -- statistics ----------------------------------------------------------------------


def two_proportion_test(
    converted: int,
    entered: int,
    control_converted: int,
    control_entered: int,
    confidence: float = CONFIDENCE,
) -> Lift | None:
    """Difference of two conversion rates with its confidence interval and p-value; None
    when an arm is empty (nothing to compare)."""
    if entered <= 0 or control_entered <= 0:
        return None
    p1, p0 = converted / entered, control_converted / control_entered
    difference = p1 - p0
    se = math.sqrt(p1 * (1 - p1) / entered + p0 * (1 - p0) / control_entered)
    margin = NormalDist().inv_cdf(1 - (1 - confidence) / 2) * se
    pooled = (converted + control_converted) / (entered + control_entered)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / entered + 1 / control_entered))
    # A pooled rate of 0 or 1 means both arms are all-or-nothing alike: no difference.
    z = difference / se_pooled if se_pooled > 0 else 0.0
    return Lift(
        difference=difference,
        ci_low=difference - margin,
        ci_high=difference + margin,
        relative=difference / p0 if p0 > 0 else None,
        z=z,
        p_value=math.erfc(abs(z) / math.sqrt(2)),
    )


def attribution_weights(
    touch_times: Sequence[int], converted_at: int, model: str, half_life_ms: int
) -> list[float]:
    """Each touch's share of one conversion under ``model``; touches in time order.
    The shares sum to 1 (an empty list when there is no touch)."""
    n = len(touch_times)
    if n == 0:
        return []
    if model == FIRST_TOUCH:
        return [1.0] + [0.0] * (n - 1)
    if model == LAST_TOUCH:
        return [0.0] * (n - 1) + [1.0]
    if model == LINEAR:
        return [1.0 / n] * n
    if model == TIME_DECAY:
        if half_life_ms <= 0:
            raise ValueError(f"half-life must be positive, got {half_life_ms} ms")
        # Relative to the latest touch, so old touches cannot all underflow to zero;
        # the normalised shares are the same as with ages from the conversion.
        latest = max(touch_times)
        raw = [2.0 ** (-(latest - t) / half_life_ms) for t in touch_times]
        total = sum(raw)
        return [w / total for w in raw]
    raise ValueError(f"unknown attribution model {model!r}; known: {', '.join(MODELS)}")


# -- building it ---------------------------------------------------------------------


@dataclass
class _Instance:
    customer: str
    instance_id: str | None
    entered_at: int | None = None
    records: list[tuple[int, int, JourneyTransition]] = field(default_factory=list)


def build(
    transitions: Iterable[JourneyTransition],
    actions: Iterable[NextBestAction],
    *,
    journeys: Collection[str] | None = None,
    window: Window | None = None,
    half_life_ms: int = DEFAULT_HALF_LIFE_MS,
) -> Report:
    """The report over everything given (see the module docstring for the definitions).
    ``journeys`` limits it to those ids; journeys without a cohort instance are left out."""
    window = window or Window()
    wanted = set(journeys) if journeys is not None else None
    by_journey: dict[str, dict[tuple[str, str | None], _Instance]] = defaultdict(dict)
    for seq, t in enumerate(transitions):
        if wanted is not None and t.journey_id not in wanted:
            continue
        key = (t.customer_id, t.instance_id)
        inst = by_journey[t.journey_id].get(key)
        if inst is None:
            inst = by_journey[t.journey_id][key] = _Instance(t.customer_id, t.instance_id)
        inst.records.append((t.occurred_at, seq, t))
        if t.kind == ENTERED and (inst.entered_at is None or t.occurred_at < inst.entered_at):
            inst.entered_at = t.occurred_at
    touches = _index_actions(actions, wanted)
    reports = []
    for journey_id in sorted(by_journey):
        cohort = [
            i
            for i in by_journey[journey_id].values()
            if i.entered_at is not None and window.contains(i.entered_at)
        ]
        if cohort:
            reports.append(_journey(journey_id, cohort, touches, half_life_ms))
    return Report(tuple(reports), window, half_life_ms)


_Touches = dict[tuple[str, str, str | None], dict[str, NextBestAction]]


def _index_actions(actions: Iterable[NextBestAction], wanted: set[str] | None) -> _Touches:
    """Actions by (customer, journey, instance) and by (customer, journey, None), each
    de-duplicated by action id (a replay re-emits the same id)."""
    out: _Touches = defaultdict(dict)
    for a in actions:
        if wanted is not None and a.journey_id not in wanted:
            continue
        out[(a.customer_id, a.journey_id, a.instance_id)][a.action_id] = a
        out[(a.customer_id, a.journey_id, None)][a.action_id] = a
    return out


def _journey(
    journey_id: str, cohort: list[_Instance], touches: _Touches, half_life_ms: int
) -> JourneyReport:
    versions: set[int] = set()
    kinds: Counter[str] = Counter()
    reached: Counter[str] = Counter()
    positions: dict[str, list[int]] = defaultdict(list)
    follows: set[tuple[str, str]] = set()
    arms: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    credit: dict[str, dict[str, float]] = {m: defaultdict(float) for m in MODELS}
    touched = untouched = finished = 0
    for inst in cohort:
        inst.records.sort(key=lambda r: (r[0], r[1]))
        steps: list[str] = []
        assigned: dict[str, str] = {}
        variant: str | None = None
        ended: set[str] = set()
        converted_at: int | None = None
        for at, _, t in inst.records:
            versions.add(t.journey_version)
            if t.kind == STEP and t.step is not None:
                if t.step not in steps:
                    steps.append(t.step)
                if t.variant is not None and t.variant != variant:
                    assigned.setdefault(t.step, t.variant)
                    variant = t.variant
            elif t.kind in ENDINGS:
                ended.add(t.kind)
                if t.kind == CONVERTED and converted_at is None:
                    converted_at = at
        for position, step in enumerate(steps):
            reached[step] += 1
            positions[step].append(position)
        follows.update(pairwise(steps))
        for kind in ended:
            kinds[kind] += 1
        finished += bool(ended)
        for split_step, arm in assigned.items():
            arms[split_step][arm].append(converted_at is not None)
        if converted_at is None:
            continue
        times, channels = _touches_of(inst, journey_id, converted_at, touches)
        if not times:
            untouched += 1
            continue
        touched += 1
        for model in MODELS:
            for channel, weight in zip(
                channels, attribution_weights(times, converted_at, model, half_life_ms), strict=True
            ):
                credit[model][channel] += weight
    entered = len(cohort)
    order = _journey_order({s: sum(p) / len(p) for s, p in positions.items()}, follows)
    return JourneyReport(
        journey_id=journey_id,
        versions=tuple(sorted(versions)),
        entered=entered,
        converted=kinds[CONVERTED],
        exited=kinds["exited"],
        completed=kinds["completed"],
        active=entered - finished,
        conversion_rate=kinds[CONVERTED] / entered,
        steps=tuple(StepCount(s, reached[s], reached[s] / entered) for s in order),
        splits=tuple(_split(step, outcomes) for step, outcomes in sorted(arms.items())),
        attribution=tuple(
            Attribution(m, dict(sorted(credit[m].items(), key=lambda kv: (-kv[1], kv[0]))))
            for m in MODELS
        ),
        touched_conversions=touched,
        untouched_conversions=untouched,
    )


def _journey_order(mean_position: Mapping[str, float], follows: set[tuple[str, str]]) -> list[str]:
    """Steps in journey order, learnt from the records alone: a step comes after every
    step instances reached before it (a topological order of the steps' observed
    succession), earlier mean position first among the steps ready. A loop is broken
    at its step of earliest mean position."""
    before: dict[str, set[str]] = {s: set() for s in mean_position}
    for a, b in follows:
        if a != b:
            before[b].add(a)
    order: list[str] = []
    left = set(mean_position)
    while left:
        ready = [s for s in left if not before[s] & left] or list(left)
        step = min(ready, key=lambda s: (mean_position[s], s))
        order.append(step)
        left.remove(step)
    return order


def _touches_of(
    inst: _Instance, journey_id: str, converted_at: int, touches: _Touches
) -> tuple[list[int], list[str]]:
    """(times, channels) of the actions that may have led to this conversion."""
    sent = touches.get((inst.customer, journey_id, inst.instance_id), {}).values()
    since = inst.entered_at if inst.instance_id is None else None
    chosen = sorted(
        (a.created_at, a.action_id, a.channel)
        for a in sent
        if a.created_at <= converted_at and (since is None or a.created_at >= since)
    )
    return [c[0] for c in chosen], [c[2] for c in chosen]


def _split(step: str, outcomes: Mapping[str, list[bool]]) -> Split:
    control = HOLDOUT if HOLDOUT in outcomes else None
    held = outcomes.get(HOLDOUT, [])
    arms = []
    for variant in sorted(outcomes, key=lambda v: (v == HOLDOUT, v)):
        results = outcomes[variant]
        n, x = len(results), sum(results)
        lift = None
        if control is not None and variant != control:
            lift = two_proportion_test(x, n, sum(held), len(held))
        arms.append(Arm(variant, n, x, x / n, lift))
    return Split(step, tuple(arms), control)


# -- output --------------------------------------------------------------------------


def to_json(report: Report) -> dict[str, Any]:
    """The report as plain JSON types; rates are fractions, times ISO-8601 UTC."""
    w = report.window
    return {
        "window": {
            "entered_from": iso(w.start) if w.start is not None else None,
            "entered_until": iso(w.end) if w.end is not None else None,
        },
        "confidence": CONFIDENCE,
        "half_life": format_duration(report.half_life_ms),
        "half_life_ms": report.half_life_ms,
        "journeys": [
            {
                "journey_id": j.journey_id,
                "versions": list(j.versions),
                "entered": j.entered,
                "converted": j.converted,
                "conversion_rate": j.conversion_rate,
                "exited": j.exited,
                "completed": j.completed,
                "active": j.active,
                "steps": [{"step": s.step, "reached": s.reached, "rate": s.rate} for s in j.steps],
                "splits": [
                    {
                        "step": s.step,
                        "control": s.control,
                        "arms": [
                            {
                                "variant": a.variant,
                                "entered": a.entered,
                                "converted": a.converted,
                                "rate": a.rate,
                                "lift": None if a.lift is None else asdict(a.lift),
                            }
                            for a in s.arms
                        ],
                    }
                    for s in j.splits
                ],
                "attribution": {
                    "touched_conversions": j.touched_conversions,
                    "untouched_conversions": j.untouched_conversions,
                    "models": {a.model: dict(a.channels) for a in j.attribution},
                },
            }
            for j in report.journeys
        ],
    }


def to_text(report: Report) -> str:
    """The report for a terminal: one block per journey."""
    w = report.window
    lines: list[str] = []
    if w.start is not None or w.end is not None:
        start = iso(w.start) if w.start is not None else "the beginning"
        end = iso(w.end) if w.end is not None else "now"
        lines.append(f"entries from {start} until {end}")
        lines.append("")
    if not report.journeys:
        lines.append("no journey entries recorded" + (" in this window" if lines else ""))
    for j in report.journeys:
        versions = ", ".join(map(str, j.versions))
        lines.append(f"journey {j.journey_id} (version {versions})")
        lines.append(f"  {'entered':<22}{j.entered:>8}")
        lines.append(f"  {'converted':<22}{j.converted:>8}  {_pct(j.conversion_rate)}")
        for label, n in (("exited", j.exited), ("completed", j.completed), ("active", j.active)):
            lines.append(f"  {label:<22}{n:>8}")
        if j.steps:
            lines.append("  steps (instances reaching each)")
            for s in j.steps:
                lines.append(f"    {s.step:<20}{s.reached:>8}  {_pct(s.rate)}")
        for split in j.splits:
            lines.extend(_split_lines(split))
        lines.extend(_attribution_lines(j, report.half_life_ms))
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _split_lines(split: Split) -> list[str]:
    against = f"; lift over {split.control}, 95 % CI, p" if split.control else ""
    lines = [f"  split {split.step} (entered, converted, rate{against})"]
    for a in split.arms:
        row = f"    {a.variant:<20}{a.entered:>8}{a.converted:>8}  {_pct(a.rate)}"
        if a.lift is not None:
            lift = a.lift
            row += (
                f"  {_pts(lift.difference)} pts [{_pts(lift.ci_low)}, {_pts(lift.ci_high)}]"
                f"  p={lift.p_value:.3g}"
            )
        elif a.variant == split.control:
            row += "  (control)"
        lines.append(row)
    if split.control is None:
        lines.append("    (no holdout: no lift)")
    return lines


def _attribution_lines(j: JourneyReport, half_life_ms: int) -> list[str]:
    if not j.converted:
        return []
    half_life = format_duration(half_life_ms)
    lines = [
        f"  attribution of {j.touched_conversions} touched conversion(s) to channels "
        f"(time decay half-life {half_life})"
    ]
    channels = sorted({c for a in j.attribution for c in a.channels})
    if channels:
        lines.append(f"    {'channel':<20}" + "".join(f"{m:>12}" for m in MODELS))
        models = {a.model: a.channels for a in j.attribution}
        for c in channels:
            shares = "".join(f"{models[m].get(c, 0.0):>12.2f}" for m in MODELS)
            lines.append(f"    {c:<20}{shares}")
    lines.append(f"    {'no touch':<20}{j.untouched_conversions:>12}")
    return lines


def _pct(rate: float) -> str:
    return f"{rate * 100:6.1f} %"


def _pts(diff: float) -> str:
    """A difference of rates in percentage points."""
    return f"{diff * 100:+.1f}"
