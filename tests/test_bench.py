"""``rota bench``: the workload does what its parameters say, and a quick run on the real
broker reports every figure, each sane (non-zero, latencies ordered) - not that it meets
its target: that depends on the machine."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from orchestrator import bench, wire
from orchestrator.bench import report
from orchestrator.bench.phases import cycles
from orchestrator.bench.worker import histogram_quantile
from orchestrator.bench.workload import Workload, WorkloadSpec, journeys_yaml
from orchestrator.core.decide import decide
from orchestrator.core.state import CustomerState, Instance
from orchestrator.journey.catalog import Catalog
from orchestrator.metrics import WORKER_PHASES


def test_workload_has_fifty_journeys_and_the_configured_shares_of_actions():
    spec = WorkloadSpec(customers=500, journey_share=0.3, action_share=0.1)
    catalog = Catalog.from_yaml(journeys_yaml(spec))
    assert len(catalog) == 50
    states: dict[str, CustomerState] = {}
    outcome: Counter[str] = Counter()
    events = list(Workload(spec).touchpoints(10_000))
    for tp, acts in events:
        d = decide(states.get(tp.subject), tp, catalog, customer_id=tp.subject)
        states[tp.subject] = d.state
        assert len(d.actions) == (1 if acts else 0)
        outcome["actions"] += len(d.actions)
        outcome["journey"] += tp.name.startswith("Offer ")
        outcome["moved"] += bool(d.funnel)
    assert 0.08 < outcome["actions"] / len(events) < 0.12
    assert 0.25 < outcome["journey"] / len(events) < 0.35
    assert outcome["actions"] < outcome["moved"] <= outcome["journey"]


def test_the_journeys_option_sizes_the_workload_and_names_the_table_rows():
    parser = bench._parser()
    spec = bench._spec(parser, parser.parse_args(["--journeys", "7"]), customers=100)
    assert len(Catalog.from_yaml(journeys_yaml(spec))) == 7
    rows = [row.label({"workload": {"journeys": 7}}) for row in report.ROWS]
    assert "sustained throughput, touchpoints/s (7 journeys, 1 worker)" in rows
    assert "core alone, decisions/s (7 journeys, 1 core, best of 3)" in rows


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--journeys", "2"], "at least 3 journeys"),
        (["--action-share", "0.5"], "action share <= journey share"),
        (["--customers", "0"], "at least one customer"),
    ],
)
def test_an_impossible_workload_is_refused_as_a_usage_error(argv, why, capsys):
    with pytest.raises(SystemExit) as exited:
        bench.main(argv)
    assert exited.value.code == 2
    assert why in capsys.readouterr().err


def test_workload_is_deterministic_and_reminders_arm_one_timer_each():
    spec = WorkloadSpec(customers=100)

    def names(w: Workload) -> list[tuple[str, str, str]]:
        return [(tp.event_id, tp.subject, tp.name) for tp, _ in w.touchpoints(50)]

    assert names(Workload(spec)) == names(Workload(spec))  # occurred_at is the wall clock
    catalog = Catalog.from_yaml(journeys_yaml(spec))
    (armed,) = Workload(spec).reminders(0, 1, [2_000_000_000_000])
    tp = wire.decode_touchpoint(armed.value)
    d = decide(None, tp, catalog, customer_id=tp.subject)
    assert [t.due_at for t in d.timers_set] == [2_000_000_000_000]


def test_histogram_quantile_interpolates_within_the_bucket_of_the_delta():
    before = {0.1: 10.0, 1.0: 10.0, float("inf"): 10.0}
    after = {0.1: 10.0, 1.0: 110.0, float("inf"): 110.0}
    assert histogram_quantile(before, after, 0.5) == pytest.approx(0.55)
    assert histogram_quantile(after, after, 0.5) is None


FIGURES = {
    "throughput": ["events_per_second", "seconds", "actions_emitted", "cold_start_seconds"],
    "latency": [
        "offered_rate",
        "achieved_rate",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "broker_p50_ms",
        "broker_p99_ms",
    ],
    "timers": [
        "pending",
        "fired_observed",
        "fire_rate",
        "lateness_p50_s",
        "lateness_p99_s",
        "ingestion_idle_eps",
        "ingestion_firing_eps",
        "cpu_per_touchpoint_us",
        "cpu_per_fired_timer_us",
        "ingestion_slowdown_from_cpu",
        "process_cpu_per_touchpoint_us",
        "process_cpu_per_fired_timer_us",
    ],
    "recovery": ["customers", "seconds", "customers_per_second"],
    "memory": ["rss_mib", "customers", "mib_per_million_customers"],
    "core": ["journeys", "decisions_per_second", "with_codecs_per_second"],
}


@pytest.mark.kafka
def test_cycles_are_found_through_structs_the_collector_does_not_track():
    """The core phase's ``cycles_left``: the core's Structs are ``gc=False``, so a cycle
    through one is invisible to ``gc.collect()`` and must be found by walking."""
    shared = Instance("j", 1, "i", "s", 0, 0, visits={"s": 1})
    acyclic = CustomerState("a", instances=(shared, shared), history={"j": shared})
    assert cycles([acyclic, acyclic]) == 0  # shared values are no cycle
    looped = CustomerState("b", instances=(shared,))
    looped.silence = {"j": [looped]}
    assert cycles([acyclic, looped]) == 1


def test_quick_bench_reports_every_figure_sanely(kafka, tmp_path: Path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "bench", "--quick", "--out", str(out)],
        env={**os.environ, "ROTA_KAFKA_BOOTSTRAP": kafka.bootstrap},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sustained throughput" in proc.stdout  # the table was printed
    results = json.loads(out.read_text())
    for section, names in FIGURES.items():
        for name in names:
            value = results[section][name]
            assert isinstance(value, int | float) and math.isfinite(value), (section, name)
            assert value > 0, (section, name, value)
    for name in ("faust_take_events", "confluent_rocksdict_loop"):
        baseline = results["baselines"][name]
        runs = [baseline[when]["events_per_second"] for when in ("before", "after")]
        assert min(runs) > 0
        assert all(baseline[when]["events"] >= 20_000 for when in ("before", "after"))
        # Measured around Rota's run, each baseline reports the mean of the two.
        assert baseline["events_per_second"] == pytest.approx(sum(runs) / 2)
    rate = results["throughput"]["events_per_second"]
    faust = results["baselines"]["faust_take_events"]["events_per_second"]
    assert results["baselines"]["ratio_to_faust"] == pytest.approx(rate / faust)
    assert results["baselines"]["ratio_to_faust"] > 0
    assert results["baselines"]["ratio_to_loop"] > 0
    lat = results["latency"]
    assert lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert lat["actions_received"] == lat["actions_expected"] > 0
    # The broker's own figure reads a sample (one partition) and sees all of it.
    assert 0 < lat["broker_received"] == lat["broker_sampled"] < lat["actions_expected"]
    assert lat["broker_p50_ms"] <= lat["broker_p99_ms"]
    timers = results["timers"]
    assert timers["lateness_p50_s"] <= timers["lateness_p99_s"] <= timers["lateness_max_s"]
    assert timers["fired_observed"] == timers["fired_expected"]
    assert math.isfinite(timers["ingestion_slowdown"])
    # CPU above idle: a touchpoint and a fired timer each cost some, and the implied
    # slowdown is the share of ingestion's CPU that fire_rate timers a second take.
    assert timers["worker_idle_cores"] >= 0
    assert timers["fired_timer_in_touchpoints"] == pytest.approx(
        timers["cpu_per_fired_timer_us"] / timers["cpu_per_touchpoint_us"]
    )
    implied = (
        timers["fire_rate"] * timers["fired_timer_in_touchpoints"] / timers["ingestion_idle_eps"]
    )
    assert timers["ingestion_slowdown_from_cpu"] == pytest.approx(implied)
    assert 0 < implied < 1
    # Each pass: an ingestion while timers fire, against the idle ones either side.
    passes = timers["passes"]
    idle, firing = timers["ingestion_idle_runs_eps"], timers["ingestion_firing_runs_eps"]
    assert passes == 2 and len(idle) == passes + 1 and len(firing) == passes
    assert min(idle + firing) > 0
    burst = round(timers["fire_rate"] * timers["window_seconds"])
    assert timers["fired_expected"] == passes * burst  # every pass's burst fired
    slowdowns = [1 - firing[k] / ((idle[k] + idle[k + 1]) / 2) for k in range(passes)]
    assert timers["ingestion_slowdowns"] == pytest.approx(slowdowns)
    assert timers["ingestion_slowdown"] == pytest.approx(statistics.median(slowdowns))
    assert timers["ingestion_idle_eps"] == pytest.approx(sum(idle) / len(idle))
    assert timers["ingestion_firing_eps"] == pytest.approx(sum(firing) / passes)
    # Every ingestion in order - the warm-up, then idle, firing, idle, ... - with its
    # shares and cores.
    runs = timers["ingestions"]
    assert [r["kind"] for r in runs] == ["warm-up"] + ["idle", "firing"] * passes + ["idle"]
    assert runs[0]["events_per_second"] > 0
    assert [r["events_per_second"] for r in runs[1::2]] == idle
    assert [r["events_per_second"] for r in runs[2::2]] == firing
    for run in runs:
        share = run["time_share"]
        assert set(share) == {"receive", "decide", "wait"}, share
        assert sum(share.values()) == pytest.approx(1.0)
        # The worker ingesting keeps its main thread busy; the machine was at least
        # as busy as the worker's process, and a process at least as its main thread.
        assert 0.2 < run["main_thread_cores"] <= run["process_cores"] * 1.01 + 0.01
        assert run["process_cores"] <= run["machine_busy_cores"] * 1.01 + 0.01
        assert run["machine_busy_cores"] <= os.cpu_count() * 1.01 + 0.01
        assert run["machine_steal_cores"] >= 0
        # The worker's collector is settled (worker/collector.py): with the
        # interpreter's thresholds a full collection ran about once a second.
        assert run["gc_collections"]["2"] == 0, run["gc_collections"]
    assert results["core"]["journeys"] == 50
    assert results["core"]["cycles_left"] == 0  # why the collector may pause while timed
    core = results["core"]
    for figure in ("decisions_per_second", "with_codecs_per_second"):
        runs = core[f"runs_{figure}"]
        assert len(runs) == 3 and min(runs) > 0
        assert core[figure] == max(runs)  # the best run, as timeit reports
    assert results["throughput"]["journeys_live"] == 50
    share = results["throughput"]["time_share"]
    assert set(share) == set(WORKER_PHASES) == {"receive", "decide", "wait"}
    assert share["decide"] > 0 and all(0 <= v <= 1 for v in share.values())
    assert sum(share.values()) == pytest.approx(1.0)
    collections = results["throughput"]["gc_collections"]
    assert set(collections) == {"0", "1", "2"} and collections["2"] == 0, collections
    assert results["throughput"]["actions_emitted"] >= results["throughput"]["actions_expected"]
    labels = [r.label(results).strip() for r in report.ROWS]
    assert [v["figure"] for v in results["verdicts"]] == labels
    assert labels[0] == "sustained throughput, touchpoints/s (50 journeys, 1 worker)"
    assert results["mode"] == "quick"
