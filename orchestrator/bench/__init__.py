"""``rota bench``: how fast Rota is, measured on a broker, against two baselines.

Phases (each on its own topics, all on one broker):

1. throughput of one worker over a pre-loaded topic, and the same topic consumed by a
   bare Faust agent and by a plain confluent-kafka/rocksdict loop (``baselines.py``);
2. publication -> action latency at a paced rate (half the measured maximum);
3. timers: N pending, a burst coming due while traffic is ingested;
4. memory (RSS) of that worker, then recovery of its state into an empty data dir;
5. the decision core alone, in this process.

``main(argv)`` is what the CLI calls. ``--quick`` is the CI smoke run (< 2 minutes).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from orchestrator.bench import phases, report
from orchestrator.bench.workload import WorkloadSpec, write_journeys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rota bench",
        description="Measure throughput, latency, timers, recovery, memory and the core "
        "alone on a broker (ROTA_KAFKA_BOOTSTRAP, else the embedded one).",
    )
    p.add_argument("--quick", action="store_true", help="small run for CI (< 2 minutes)")
    p.add_argument("--out", type=Path, help="write every figure as JSON to this file")
    p.add_argument("--events", type=int, help="touchpoints for the throughput phase")
    p.add_argument("--customers", type=int, help="customers the workload is spread over")
    p.add_argument("--timers", type=int, help="pending timers in the timer phase")
    p.add_argument("--timer-fire-rate", type=float, help="timers/s coming due while ingesting")
    p.add_argument(
        "--timer-passes", type=int, help="ingestions with timers firing (default 3; quick 2)"
    )
    p.add_argument("--rate", type=float, help="latency phase rate (default: half the maximum)")
    p.add_argument("--latency-seconds", type=float, help="length of the latency phase")
    p.add_argument(
        "--journeys", type=int, default=50, help="live journeys (at least 3; default 50)"
    )
    p.add_argument(
        "--journey-share", type=float, default=0.30, help="share of events a journey reacts to"
    )
    p.add_argument(
        "--action-share", type=float, default=0.10, help="share of events producing an action"
    )
    p.add_argument("--partitions", type=int, help="partitions of the benchmark's topics")
    p.add_argument("--workdir", type=Path, help="where logs and data go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, RocksDB)")
    return p


def _sizes(args: argparse.Namespace) -> phases.Sizes:
    sizes = phases.Sizes.quick() if args.quick else phases.Sizes.full()
    overrides = {
        "events": args.events,
        "customers": args.customers,
        "timers": args.timers,
        "timer_fire_rate": args.timer_fire_rate,
        "timer_passes": args.timer_passes,
        "latency_rate": args.rate,
        "latency_seconds": args.latency_seconds,
        "partitions": args.partitions,
    }
    return replace(sizes, **{k: v for k, v in overrides.items() if v is not None})


def _spec(
    parser: argparse.ArgumentParser, args: argparse.Namespace, customers: int
) -> WorkloadSpec:
    """The workload the options describe; an impossible one is a usage error (exit 2)."""
    try:
        return WorkloadSpec(
            customers=customers,
            journeys=args.journeys,
            journey_share=args.journey_share,
            action_share=args.action_share,
        )
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    sizes = _sizes(args)
    spec = _spec(parser, args, sizes.customers)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rota-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()

    def progress(line: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {line}", flush=True)

    from orchestrator import broker as brokers

    mode = "quick" if args.quick else "full"
    progress(f"rota bench ({mode}); logs and data in {workdir}")
    results: dict[str, Any] = {
        "mode": mode,
        "command": "rota bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": report.machine(),
        "sizes": asdict(sizes),
        "workload": asdict(spec),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    progress(f"core alone: deciding {sizes.core_events:,} touchpoints in this process")
    results["core"] = phases.core_alone(spec, sizes.core_events)
    runs = ", ".join(f"{x:,.0f}" for x in results["core"]["runs_decisions_per_second"])
    progress(f"  {results['core']['decisions_per_second']:,.0f} decisions/s (best of {runs})")
    try:
        with brokers.running() as broker:
            progress(f"broker: {broker.describe()}")
            results["broker"] = broker.kind
            ctx = phases.Context(
                bootstrap=broker.bootstrap,
                workdir=workdir,
                journeys=write_journeys(spec, workdir / "journeys"),
                spec=spec,
                sizes=sizes,
                progress=progress,
                run_id=phases.new_run_id(),
            )
            throughput, found, latency = phases.throughput_and_latency(ctx)
            results.update(throughput=throughput, baselines=found, latency=latency)
            timers, memory, recovery = phases.timers_memory_recovery(
                ctx, throughput["events_per_second"]
            )
            results.update(timers=timers, memory=memory, recovery=recovery)
    except Exception as exc:
        print(f"rota bench failed: {exc}", file=sys.stderr)
        print(f"logs are in {workdir}", file=sys.stderr)
        return 1
    results["seconds"] = time.monotonic() - began
    results["verdicts"] = report.verdicts(results)
    print()
    print(report.table(results))
    print(
        f"\n{mode} run, {results['seconds']:.0f} s, {results['machine']['cpus']} CPUs, "
        f"{results['broker']} broker"
    )
    if args.out:
        report.write_json(results, args.out)
        print(f"results: {args.out}")
    if not args.keep and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
