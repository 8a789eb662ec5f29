"""Baselines, run on the same broker and the same topic as Rota's throughput phase:

- ``faust``: a bare Faust agent that only consumes, in batches (``take_events``), set up
  like Rota's worker (aiokafka driver, uvloop, same buffer and session settings);
- ``loop``: a plain confluent-kafka consume -> rocksdict get/put -> produce loop.

Each runs in its own process (``python -m orchestrator.bench.baselines KIND ...``) so it
has a core to itself like the worker, and writes its timings as JSON to ``--result``:
the first batch seen (time, count) and when ``--count`` records were consumed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.broker import free_port
from orchestrator.kafka_security import client_config, faust_credentials, producer_config
from orchestrator.processes import spawn, tail, terminate

BATCH = 2000


def _write(result: Path, first: tuple[float, int], last: tuple[float, int]) -> None:
    tmp = result.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {"first_at": first[0], "first_count": first[1], "last_at": last[0], "count": last[1]}
        )
    )
    tmp.replace(result)


def run_faust(args: argparse.Namespace) -> int:
    import uvloop

    uvloop.install()
    import faust

    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.bootstrap}",
        broker_credentials=faust_credentials(),
        datadir=args.data_dir,
        web_port=free_port(),
        web_host="127.0.0.1",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.5,
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=4 * BATCH,
        topic_allow_declare=False,
    )
    topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw")
    result = Path(args.result)
    state: dict[str, Any] = {"n": 0, "first": None, "done": False}

    @app.agent(topic)
    async def consume(stream: Any) -> None:
        async for events in stream.take_events(BATCH, within=0.02):
            state["n"] += len(events)
            if state["first"] is None:
                state["first"] = (time.time(), state["n"])
            if state["n"] >= args.count and not state["done"]:
                state["done"] = True
                _write(result, state["first"], (time.time(), state["n"]))

    @app.task
    async def quiet() -> None:  # as the worker does: Faust leaves the root logger at DEBUG
        logging.root.setLevel(logging.WARNING)
        for name in ("aiokafka", "faust", "mode"):
            logging.getLogger(name).setLevel(logging.WARNING)

    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return 0


def run_loop(args: argparse.Namespace) -> int:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
    from rocksdict import Rdict

    consumer = Consumer(
        {
            **client_config(args.bootstrap),
            "group.id": args.app_id,
            "enable.auto.commit": False,
        }
    )
    meta = consumer.list_topics(args.topic, timeout=10).topics[args.topic]
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in meta.partitions])
    producer = Producer({**producer_config(args.bootstrap), "linger.ms": 5})
    db = Rdict(args.data_dir)
    out = args.topic + ".loop-out"
    n, first = 0, None
    try:
        while n < args.count:
            msgs = consumer.consume(BATCH, timeout=0.1)
            for msg in msgs:
                if msg.error() is not None:
                    continue
                key = msg.key() or b""
                previous = db.get(key)
                db[key] = msg.value() if previous is None else previous[:16] + msg.value()
                producer.produce(out, key=key, value=msg.value())
                n += 1
            producer.poll(0)
            if msgs and first is None:
                first = (time.time(), n)
        producer.flush(60)
        assert first is not None
        _write(Path(args.result), first, (time.time(), n))
    finally:
        db.close()
        consumer.close()
    return 0


def measure(
    kind: str,
    *,
    bootstrap: str,
    topic: str,
    count: int,
    workdir: Path,
    timeout: float,
) -> dict[str, float]:
    """Run one baseline over the first ``count`` records of ``topic``; returns its rate."""
    workdir.mkdir(parents=True, exist_ok=True)
    result = workdir / f"{kind}.json"
    log = workdir / f"{kind}.log"
    started = time.monotonic()
    proc = spawn(
        [
            sys.executable,
            "-m",
            "orchestrator.bench.baselines",
            kind,
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--count",
            str(count),
            "--result",
            str(result),
            "--data-dir",
            str(workdir / f"{kind}-data"),
            "--app-id",
            f"{topic}-{kind}-{workdir.name}-{os.getpid()}",  # a new group for each run
        ],
        log_path=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        while not result.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} baseline exited ({proc.returncode}):\n{tail(log)}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{kind} baseline timed out after {timeout:.0f} s:\n{tail(log)}")
            time.sleep(0.1)
    finally:
        terminate(proc, grace=10)
    data = json.loads(result.read_text())
    span = data["last_at"] - data["first_at"]
    rate = (data["count"] - data["first_count"]) / span if span > 0 else 0.0
    return {"events": data["count"], "seconds": span, "events_per_second": rate}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m orchestrator.bench.baselines")
    p.add_argument("kind", choices=("faust", "loop"))
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--result", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--app-id", required=True)
    args = p.parse_args(argv)
    return run_faust(args) if args.kind == "faust" else run_loop(args)


if __name__ == "__main__":
    sys.exit(main())
