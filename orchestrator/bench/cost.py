"""What one decision, one touchpoint, one fired timer and one record's delivery cost,
without Kafka: the steady measure to judge a change by.

Wall time on these VMs swings by half within minutes (the same core loop ran at 75k and
then 45k decisions/s), so a change of a few percent cannot be seen between two timed
runs. The instructions the interpreter executes do not swing: under valgrind's
callgrind the same run counts the same within a few hundredths of a percent. So::

    python -m orchestrator.bench.cost                 # wall time per item, best of 3
    python -m orchestrator.bench.cost --instructions  # instructions per item (valgrind)

Four kinds, each over the benchmark's workload (50 journeys):

- ``decision``: ``core.decide`` on a generated touchpoint, states kept in a dict;
- ``touchpoint``: ``Processor.process`` on its encoded record, as the worker runs it
  (8 partitions, batches of 20, each customer's state read and written back per batch)
  over an in-memory partition backend - both after a warm-up (``WARM``), so that most
  touchpoints find their customer's state, as in the benchmark;
- ``timer``: one reminder firing through ``Processor.process`` (its state read, the
  decision, the action and the journey transitions encoded);
- ``delivery``: one record through Faust's side of receiving - the fetcher's loop, the
  hand-over to the agent's channel, the agent's batch and the acknowledgement - with the
  worker's patches (``worker/faust_context.py``), the fetches scripted
  (``bench/delivery.py``): what a touchpoint pays before ``Processor.process`` and a
  fired timer does not (one tick fires hundreds). ``timer / (touchpoint + delivery)``
  is where the benchmark's ingestion slowdown while timers fire comes from (README,
  "Slowdown while timers fire"). Not counted anywhere: aiokafka's fetching thread.

With ``--instructions`` each kind runs twice in a child under callgrind, once with and
once without its measured part (same setup); the difference over the count is the
figure, so the setup cancels out. That is done for three hash seeds and the median is
the figure (``instructions_per_item`` says why); the setup's objects are frozen out of
the cyclic collector's reach, which still counts its passes over what the measured
part allocates.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from faust.types import TP

from orchestrator.bench import delivery
from orchestrator.bench.workload import Workload, WorkloadSpec, journeys_yaml
from orchestrator.core.decide import decide
from orchestrator.core.state import CustomerState
from orchestrator.journey.catalog import Catalog
from orchestrator.records import Touchpoint
from orchestrator.topics import Topics
from orchestrator.worker import timers
from orchestrator.worker.faust_context import batches
from orchestrator.worker.process import Incoming, Processor

KINDS = ("decision", "touchpoint", "timer", "delivery")
PARTITIONS = 8
BATCH = 20
SPEC = WorkloadSpec(customers=2_000)
#: The clock of every scenario: a fixed one, so that each run does the same work.
NOW = 1_800_000_000_000
T = TypeVar("T")


class MemoryBackend:
    """One partition's tables in memory (``worker.process.PartitionBackend``)."""

    def __init__(self) -> None:
        self.states: dict[str, bytes] = {}
        self.index: list[bytes] = []

    def get_state(self, customer: str) -> bytes | None:
        return self.states.get(customer)

    def put_state(self, customer: str, value: bytes) -> None:
        self.states[customer] = value

    def delete_state(self, customer: str) -> None:
        self.states.pop(customer, None)

    def put_timer(self, index_key: bytes) -> None:
        i = bisect.bisect_left(self.index, index_key)
        if i == len(self.index) or self.index[i] != index_key:
            self.index.insert(i, index_key)

    def write(self, states: Sequence[tuple[str, bytes | None]], fired: Iterable[bytes]) -> None:
        for customer, value in states:
            if value is None:
                self.states.pop(customer, None)
            else:
                self.states[customer] = value
        for index_key in fired:
            i = bisect.bisect_left(self.index, index_key)
            if i < len(self.index) and self.index[i] == index_key:
                del self.index[i]

    def due_timers(self, now: int, limit: int) -> list[bytes]:
        end = bisect.bisect_left(self.index, timers.upper_bound(now))
        return self.index[: min(end, limit)]


class _Worker:
    """``Processor.process`` over in-memory partitions, fed as the worker feeds it."""

    def __init__(self, catalog: Catalog) -> None:
        self.topics = Topics("cost")
        self.processor = Processor(catalog, self.topics)
        self.backends = [MemoryBackend() for _ in range(PARTITIONS)]

    def feed(self, records: Sequence[tuple[bytes, bytes]], now: int) -> int:
        """Process (key, value) touchpoints in per-partition batches; the outputs made."""
        parts: list[list[Incoming]] = [[] for _ in range(PARTITIONS)]
        for offset, (key, value) in enumerate(records):
            p = zlib.crc32(key) % PARTITIONS
            parts[p].append(Incoming(self.topics.touchpoints, p, offset, key, value, now))
        out = 0
        for start in range(0, max(map(len, parts)), BATCH):
            for p, part in enumerate(parts):
                if chunk := part[start : start + BATCH]:
                    out += self._process(chunk, p, now)
        return out

    def fire(self, now: int) -> int:
        """Fire every timer due by ``now``; the outputs made."""
        return sum(self._process([], p, now) for p in range(PARTITIONS))

    def _process(self, records: list[Incoming], partition: int, now: int) -> int:
        backend = self.backends[partition]
        result = self.processor.process(records, backend, now=now, defer_state=True)
        result.apply_state()
        return len(result.out)


def scenario(kind: str, count: int) -> tuple[Callable[[], int], int]:
    """The measured part of ``kind`` over ``count`` items, its setup done, and the
    items it handles. The part returns the records it sent (decisions: the actions)."""
    catalog = Catalog.from_yaml(journeys_yaml(SPEC))
    now = NOW
    if kind == "decision":
        warm, measured = split_warm(
            [tp for tp, _ in Workload(SPEC, seed_offset=3).touchpoints(WARM + count, now)]
        )
        states: dict[str, CustomerState] = {}

        def decisions(tps: list[Touchpoint]) -> int:
            actions = 0
            for tp in tps:
                c = tp.subject
                d = decide(states.get(c), tp, catalog, customer_id=c)
                states[c] = d.state
                actions += len(d.actions)
            return actions

        decisions(warm)
        return lambda: decisions(measured), len(measured)
    worker = _Worker(catalog)
    if kind == "touchpoint":
        generated = Workload(SPEC, seed_offset=3).encoded(WARM + count, now)
        warm_records, measured_records = split_warm([(g.key, g.value) for g in generated])
        worker.feed(warm_records, now)
        return lambda: worker.feed(measured_records, now), len(measured_records)
    if kind == "timer":
        due = now + 3_600_000
        armed = Workload(SPEC).reminders(0, count, [due] * count, now)
        worker.feed([(g.key, g.value) for g in armed], now)
        return lambda: worker.fire(due), count
    if kind == "delivery":
        generated = Workload(SPEC, seed_offset=3).encoded(count, now)
        return _deliveries([(g.key, g.value) for g in generated]), count
    raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")


#: Records per fetch in ``delivery``: about what the worker's batches average in the
#: benchmark's throughput phase (~165).
FETCH = 160


def _deliveries(records: list[tuple[bytes, bytes]]) -> Callable[[], int]:
    """``records`` fetched by Faust's consumer (scripted, ``FETCH`` at a time over
    ``PARTITIONS``), handed over to the worker's channel, taken in the worker's batches
    and acknowledged as its pipeline acknowledges them."""
    loop = asyncio.new_event_loop()
    topic = Topics("cost").touchpoints
    tps = [TP(topic, p) for p in range(PARTITIONS)]
    fetches: list[dict[TP, list[Any]]] = []
    for start in range(0, len(records), FETCH):
        fetch: dict[TP, list[Any]] = {}
        for i, (key, value) in enumerate(records[start : start + FETCH], start):
            tp = tps[i % PARTITIONS]
            fetch.setdefault(tp, []).append(delivery.record(tp, i // PARTITIONS, key, value))
        fetches.append(fetch)

    async def build() -> tuple[Any, Any, delivery.ScriptedFetches]:
        app = delivery.app(buffer=len(records) + 1)
        channel = delivery.raw_channel(app, topic)
        scripted = delivery.ScriptedFetches(app, fetches)
        scripted.subscribe(channel, *tps)
        return app, channel, scripted

    app, channel, scripted = loop.run_until_complete(build())

    async def deliver() -> int:
        await scripted.drain()
        taken = 0
        # Batches of a fetch each, taken at once: the worker waits for them instead.
        async with contextlib.aclosing(batches(app, channel, FETCH, 0.0)) as taking:
            async for events in taking:
                for event in events:
                    event.message.ack(app.consumer)
                taken += len(events)
                if taken >= len(records):
                    break
        return taken

    return lambda: loop.run_until_complete(deliver())


#: Touchpoints decided before the measured ones: one per customer on average, so that
#: about two in three measured touchpoints find their customer's state (and read and
#: write it), as in the benchmark's throughput phase (300,000 touchpoints over 100,000
#: customers: ~68 %). Without it most would be a new customer's first event.
WARM = SPEC.customers


def split_warm(items: list[T]) -> tuple[list[T], list[T]]:
    """The warm-up and the measured part of a scenario's generated items."""
    return items[:WARM], items[WARM:]


def seconds_per_item(kind: str, count: int, repeats: int = 3) -> float:
    """The best of ``repeats`` runs, each from fresh states, with the cyclic collector
    paused as in the benchmark's core phase (the loop makes no cycles)."""
    best = float("inf")
    for _ in range(repeats):
        run, items = scenario(kind, count)
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            run()
            best = min(best, (time.perf_counter() - started) / items)
        finally:
            gc.enable()
    return best


def instructions_per_item(kind: str, count: int, seeds: int = 3) -> list[float]:
    """Instructions per item under callgrind, (with - without the measured part) /
    count, once per hash seed ``0 .. seeds-1``, sorted. Two runs with one seed count
    the same within a few hundredths of a percent; the seed moves the count by up to
    ~6 % (the same code, 500 decisions: 65.7k, 61.7k and 61.7k with seeds 1, 2, 3), and
    so may any change to the setup or the imports, by moving what lies where in dicts
    and the allocator. So compare medians over seeds, and trust differences larger
    than the spread. The runs go two at a time (valgrind runs one thread)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    runs = [(seed, measure) for seed in range(seeds) for measure in (True, False)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = list(pool.map(lambda r: _callgrind(valgrind, kind, count, *r), runs))
    return sorted((counts[i] - counts[i + 1]) / count for i in range(0, len(counts), 2))


def _callgrind(valgrind: str, kind: str, count: int, seed: int, measure: bool) -> int:
    cmd = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    cmd += ["-m", "orchestrator.bench.cost", "--child", kind, "--count", str(count)]
    cmd += [] if measure else ["--setup-only"]
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run failed ({' '.join(cmd)}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m orchestrator.bench.cost",
        description="Cost of one decision, touchpoint, fired timer and delivery, without Kafka.",
    )
    p.add_argument("--instructions", action="store_true", help="count instructions (valgrind)")
    p.add_argument("--count", type=int, help="items per kind (default 4000, 500 under valgrind)")
    p.add_argument("--seeds", type=int, default=3, help="hash seeds per kind under valgrind")
    p.add_argument("--kind", choices=KINDS, action="append", help="only these kinds")
    p.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    p.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:  # one callgrind run: the scenario, with or without its measured part
        run, items = scenario(args.child, args.count)
        # The collector's passes over the setup's objects would come when the setup's
        # allocations say, and so move with any change to it (or to the imports).
        gc.collect()
        gc.freeze()
        if not args.setup_only:
            print(f"{items} {args.child}s: {run()} records out", flush=True)
        os._exit(0)  # no teardown, whose work varies with the seed
    count = args.count or (500 if args.instructions else 4000)
    per_item: dict[str, float] = {}
    for kind in args.kind or KINDS:
        if args.instructions:
            each = instructions_per_item(kind, count, args.seeds)
            per_item[kind] = statistics.median(each)
            spread = " / ".join(f"{n:,.0f}" for n in each)
            print(f"{kind:<11} {per_item[kind]:>9,.0f} instructions ({spread})", flush=True)
        else:
            per_item[kind] = seconds_per_item(kind, count)
            print(f"{kind:<11} {per_item[kind] * 1e6:>9.1f} us", flush=True)
    if "timer" in per_item and "touchpoint" in per_item:
        ratio = per_item["timer"] / per_item["touchpoint"]
        print(f"a fired timer costs {ratio:.2f} touchpoints in Processor.process", end="")
        if "delivery" in per_item:  # only a touchpoint is delivered by Faust
            whole = per_item["timer"] / (per_item["touchpoint"] + per_item["delivery"])
            print(f", {whole:.2f} once a touchpoint's delivery is counted", end="")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
