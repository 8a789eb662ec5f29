"""The measurements of ``rota bench``, one function per phase, each on its own topics.

Every phase observes the worker from outside - its ``/metrics``, ``/proc`` and the
action topics - as a user would; only the core-alone phase runs in this process.
"""

from __future__ import annotations

import gc
import statistics
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msgspec import Struct

from orchestrator import wire
from orchestrator.bench import baselines
from orchestrator.bench.kafka_io import ArrivalWatcher, publish_burst, publish_paced
from orchestrator.bench.worker import (
    BenchWorker,
    Cpu,
    MachineCpu,
    WorkerConfig,
    WorkerFailed,
    histogram_quantile,
    machine_cpu,
    wait_consumed,
)
from orchestrator.bench.workload import (
    OFFER_CHANNEL,
    REMINDER_CHANNEL,
    Generated,
    Workload,
    WorkloadSpec,
    journeys_yaml,
)
from orchestrator.core.decide import decide
from orchestrator.core.state import CustomerState
from orchestrator.journey.catalog import Catalog
from orchestrator.metrics import WORKER_PHASES
from orchestrator.records import CHANNELS, Touchpoint
from orchestrator.run import total
from orchestrator.topics import Topics, ensure_topics

Progress = Callable[[str], None]
Figures = dict[str, Any]
MIB = 1024 * 1024
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class Sizes:
    """How big each phase is. ``quick`` keeps the whole run under two minutes."""

    events: int
    customers: int
    timers: int
    timer_fire_rate: float
    timer_backlog: int
    latency_seconds: float
    latency_rate: float | None
    core_events: int
    partitions: int = 8
    #: Timer passes: each a burst firing while a backlog is ingested, then one without.
    timer_passes: int = 3

    @classmethod
    def quick(cls) -> Sizes:
        return cls(20_000, 5_000, 10_000, 500, 10_000, 8.0, None, 20_000, timer_passes=2)

    @classmethod
    def full(cls) -> Sizes:
        return cls(300_000, 100_000, 1_000_000, 1_000, 100_000, 30.0, None, 200_000)


@dataclass
class Context:
    """What every phase shares: one broker, one journeys directory, one work dir."""

    bootstrap: str
    workdir: Path
    journeys: Path
    spec: WorkloadSpec
    sizes: Sizes
    progress: Progress
    run_id: str

    def topics(self, phase: str) -> Topics:
        topics = Topics(f"bench{self.run_id}-{phase}")
        ensure_topics(self.bootstrap, topics.all_for(CHANNELS), partitions=self.sizes.partitions)
        return topics

    def worker(self, topics: Topics, name: str, app_id: str | None = None) -> BenchWorker:
        return BenchWorker(
            WorkerConfig(
                bootstrap=self.bootstrap,
                prefix=topics.prefix,
                app_id=app_id or f"{topics.prefix}-worker",
                journeys=self.journeys,
                data_dir=self.workdir / f"data-{name}",
                log_path=self.workdir / f"{name}.log",
                partitions=self.sizes.partitions,
            )
        )


def _quantiles(values: Sequence[float], *qs: float) -> list[float]:
    ordered = sorted(values)
    if not ordered:
        return [0.0 for _ in qs]
    last = len(ordered) - 1
    return [ordered[min(last, round(q * last))] for q in qs]


# -- 1, 2, 7: throughput, baselines, latency ------------------------------------------


def throughput_and_latency(ctx: Context) -> tuple[Figures, Figures, Figures]:
    """Pre-load ``events`` touchpoints; the two baselines and then a Rota worker consume
    the same topic. The warm worker then takes paced traffic for the latency figure,
    and the baselines run once more: their rate is the mean of the two runs around
    Rota's, as the timer slowdown's idle rate is (the same worker on the same topic
    moved by up to a third between consecutive runs here), so a machine speeding up or
    slowing down during the run moves both sides of the ratio alike."""
    sizes, progress = ctx.sizes, ctx.progress
    topics = ctx.topics("tp")
    progress(f"generating {sizes.events:,} touchpoints for {ctx.spec.customers:,} customers")
    records = Workload(ctx.spec).encoded(sizes.events)
    expected_actions = sum(r.acts for r in records)
    seconds = publish_burst(ctx.bootstrap, topics.touchpoints, records)
    progress(f"published {len(records):,} touchpoints in {seconds:.1f} s")
    timeout = 120 + sizes.events / 500
    before = _baselines(ctx, topics.touchpoints, timeout, "before")

    progress(f"rota worker: consuming {sizes.events:,} touchpoints")
    worker = ctx.worker(topics, "throughput")
    try:
        run = wait_consumed(
            worker, sizes.events, progress=progress, label="rota worker", timeout=timeout
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            samples = worker.samples()
            emitted = total(samples, "rota_actions_emitted_total")
            if emitted >= expected_actions:
                break
            time.sleep(0.1)
        throughput: Figures = {
            "events": sizes.events,
            "seconds": run.seconds,
            "events_per_second": run.rate,
            "actions_expected": expected_actions,
            "actions_emitted": emitted,
            "cold_start_seconds": run.first_at - worker.started,
            "journeys_live": total(samples, "rota_journeys_live"),
            "time_share": run.time_share,
            "gc_collections": run.collections,
        }
        progress(
            f"  rota worker: {run.rate:,.0f} touchpoints/s, {emitted:,.0f} actions "
            f"(first event {throughput['cold_start_seconds']:.1f} s after start)"
        )
        latency = _latency(ctx, topics, worker, sizes.events, run.rate)
    finally:
        worker.stop()
    after = _baselines(ctx, topics.touchpoints, timeout, "after")
    found: Figures = {}
    for label, first in before.items():
        second = after[label]
        mean = (first["events_per_second"] + second["events_per_second"]) / 2
        found[label] = {"events_per_second": mean, "before": first, "after": second}
    found["ratio_to_faust"] = run.rate / found["faust_take_events"]["events_per_second"]
    found["ratio_to_loop"] = run.rate / found["confluent_rocksdict_loop"]["events_per_second"]
    progress(
        f"  baselines, mean of before and after: faust "
        f"{found['faust_take_events']['events_per_second']:,.0f}/s, loop "
        f"{found['confluent_rocksdict_loop']['events_per_second']:,.0f}/s; Rota / faust "
        f"{found['ratio_to_faust']:.2f}"
    )
    return throughput, found, latency


def _baselines(ctx: Context, topic: str, timeout: float, when: str) -> dict[str, Figures]:
    """Both baselines over the first ``events`` records of ``topic``, one after the other."""
    found: dict[str, Figures] = {}
    for kind, label in (("loop", "confluent_rocksdict_loop"), ("faust", "faust_take_events")):
        ctx.progress(f"baseline {label} ({when} Rota): consuming {ctx.sizes.events:,} touchpoints")
        found[label] = baselines.measure(
            kind,
            bootstrap=ctx.bootstrap,
            topic=topic,
            count=ctx.sizes.events,
            workdir=ctx.workdir / f"baselines-{when}",
            timeout=timeout,
        )
        ctx.progress(f"  {label}: {found[label]['events_per_second']:,.0f} events/s")
    return found


def _latency(
    ctx: Context, topics: Topics, worker: BenchWorker, consumed: int, max_rate: float
) -> Figures:
    sizes = ctx.sizes
    rate = sizes.latency_rate or max(50.0, max_rate / 2)
    count = int(rate * sizes.latency_seconds)
    records = Workload(ctx.spec, seed_offset=1).encoded(count)
    watcher = ArrivalWatcher(ctx.bootstrap, [topics.actions(OFFER_CHANNEL)], keyed_by="trigger")
    # The same touchpoints read back by a plain consumer: what the broker alone takes -
    # from one partition, a sample. On the embedded broker a reader of all eight made
    # Rota's p99 12 s instead of 0.2 (2,000/s for 30 s; see ArrivalWatcher).
    floor = ArrivalWatcher(
        ctx.bootstrap, [topics.touchpoints], keyed_by="event", from_end=True, partitions=1
    )
    try:
        watcher.wait_idle(quiet=1.0)  # the throughput phase's actions are read first
        published: dict[str, float] = {}
        sampled: set[str] = set()  # those in the partitions the floor reads

        def note(rec: Generated, at: float) -> None:
            if rec.acts:
                published[rec.event_id] = at

        def delivered(rec: Generated, partition: int) -> None:
            if rec.acts and partition in floor.partitions:
                sampled.add(rec.event_id)

        ctx.progress(
            f"latency: {count:,} touchpoints at {rate:,.0f}/s "
            f"({sizes.latency_seconds:g} s; half the measured maximum unless --rate)"
        )
        lag_before = worker.histogram("rota_event_lag_seconds")
        achieved = publish_paced(ctx.bootstrap, topics.touchpoints, records, rate, note, delivered)
        wait_consumed(
            worker,
            count,
            baseline=consumed,
            progress=ctx.progress,
            label="latency",
            timeout=60 + count / 200,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(e in watcher.arrivals for e in published):
            time.sleep(0.1)
        latencies = _delays_ms(published, watcher.arrivals)
        floors = _delays_ms({e: published[e] for e in sampled}, floor.arrivals)
        lag_after = worker.histogram("rota_event_lag_seconds")
    finally:
        watcher.close()
        floor.close()
    p50, p95, p99, pmax = _quantiles(latencies, 0.5, 0.95, 0.99, 1.0)
    f50, f99 = _quantiles(floors, 0.5, 0.99)
    ctx.progress(
        f"  latency p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms, max {pmax:.1f} ms"
        f" (the broker alone: p50 {f50:.1f} ms, p99 {f99:.1f} ms)"
    )
    return {
        "offered_rate": rate,
        "achieved_rate": achieved,
        "seconds": sizes.latency_seconds,
        "actions_expected": len(published),
        "actions_received": len(latencies),
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "max_ms": pmax,
        # Publication -> a plain consumer, for one partition of the same touchpoints.
        "broker_p50_ms": f50,
        "broker_p99_ms": f99,
        "broker_sampled": len(sampled),
        "broker_received": len(floors),
        # The worker's own view (Kafka timestamp -> end of processing, bucketed): the
        # rest of the latency is producing the action and a consumer fetching it.
        "worker_event_lag_p50_ms": _ms(histogram_quantile(lag_before, lag_after, 0.5)),
        "worker_event_lag_p99_ms": _ms(histogram_quantile(lag_before, lag_after, 0.99)),
    }


def _delays_ms(published: dict[str, float], arrivals: dict[str, float]) -> list[float]:
    """Publication -> arrival, in ms, of each published record that arrived."""
    return [(arrivals[k] - t) * 1000 for k, t in published.items() if k in arrivals]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


# -- 3, 4, 5: timers, memory, recovery ------------------------------------------------


def timers_memory_recovery(ctx: Context, max_rate: float) -> tuple[Figures, Figures, Figures]:
    """One worker arms ``timers`` reminders (one customer each): most due in 30 days, and for
    each of ``timer_passes`` passes a burst due while a backlog of ordinary traffic is
    ingested (armed just before it, so ``timers`` are pending as it fires). A backlog is
    also ingested with no timer due before the first pass and after each. A pass's
    slowdown compares its ingestion with the mean of the idle ones either side (a single
    idle run moves by tens of per cent on a shared machine); the figure is the median
    over the passes. Before all of them one more backlog is ingested and not compared:
    the first time the worker meets a customer it reads and writes the least state, so
    an idle ingestion over customers it has never seen is the cheapest of all (measured:
    the state's read and decode 7 us per touchpoint in the first, 15 in the next), which
    overstated the first pass's slowdown. The action each fired timer emits gives its
    lateness. A last burst fired with nothing ingested gives the worker's CPU per fired
    timer, and with its CPU per touchpoint in the idle ingestions the slowdown that CPU
    implies. Then the worker's RSS, and a fresh worker with an empty data directory
    rebuilds its state from the changelogs."""
    sizes, progress, spec = ctx.sizes, ctx.progress, ctx.spec
    topics = ctx.topics("timers")
    passes = sizes.timer_passes
    window = max(2.0, sizes.timer_backlog / max(max_rate, 1.0))
    burst = int(max(100, min(sizes.timers // 2, sizes.timer_fire_rate * window)))
    far = sizes.timers - burst  # each pass arms its burst: ``timers`` pending as it fires
    worker = ctx.worker(topics, "timers")
    customers: set[bytes] = set()
    try:
        warm = Workload(spec, seed_offset=9).encoded(1)
        publish_burst(ctx.bootstrap, topics.touchpoints, warm)
        wait_consumed(worker, 1, progress=progress, label="timer worker start", timeout=120)
        rss_base = worker.rss_bytes()
        customers.update(r.key for r in warm)

        progress(f"timers: arming {far:,} timers due in 30 days")
        later = int(time.time() * 1000) + 30 * _DAY_MS
        _arm(
            ctx,
            worker,
            topics,
            Workload(spec, seed_offset=4).reminders(0, far, [later] * far),
            customers,
            timeout=300 + far / 500,
        )

        progress(
            f"timers: ingesting {sizes.timer_backlog:,} touchpoints to meet their customers"
            " (not compared)"
        )
        met = _ingest(ctx, worker, topics, seed_offset=_MEET_SEED, customers=customers)
        progress(f"timers: ingesting {sizes.timer_backlog:,} touchpoints, no timer due")
        idle = [_ingest(ctx, worker, topics, seed_offset=_IDLE_SEEDS, customers=customers)]
        firing: list[Ingestion] = []
        due_of: dict[str, int] = {}
        watcher = ArrivalWatcher(
            ctx.bootstrap, [topics.actions(REMINDER_CHANNEL)], keyed_by="customer"
        )
        late_before = worker.histogram("rota_timer_lateness_seconds")
        try:
            for k in range(passes):
                rate = sum(run.rate for run in idle) / len(idle)
                lead = 5.0 + burst * 40e-6 + 1.5 * burst / max(rate, 1.0)
                start_ms = int((time.time() + lead) * 1000)
                due = [start_ms + int(window * 1000 * n / burst) for n in range(burst)]
                progress(
                    f"timers: pass {k + 1}/{passes}: {burst:,} timers due over {window:.1f} s "
                    f"from {lead:.0f} s on ({burst / window:,.0f}/s) with "
                    f"{sizes.timers:,} pending"
                )
                soon = Workload(spec, seed_offset=_BURST_SEEDS + k).reminders(
                    far + k * burst, burst, due
                )
                due_of.update((r.key.decode(), d) for r, d in zip(soon, due, strict=True))
                _arm(ctx, worker, topics, soon, customers, timeout=300)
                backlog = Workload(spec, seed_offset=_BACKLOG_SEEDS + k).encoded(
                    sizes.timer_backlog
                )
                if late := _sleep_until(start_ms):
                    progress(f"  (arming ran {late:.1f} s past the first due time)")
                firing.append(_ingest(ctx, worker, topics, records=backlog, customers=customers))
                deadline = time.time() + window + 60
                while time.time() < deadline and len(watcher.arrivals) < (k + 1) * burst:
                    time.sleep(0.2)
                progress(f"timers: ingesting {sizes.timer_backlog:,} touchpoints, no timer due")
                idle.append(
                    _ingest(
                        ctx, worker, topics, seed_offset=_IDLE_SEEDS + k + 1, customers=customers
                    )
                )
                progress(f"  pass {k + 1}: {_pass_line(idle[k], firing[k], idle[k + 1])}")
            late_after = worker.histogram("rota_timer_lateness_seconds")
            arrivals = dict(watcher.arrivals)
        finally:
            watcher.close()
        lateness = [arrivals[c] - d / 1000 for c, d in due_of.items() if c in arrivals]
        idle_rate = sum(run.rate for run in idle) / len(idle)
        progress(f"timers: {burst:,} timers due at once, nothing ingested: CPU per fired timer")
        alone = _fire_alone(
            ctx, worker, topics, customers, first=far + passes * burst, count=burst, rate=idle_rate
        )
        l50, l99, lmax = _quantiles(lateness, 0.5, 0.99, 1.0)
        slowdowns = [_slowdown(idle[k], firing[k], idle[k + 1]) for k in range(passes)]
        slowdown = statistics.median(slowdowns)
        # The main thread's CPU above its idle use; the slowdown it implies is the share
        # of its busy time that fire_rate timers a second take (README, "Slowdown").
        tp_cpu = Cpu.mean([run.busy_per_event(alone.idle_cores) for run in idle])
        timer_cpu = alone.busy_per_timer
        cpu_slowdown = (
            burst / window * timer_cpu.main / (idle_rate * tp_cpu.main) if tp_cpu.main else 0.0
        )
        timer_figures: Figures = {
            "pending": sizes.timers,
            "passes": passes,
            "fired_expected": passes * burst,
            "fired_observed": len(lateness),
            "fire_rate": burst / window,
            "window_seconds": window,
            "lateness_p50_s": l50,
            "lateness_p99_s": l99,
            "lateness_max_s": lmax,
            # Idle ingestions: one before the first pass and one after each.
            "ingestion_idle_eps": idle_rate,
            "ingestion_idle_runs_eps": [run.rate for run in idle],
            "ingestion_firing_eps": sum(run.rate for run in firing) / passes,
            "ingestion_firing_runs_eps": [run.rate for run in firing],
            "ingestion_slowdowns": slowdowns,
            "ingestion_slowdown": slowdown,
            "cpu_per_touchpoint_us": tp_cpu.main * 1e6,
            "cpu_per_fired_timer_us": timer_cpu.main * 1e6,
            "fired_timer_in_touchpoints": timer_cpu.main / tp_cpu.main if tp_cpu.main else 0.0,
            "ingestion_slowdown_from_cpu": cpu_slowdown,
            "worker_idle_cores": alone.idle_cores.main,
            # Every thread of the worker: RocksDB's and librdkafka's too.
            "process_cpu_per_touchpoint_us": tp_cpu.process * 1e6,
            "process_cpu_per_fired_timer_us": timer_cpu.process * 1e6,
            "process_idle_cores": alone.idle_cores.process,
            # Each ingestion in order, the warm-up first: where the batch loop's time
            # went (a slowdown the CPU does not show would be waiting) and the cores the
            # worker's main thread, its process and the machine used (or had stolen).
            "ingestions": [met.figures("warm-up")]
            + [
                run.figures(kind)
                for k in range(passes)
                for kind, run in (("idle", idle[k]), ("firing", firing[k]))
            ]
            + [idle[passes].figures("idle")],
            # The worker's own histogram: due time to the tick that fired it, so it
            # leaves out processing the tick and producing the action.
            "worker_lateness_p50_s": histogram_quantile(late_before, late_after, 0.5),
            "worker_lateness_p99_s": histogram_quantile(late_before, late_after, 0.99),
        }
        each = " / ".join(f"{s:+.1%}" for s in slowdowns)
        progress(
            f"  lateness p50 {l50:.3f} s, p99 {l99:.3f} s; ingestion slowdown {slowdown:+.1%} "
            f"(median of {passes} passes: {each})"
        )
        progress(
            f"  main thread's CPU above idle: {tp_cpu.main * 1e6:,.0f} us per touchpoint, "
            f"{timer_cpu.main * 1e6:,.0f} us per fired timer: {cpu_slowdown:.1%} of ingestion at "
            f"{burst / window:,.0f} timers/s (every thread: {tp_cpu.process * 1e6:,.0f} and "
            f"{timer_cpu.process * 1e6:,.0f} us)"
        )
        samples = worker.samples()
        rss = worker.rss_bytes()
        estimate = total(samples, "rota_state_customers")
        n = len(customers)
        memory: Figures = {
            "rss_mib": rss / MIB,
            "rss_base_mib": rss_base / MIB,
            "customers": n,
            "customers_estimate": estimate,
            "mib_per_million_customers": (rss - rss_base) / MIB * 1_000_000 / n,
            "projected_rss_mib_at_1m": (rss_base + (rss - rss_base) * 1_000_000 / n) / MIB,
        }
        progress(
            f"memory: RSS {rss / MIB:,.0f} MiB with {n:,} customers "
            f"(+{memory['mib_per_million_customers']:,.0f} MiB per million over "
            f"{rss_base / MIB:,.0f} MiB at start)"
        )
    finally:
        worker.stop()
    recovery = _recover(ctx, topics, n)
    return timer_figures, memory, recovery


#: Seeds of the timer phase's generated traffic (offsets of ``WorkloadSpec.seed``):
#: every ingestion and burst is new events, never one the worker has seen.
_MEET_SEED, _IDLE_SEEDS, _BURST_SEEDS, _BACKLOG_SEEDS = 11, 20, 40, 60


def _slowdown(before: Ingestion, firing: Ingestion, after: Ingestion) -> float:
    """How much slower ``firing`` ingested than the mean of the idle runs either side."""
    idle = (before.rate + after.rate) / 2
    return 1 - firing.rate / idle if idle else 0.0


def _pass_line(before: Ingestion, firing: Ingestion, after: Ingestion) -> str:
    runs = (before, firing, after)

    def each(figure: Callable[[Ingestion], float], form: str) -> str:
        return "/".join(format(figure(run), form) for run in runs)

    shares = " | ".join(
        "/".join(f"{run.time_share.get(p, 0):.0%}" for p in WORKER_PHASES) for run in runs
    )
    return (
        f"{before.rate:,.0f}/s idle, {firing.rate:,.0f}/s firing, {after.rate:,.0f}/s idle: "
        f"{_slowdown(before, firing, after):+.1%}; {'/'.join(WORKER_PHASES)} {shares}; cores: "
        f"main thread {each(lambda r: r.cores.main, '.2f')}, "
        f"machine {each(lambda r: r.machine_cores.busy, '.2f')}, "
        f"stolen {each(lambda r: r.machine_cores.steal, '.2f')}"
    )


@dataclass(frozen=True)
class Ingestion:
    rate: float
    events: int
    #: The worker's CPU, the machine's, and the wall time, from before the publication
    #: to the end.
    cpu: Cpu
    machine: MachineCpu
    seconds: float
    #: The worker's batch loop: receive / decide / wait shares while it ingested.
    time_share: dict[str, float]
    #: The worker's garbage collections by generation while it ingested.
    collections: dict[str, int]

    @property
    def cores(self) -> Cpu:
        return self.cpu / self.seconds

    @property
    def machine_cores(self) -> MachineCpu:
        return self.machine / self.seconds

    def busy_per_event(self, idle: Cpu) -> Cpu:
        return self.cpu.busy_per(self.events, idle, self.seconds)

    def figures(self, kind: str) -> Figures:
        """This ingestion in the JSON: ``kind`` warm-up, idle or firing. The cores say
        whether the worker's main thread got a core while it ran or shared it (the
        machine's busy cores: every process, the broker and this benchmark's too)."""
        cores, machine = self.cores, self.machine_cores
        return {
            "kind": kind,
            "events_per_second": self.rate,
            "seconds": self.seconds,
            "time_share": self.time_share,
            "gc_collections": self.collections,
            "main_thread_cores": cores.main,
            "process_cores": cores.process,
            "machine_busy_cores": machine.busy,
            "machine_steal_cores": machine.steal,
        }


def _ingest(
    ctx: Context,
    worker: BenchWorker,
    topics: Topics,
    *,
    customers: set[bytes],
    seed_offset: int = 0,
    records: list[Generated] | None = None,
) -> Ingestion:
    if records is None:
        records = Workload(ctx.spec, seed_offset=seed_offset).encoded(ctx.sizes.timer_backlog)
    customers.update(r.key for r in records)
    base = worker.consumed()
    cpu, machine, began = worker.cpu_seconds(), machine_cpu(), time.monotonic()
    publish_burst(ctx.bootstrap, topics.touchpoints, records)
    run = wait_consumed(
        worker,
        len(records),
        baseline=base,
        progress=ctx.progress,
        label="ingestion",
        timeout=120 + len(records) / 500,
    )
    return Ingestion(
        run.rate,
        len(records),
        worker.cpu_seconds() - cpu,
        machine_cpu() - machine,
        time.monotonic() - began,
        run.time_share,
        run.collections,
    )


@dataclass(frozen=True)
class FiringAlone:
    #: CPU seconds per fired timer above the worker's idle use.
    busy_per_timer: Cpu
    #: Cores the worker uses with nothing to do (ticks, metrics scrapes, the consumer).
    idle_cores: Cpu


#: How often the worker's metrics are read while timing its CPU (a read costs it ~5 ms).
_CPU_POLL_S = 0.1


def _fire_alone(
    ctx: Context,
    worker: BenchWorker,
    topics: Topics,
    customers: set[bytes],
    *,
    first: int,
    count: int,
    rate: float,
) -> FiringAlone:
    """The worker's CPU per fired timer (its main thread's: ``BenchWorker.cpu_seconds``):
    ``count`` reminders armed, all due at one moment, fired with nothing else to do;
    its idle use, measured after with the same polling, is taken off. Touchpoint and
    timer costs are then measured alike, so their ratio does not move with the machine
    between two ingestions. ``rate``: how fast the worker ingests, for the time arming
    takes."""
    lead = 3.0 + 2 * count / max(rate, 1.0)
    due_at = int((time.time() + lead) * 1000)
    armed = Workload(ctx.spec, seed_offset=10).reminders(first, count, [due_at] * count)
    fired_before = worker.fired()  # before the arming: it may run past the due time
    _arm(ctx, worker, topics, armed, customers, timeout=300)
    if late := _sleep_until(due_at):
        ctx.progress(f"  (arming ran {late:.1f} s past the due time: the CPU per timer is low)")
    cpu, began = worker.cpu_seconds(), time.monotonic()
    deadline = began + 120
    while worker.fired() < fired_before + count:
        if time.monotonic() > deadline:
            raise WorkerFailed(f"{count:,} timers due, {worker.fired() - fired_before:,.0f} fired")
        time.sleep(_CPU_POLL_S)
    cpu, spent = worker.cpu_seconds() - cpu, time.monotonic() - began
    idle_cpu, idle_began = worker.cpu_seconds(), time.monotonic()
    while time.monotonic() - idle_began < 3.0:
        worker.fired()  # the same scrapes as while firing
        time.sleep(_CPU_POLL_S)
    idle = (worker.cpu_seconds() - idle_cpu) / (time.monotonic() - idle_began)
    return FiringAlone(cpu.busy_per(count, idle, spent), idle)


def _arm(
    ctx: Context,
    worker: BenchWorker,
    topics: Topics,
    records: list[Generated],
    customers: set[bytes],
    *,
    timeout: float,
) -> None:
    """Publish reminders (their customers noted in ``customers``) and wait until the
    worker has consumed them all: their timers are then set."""
    count = len(records)
    customers.update(r.key for r in records)
    base = worker.consumed()
    publish_burst(ctx.bootstrap, topics.touchpoints, records)
    del records  # a million of them: not held while the worker consumes
    wait_consumed(
        worker, count, baseline=base, progress=ctx.progress, label="arming", timeout=timeout
    )


def _sleep_until(at_ms: int) -> float:
    """Sleep until ``at_ms`` (epoch ms); the seconds it had already passed, else 0."""
    delay = at_ms / 1000 - time.time()
    if delay > 0:
        time.sleep(delay)
        return 0.0
    return -delay


def _recover(ctx: Context, topics: Topics, customers: int) -> Figures:
    ctx.progress(
        f"recovery: a worker with an empty data directory rebuilds {customers:,} customers"
    )
    worker = ctx.worker(topics, "recovered", app_id=f"{topics.prefix}-worker")
    try:
        marker = Workload(ctx.spec, seed_offset=8).encoded(1)
        publish_burst(ctx.bootstrap, topics.touchpoints, marker)
        run = wait_consumed(
            worker,
            1,
            progress=ctx.progress,
            label="recovery",
            timeout=300 + customers / 1000,
            interval=0.1,
        )
        seconds = run.first_at - worker.started
        time.sleep(1.5)  # the size gauges are refreshed on timer ticks
        estimate = total(worker.samples(), "rota_state_customers")
        rss = worker.rss_bytes()
    finally:
        worker.stop()
    ctx.progress(
        f"  resumed {seconds:.1f} s after start ({customers / seconds:,.0f} customers/s; "
        f"~{estimate:,.0f} customers in state)"
    )
    return {
        "customers": customers,
        "seconds": seconds,
        "customers_per_second": customers / seconds,
        "customers_estimate": estimate,
        "rss_mib": rss / MIB,
    }


# -- 6: the core alone ----------------------------------------------------------------


def core_alone(spec: WorkloadSpec, events: int, repeats: int = 3) -> Figures:
    """``decide`` over generated touchpoints in this process: one core, no I/O. Also
    timed with the state codec, as the worker pays it once per customer per batch.

    Each is timed ``repeats`` times from empty states and the best run is the figure,
    as ``timeit`` does: the core's work is the same each time, so a slower run
    measures something else on the machine (a neighbour on this VM's host took the
    same loop from 75k to 45k decisions/s within minutes); every run is reported.

    Python's cyclic garbage collector is paused while the core is timed: the core makes
    no reference cycles (``cycles_left``, the cycles found by walking the first run's
    states, says so), so refcounting frees all it allocates, and the collector's work
    here would be scanning the states this loop keeps in memory, which the worker keeps
    in RocksDB instead (measured: about half the time with it running)."""
    catalog = Catalog.from_yaml(journeys_yaml(spec))
    tps: list[Touchpoint] = [tp for tp, _ in Workload(spec, seed_offset=3).touchpoints(events)]
    encoded = [wire.encode_touchpoint(tp) for tp in tps]
    pure: list[float] = []
    with_codecs: list[float] = []
    actions = 0
    cycles_left: int | None = None
    for _ in range(repeats):
        states: dict[str, CustomerState] = {}
        actions = 0
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            for tp in tps:
                customer = tp.subject
                d = decide(states.get(customer), tp, catalog, customer_id=customer)
                states[customer] = d.state
                actions += len(d.actions)
            pure.append(events / (time.perf_counter() - started))
        finally:
            gc.enable()
        if cycles_left is None:
            cycles_left = cycles(states.values())
        del states
        gc.collect()

        blobs: dict[str, bytes] = {}
        started = time.perf_counter()
        for raw in encoded:
            tp = wire.decode_touchpoint(raw)
            customer = tp.subject
            blob = blobs.get(customer)
            state = CustomerState.from_bytes(blob) if blob is not None else None
            d = decide(state, tp, catalog, customer_id=customer)
            blobs[customer] = d.state.to_bytes()
            for action in d.actions:
                wire.encode_action(action)
        with_codecs.append(events / (time.perf_counter() - started))
    return {
        "journeys": len(catalog),
        "decisions": events,
        "actions": actions,
        "decisions_per_second": max(pure),
        "runs_decisions_per_second": pure,
        "cycles_left": cycles_left,
        "with_codecs_per_second": max(with_codecs),
        "runs_with_codecs_per_second": with_codecs,
    }


_SCALARS = (str, int, float, bool, type(None))


def cycles(roots: Iterable[object]) -> int:
    """The reference cycles among the values reachable from ``roots`` through Structs,
    dicts, tuples and lists. Found by walking them: the collector cannot see a cycle
    through the core's Structs, which it does not track (``gc=False``)."""
    done: set[int] = set()
    found = 0
    for root in roots:
        path: set[int] = set()  # the ancestors of what is popped next
        stack: list[tuple[object, bool]] = [(root, False)]
        while stack:
            value, leaving = stack.pop()
            key = id(value)
            if leaving:
                path.discard(key)
                done.add(key)
                continue
            if key in done:
                continue
            if key in path:
                found += 1
                continue
            if isinstance(value, Struct):
                children: Iterable[object] = [getattr(value, f) for f in value.__struct_fields__]
            elif isinstance(value, dict):
                children = [*value, *value.values()]
            elif isinstance(value, tuple | list):
                children = value
            else:
                continue
            path.add(key)
            stack.append((value, True))
            stack.extend((c, False) for c in children if not isinstance(c, _SCALARS))
    return found


def new_run_id() -> str:
    return uuid.uuid4().hex[:8]
