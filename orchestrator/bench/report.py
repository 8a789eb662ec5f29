"""The benchmark's results: one JSON document (every figure) and a table for humans.

Targets are those of the full run on a 2-core machine (GitHub issue 7). A quick run is
smaller; its figures that depend on scale (recovery, memory) are compared per customer.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.metrics import WORKER_PHASES

Results = dict[str, Any]


@dataclass(frozen=True)
class Row:
    #: May name ``{journeys}``: the run's live journeys (``--journeys``).
    figure: str
    value: Callable[[Results], float]
    shown: Callable[[Results], str]
    target: str = ""
    meets: Callable[[Results], bool] | None = None

    def label(self, results: Results) -> str:
        return self.figure.format(journeys=results["workload"]["journeys"])


def _n(x: float) -> str:
    return f"{x:,.0f}"


def _baseline(found: dict[str, Any]) -> str:
    """The mean, and the runs before and after Rota's that it is the mean of."""
    before, after = found["before"]["events_per_second"], found["after"]["events_per_second"]
    return f"{_n(found['events_per_second'])}  (mean of {_n(before)} and {_n(after)})"


ROWS = (
    Row(
        "sustained throughput, touchpoints/s ({journeys} journeys, 1 worker)",
        lambda r: r["throughput"]["events_per_second"],
        lambda r: _n(r["throughput"]["events_per_second"]),
        ">= 10,000",
        lambda r: r["throughput"]["events_per_second"] >= 10_000,
    ),
    Row(
        "  worker time: " + " / ".join(WORKER_PHASES) + ", %",
        lambda r: r["throughput"]["time_share"].get("decide", 0.0),
        lambda r: " / ".join(
            f"{100 * r['throughput']['time_share'].get(p, 0.0):.0f}" for p in WORKER_PHASES
        ),
    ),
    Row(
        "  baseline: bare Faust agent (take_events), events/s",
        lambda r: r["baselines"]["faust_take_events"]["events_per_second"],
        lambda r: _baseline(r["baselines"]["faust_take_events"]),
    ),
    Row(
        "  Rota / bare Faust",
        lambda r: r["baselines"]["ratio_to_faust"],
        lambda r: f"{r['baselines']['ratio_to_faust']:.2f}",
        ">= 0.70",
        lambda r: r["baselines"]["ratio_to_faust"] >= 0.7,
    ),
    Row(
        "  baseline: confluent consume/rocksdict/produce loop, events/s",
        lambda r: r["baselines"]["confluent_rocksdict_loop"]["events_per_second"],
        lambda r: _baseline(r["baselines"]["confluent_rocksdict_loop"]),
    ),
    Row(
        "  Rota / confluent loop",
        lambda r: r["baselines"]["ratio_to_loop"],
        lambda r: f"{r['baselines']['ratio_to_loop']:.2f}",
    ),
    Row(
        "publication -> action p50 / p95 / p99 / max, ms",
        lambda r: r["latency"]["p99_ms"],
        lambda r: (
            "{p50_ms:.0f} / {p95_ms:.0f} / {p99_ms:.0f} / {max_ms:.0f}".format(**r["latency"])
            + f"  @ {r['latency']['offered_rate']:,.0f}/s"
        ),
        "p99 <= 100",
        lambda r: r["latency"]["p99_ms"] <= 100,
    ),
    Row(
        "  the broker alone (one partition of them, plain consumer) p50 / p99, ms",
        lambda r: r["latency"]["broker_p99_ms"],
        lambda r: "{broker_p50_ms:.0f} / {broker_p99_ms:.0f}".format(**r["latency"]),
    ),
    Row(
        "timer lateness p50 / p99, s",
        lambda r: r["timers"]["lateness_p99_s"],
        lambda r: (
            f"{r['timers']['lateness_p50_s']:.2f} / {r['timers']['lateness_p99_s']:.2f}"
            f"  ({r['timers']['pending']:,} pending)"
        ),
        "p99 <= 1",
        lambda r: r["timers"]["lateness_p99_s"] <= 1.0,
    ),
    Row(
        "ingestion slowdown while timers fire",
        lambda r: r["timers"]["ingestion_slowdown"],
        lambda r: (
            f"{r['timers']['ingestion_slowdown']:.1%}  (median of "
            + " / ".join(f"{s:.1%}" for s in r["timers"]["ingestion_slowdowns"])
            + f"; {r['timers']['fire_rate']:,.0f} timers/s; from the worker's CPU:"
            f" {r['timers']['ingestion_slowdown_from_cpu']:.1%}, a fired timer"
            f" {r['timers']['fired_timer_in_touchpoints']:.2f} touchpoints)"
        ),
        "<= 10 %",
        lambda r: r["timers"]["ingestion_slowdown"] <= 0.10,
    ),
    Row(
        "recovery from changelog, s",
        lambda r: r["recovery"]["seconds"],
        lambda r: (
            f"{r['recovery']['seconds']:.1f}  ({r['recovery']['customers']:,} customers,"
            f" {r['recovery']['customers_per_second']:,.0f}/s)"
        ),
        "<= 60 @ 1M",
        lambda r: r["recovery"]["customers_per_second"] >= 1_000_000 / 60,
    ),
    Row(
        "worker RSS at the end, MiB",
        lambda r: r["memory"]["rss_mib"],
        lambda r: (
            f"{r['memory']['rss_mib']:,.0f}  ({r['memory']['customers']:,} customers;"
            f" {r['memory']['projected_rss_mib_at_1m']:,.0f} projected @ 1M)"
        ),
        "<= 1,024 @ 1M",
        lambda r: r["memory"]["projected_rss_mib_at_1m"] <= 1024,
    ),
    Row(
        "core alone, decisions/s ({journeys} journeys, 1 core, best of 3)",
        lambda r: r["core"]["decisions_per_second"],
        lambda r: (
            f"{_n(r['core']['decisions_per_second'])}"
            f"  ({_n(r['core']['with_codecs_per_second'])} with codecs)"
        ),
        ">= 100,000",
        lambda r: r["core"]["decisions_per_second"] >= 100_000,
    ),
)


def verdicts(results: Results) -> list[dict[str, Any]]:
    out = []
    for row in ROWS:
        out.append(
            {
                "figure": row.label(results).strip(),
                "value": row.value(results),
                "target": row.target or None,
                "meets": row.meets(results) if row.meets else None,
            }
        )
    return out


def table(results: Results) -> str:
    lines = []
    cells = [
        (
            row.label(results),
            row.shown(results),
            row.target,
            "" if row.meets is None else ("yes" if row.meets(results) else "NO"),
        )
        for row in ROWS
    ]
    header = ("figure", "measured", "target", "met")
    widths = [max(len(c[i]) for c in [*cells, header]) for i in range(4)]
    lines.append(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    lines.append("-+-".join("-" * w for w in widths))
    for c in cells:
        lines.append(" | ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)))
    return "\n".join(lines)


def markdown(results: Results) -> str:
    """The table as Markdown, for the README."""
    lines = ["| figure | measured | target | met |", "|---|---|---|---|"]
    for row in ROWS:
        met = "" if row.meets is None else ("yes" if row.meets(results) else "**no**")
        lines.append(
            f"| {row.label(results).strip()} | {row.shown(results)} | {row.target} | {met} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_json(results: Results, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
