"""A journey's funnel as the workers count it: the ``rota_journey_funnel`` counter's
samples (``journey``, ``kind``, ``step`` labels) added up per journey.

One place for that sum, used by the inspector (this worker's counter) and by
``rota journeys graph --metrics`` (every worker's ``/metrics``, scraped).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: The counter's sample name in Prometheus text.
SAMPLE = "rota_journey_funnel_total"
#: Kinds that are journey totals; ``step`` counts arrivals per step.
TOTALS = ("entered", "converted", "exited", "completed")


@dataclass(frozen=True, slots=True)
class Funnel:
    """How many customers went where. ``steps`` counts arrivals per step name; a
    customer who passes a step twice counts twice."""

    entered: int = 0
    converted: int = 0
    exited: int = 0
    completed: int = 0
    steps: Mapping[str, int] = field(default_factory=dict)


def funnels(samples: Iterable[tuple[Mapping[str, str], float]]) -> dict[str, Funnel]:
    """Per journey id, the sum of the counter's ``(labels, value)`` samples - over
    workers too: each counts only the customers of its partitions."""
    totals: dict[str, dict[str, float]] = {}
    steps: dict[str, dict[str, float]] = {}
    for labels, value in samples:
        journey, kind = labels.get("journey", ""), labels.get("kind", "")
        if kind == "step":
            mine = steps.setdefault(journey, {})
            step = labels.get("step", "")
            mine[step] = mine.get(step, 0.0) + value
        elif kind in TOTALS:
            mine = totals.setdefault(journey, dict.fromkeys(TOTALS, 0.0))
            mine[kind] += value
    return {
        journey: Funnel(
            **{k: round(v) for k, v in totals.get(journey, dict.fromkeys(TOTALS, 0.0)).items()},
            steps={name: round(n) for name, n in sorted(steps.get(journey, {}).items())},
        )
        for journey in {*totals, *steps}
    }
