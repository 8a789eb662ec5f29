"""A ``rota worker`` child process as the benchmark sees it: started with its own topic
prefix, app id and data directory, observed only through its ``/metrics`` and
``/proc`` - the way an SRE would see it."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Self

from orchestrator.broker import free_port
from orchestrator.processes import spawn, tail, terminate
from orchestrator.run import Samples, scrape, total

Progress = Callable[[str], None]
#: Seconds between scrapes while a worker is busy (see ``wait_consumed``).
SLOW_POLL = 1.0


class WorkerFailed(RuntimeError):
    """The worker exited or stalled; the message carries the end of its log."""


@dataclass(frozen=True)
class WorkerConfig:
    bootstrap: str
    prefix: str
    app_id: str
    journeys: Path
    data_dir: Path
    log_path: Path
    partitions: int = 8
    extra_env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _Seconds:
    """CPU seconds, field by field: two readings' difference, a reading over wall
    seconds (cores), the mean of several."""

    def _values(self) -> list[float]:
        return [getattr(self, f.name) for f in fields(self)]

    def __sub__(self, other: Self) -> Self:
        return type(self)(*(a - b for a, b in zip(self._values(), other._values(), strict=True)))

    def __truediv__(self, seconds: float) -> Self:
        """CPU seconds over ``seconds`` of wall time: cores."""
        return type(self)(*(a / seconds for a in self._values()))

    @classmethod
    def mean(cls, values: Sequence[Self]) -> Self:
        columns = zip(*(v._values() for v in values), strict=True)
        return cls(*(sum(column) / len(values) for column in columns))


@dataclass(frozen=True)
class Cpu(_Seconds):
    """CPU seconds (or cores) of the worker's main thread and of its whole process."""

    main: float
    process: float

    def busy_per(self, events: int, idle: Cpu, seconds: float) -> Cpu:
        """Per event, above the worker's ``idle`` use (cores) over ``seconds``."""
        return Cpu(
            max(0.0, self.main - idle.main * seconds) / events,
            max(0.0, self.process - idle.process * seconds) / events,
        )


@dataclass(frozen=True)
class MachineCpu(_Seconds):
    """CPU seconds of the whole machine (every process, the broker's too): busy, and
    stolen by the hypervisor - time the VM wanted a core and its host gave it to
    another guest."""

    busy: float
    steal: float


def machine_cpu() -> MachineCpu:
    """The machine's CPU seconds so far, from ``/proc/stat`` (Linux)."""
    with open("/proc/stat", encoding="ascii") as fh:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, fh.readline().split()[1:9]
        )
    tick = os.sysconf("SC_CLK_TCK")
    return MachineCpu((user + nice + system + irq + softirq) / tick, steal / tick)


class BenchWorker:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.metrics_port = free_port()
        env = {
            **os.environ,
            "ROTA_KAFKA_BOOTSTRAP": config.bootstrap,
            "ROTA_TOPIC_PREFIX": config.prefix,
            "ROTA_APP_ID": config.app_id,
            "ROTA_PARTITIONS": str(config.partitions),
            "ROTA_JOURNEYS": str(config.journeys),
            "ROTA_DATA_DIR": str(config.data_dir),
            "ROTA_METRICS_PORT": str(self.metrics_port),
            # No caps or quiet hours: the benchmark measures the engine, and every offer
            # event must produce its action whatever the time of day.
            "ROTA_POLICY": "none",
            "PYTHONUNBUFFERED": "1",
            **dict(config.extra_env),
        }
        self.started = time.monotonic()
        self.proc = spawn(
            [sys.executable, "-m", "orchestrator.cli", "worker"], log_path=config.log_path, env=env
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def samples(self) -> Samples:
        try:
            return scrape(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5.0)
        except OSError:
            self.check_alive()
            return {}

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise WorkerFailed(
                f"worker exited with code {self.proc.returncode}; last lines of "
                f"{self.config.log_path}:\n{tail(self.config.log_path)}"
            )

    def histogram(self, name: str) -> dict[float, float]:
        """Cumulative bucket counts of a histogram: {upper bound: count}."""
        out: dict[float, float] = {}
        for (sample, labels), value in self.samples().items():
            if sample == f"{name}_bucket":
                le = float(dict(labels)["le"])
                out[le] = out.get(le, 0.0) + value
        return out

    def consumed(self) -> float:
        return total(self.samples(), "rota_events_consumed_total")

    def counters(self) -> Counters:
        """What the worker counted so far, from one scrape of ``/metrics``."""
        phases: dict[str, float] = {}
        collections: dict[str, float] = {}
        for (sample, labels), value in self.samples().items():
            if sample == "rota_worker_seconds_total":
                phases[dict(labels)["phase"]] = value
            elif sample == "python_gc_collections_total":
                collections[dict(labels)["generation"]] = value
        return Counters(phases, collections)

    def rss_bytes(self) -> int:
        """Resident set size, from /proc (Linux)."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise WorkerFailed("no VmRSS in /proc status")

    def cpu_seconds(self) -> Cpu:
        """User and system CPU seconds so far of the worker's main thread and of the
        whole process (Linux). The main thread decides, bound by the GIL: what it
        spends on one thing it cannot spend on another. RocksDB's and librdkafka's
        threads run beside it, on the machine's other core."""
        return Cpu(
            self._cpu(f"/proc/{self.pid}/task/{self.pid}/stat"),
            self._cpu(f"/proc/{self.pid}/stat"),
        )

    @staticmethod
    def _cpu(stat: str) -> float:
        with open(stat, encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()  # after the command's name
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def fired(self) -> float:
        return total(self.samples(), "rota_timers_fired_total")

    def stop(self) -> int:
        return terminate(self.proc, grace=30)


@dataclass(frozen=True)
class Counters:
    #: ``rota_worker_seconds`` by phase: where the worker's batch loop spent its time.
    phases: dict[str, float]
    #: ``python_gc_collections_total`` by generation ("0", "1", "2"; "2" is a full one).
    collections: dict[str, float]


@dataclass(frozen=True)
class Consumption:
    """When a worker consumed a known number of events: first seen to all seen."""

    first_at: float
    first_count: float
    last_at: float
    last_count: float
    started_at: float
    #: ``BenchWorker.counters`` at the first and the last sample.
    at_first: Counters
    at_last: Counters

    @property
    def rate(self) -> float:
        span = self.last_at - self.first_at
        return (self.last_count - self.first_count) / span if span > 0 else 0.0

    @property
    def seconds(self) -> float:
        return self.last_at - self.first_at

    @property
    def time_share(self) -> dict[str, float]:
        """Each phase's share of the worker's batch loop while it consumed."""
        after, before = self.at_last.phases, self.at_first.phases
        spent = {phase: after[phase] - before.get(phase, 0.0) for phase in after}
        whole = sum(spent.values())
        return {phase: t / whole for phase, t in spent.items()} if whole > 0 else {}

    @property
    def collections(self) -> dict[str, int]:
        """The garbage collector's runs by generation while the worker consumed."""
        after, before = self.at_last.collections, self.at_first.collections
        return {gen: round(n - before.get(gen, 0.0)) for gen, n in sorted(after.items())}


def wait_consumed(
    worker: BenchWorker,
    target: float,
    *,
    progress: Progress,
    label: str,
    timeout: float,
    baseline: float = 0.0,
    interval: float = 0.1,
) -> Consumption:
    """Poll ``/metrics`` until the worker has consumed ``target`` events more than
    ``baseline``. The rate counts from the first sample showing progress, so start-up
    and consumer-group joins are not part of it.

    A scrape costs the worker CPU it would otherwise spend on touchpoints, and the
    baselines are not scraped at all: ~10 ms each with the ``*_created`` series (py-spy:
    at 20 scrapes/s the metrics thread took a fifth of the worker's time; at one every
    0.5 s, 4.5 % of its samples), ~5 ms without them. So while the worker works the poll
    slows down to ``SLOW_POLL`` (a Prometheus scrapes every 15-30 s) and speeds up again
    near the expected end, where each pause is a quarter of the time expected to be left.
    """
    started = time.monotonic()
    deadline = started + timeout
    first: tuple[float, float] | None = None
    counted: Counters | None = None
    last_report = started
    pause = interval
    while True:
        now = time.monotonic()
        done = worker.consumed() - baseline
        if first is None and done > 0:
            first = (now, done)
            counted = worker.counters()
        if first is not None and done > first[1] and now > first[0]:
            rate = (done - first[1]) / (now - first[0])
            pause = min(SLOW_POLL, max(interval, (target - done) / rate / 4))
        if done >= target and first is not None and counted is not None:
            return Consumption(first[0], first[1], now, done, started, counted, worker.counters())
        if now > deadline:
            worker.check_alive()
            raise WorkerFailed(
                f"{label}: consumed {done:,.0f} of {target:,.0f} in {timeout:.0f} s; "
                f"log {worker.config.log_path}:\n{tail(worker.config.log_path)}"
            )
        if now - last_report >= 2.0:
            last_report = now
            progress(f"  {label}: {done:,.0f}/{target:,.0f} consumed")
        time.sleep(pause)


def histogram_quantile(
    before: dict[float, float], after: dict[float, float], q: float
) -> float | None:
    """The ``q`` quantile of what a Prometheus histogram observed between two scrapes,
    interpolated within its bucket (as PromQL's ``histogram_quantile`` does)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower
