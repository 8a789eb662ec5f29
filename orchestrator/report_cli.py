"""``rota report``: read what the workers recorded and print the journey report.

The arithmetic is ``orchestrator/report.py``; this module only reads the analytics topic
(``JourneyTransition``) and every action topic (``NextBestAction``) of the prefix, and
prints. Partitions are assigned (no consumer group, nothing committed) and read from the
beginning to the end they had when the command started, so a report is a consistent
snapshot of the topics; records published meanwhile wait for the next run. The end is
the offset after the last readable record (``worker.faust_context.true_end_offsets``):
some brokers, the embedded one among them, report a high watermark short of it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from orchestrator import report, wire
from orchestrator.analytics import JourneyTransition
from orchestrator.journey.duration import parse_duration
from orchestrator.kafka_security import client_config
from orchestrator.records import NextBestAction
from orchestrator.settings import Settings
from orchestrator.topics import Topics

#: Below this many records, reading is quick enough to need no progress lines.
PROGRESS_MIN = 20_000
PROGRESS_EVERY_S = 1.0


class ReportError(Exception):
    """The report cannot be read; the message says why and what to do."""


@dataclass
class Records:
    """What was read, already filtered to the journeys asked for."""

    transitions: list[JourneyTransition] = field(default_factory=list)
    actions: list[NextBestAction] = field(default_factory=list)
    undecodable: int = 0
    read: int = 0
    partitions: int = 0


def read_records(
    bootstrap: str,
    topics: Topics,
    *,
    journeys: Collection[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    idle_timeout: float = 30.0,
) -> Records:
    """Every transition and action recorded under ``topics.prefix`` up to now.
    ``progress(read, total)`` is called as records arrive."""
    from orchestrator.worker.faust_context import true_end_offsets  # imports Faust: late

    consumer = Consumer(
        {**client_config(bootstrap), "group.id": "rota-report", "enable.auto.commit": False}
    )
    try:
        try:
            meta = consumer.list_topics(timeout=15)
        except KafkaException as exc:
            raise ReportError(f"cannot reach Kafka at {bootstrap}: {exc.args[0]}") from exc
        if topics.analytics not in meta.topics:
            raise ReportError(
                f"no topic {topics.analytics} on {bootstrap}: nothing has been recorded "
                f"under the prefix {topics.prefix!r}. Workers create it when they start; "
                "check ROTA_TOPIC_PREFIX, and that the workers run a Rota version that "
                "records transitions."
            )
        action_topics = sorted(t for t in meta.topics if t.startswith(topics.actions("")))
        wanted = [topics.analytics, *action_topics]
        starts: dict[tuple[str, int], int] = {}
        reported: dict[tuple[str, int], int] = {}
        for topic in wanted:
            for partition in meta.topics[topic].partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=15, cached=False
                )
                starts[(topic, partition)], reported[(topic, partition)] = low, high
        ends = true_end_offsets(bootstrap, reported)
        todo = {tp: end for tp, end in ends.items() if end > max(starts[tp], 0)}
        total = sum(end - max(starts[tp], 0) for tp, end in todo.items())
        out = Records(partitions=len(todo))
        if not todo:
            return out
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in todo])
        journey_ids = set(journeys) if journeys is not None else None
        last_record = last_report = time.monotonic()
        while todo:
            msgs = consumer.consume(2000, timeout=0.5)
            now = time.monotonic()
            if msgs:
                last_record = now
            elif now - last_record > idle_timeout:
                raise ReportError(
                    f"no record arrived for {idle_timeout:.0f} s with {total - out.read} "
                    f"still to read from {len(todo)} partition(s); is the cluster healthy?"
                )
            for msg in msgs:
                if msg.error() is not None:
                    continue
                tp = (msg.topic() or "", msg.partition() or 0)
                end = todo.get(tp)
                offset = msg.offset() or 0
                if end is None or offset >= end:
                    continue  # after the snapshot, or a partition already done
                if offset + 1 >= end:
                    del todo[tp]
                out.read += 1
                _decode(msg.topic() == topics.analytics, msg.value() or b"", out, journey_ids)
            if progress is not None and (now - last_report >= PROGRESS_EVERY_S or not todo):
                last_report = now
                progress(out.read, total)
        return out
    finally:
        consumer.close()


def _decode(analytics: bool, value: bytes, out: Records, journeys: set[str] | None) -> None:
    try:
        if analytics:
            t = wire.decode_transition(value)
            if journeys is None or t.journey_id in journeys:
                out.transitions.append(t)
        else:
            a = wire.decode_action(value)
            if journeys is None or a.journey_id in journeys:
                out.actions.append(a)
    except wire.DecodeError:
        out.undecodable += 1


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="rota report",
        description="Per journey: entries, conversions, the step funnel, split arms against "
        "the holdout (lift, 95 % CI, p-value) and attribution of conversions to channels, "
        "from the analytics and action topics of the cluster (ROTA_KAFKA_BOOTSTRAP).",
    )
    p.add_argument("--journey", action="append", metavar="ID", help="only this one (repeatable)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--window",
        metavar="SPAN",
        help="which entries to measure: a duration up to now (7d, 12h) or FROM..UNTIL "
        "(ISO-8601 or epoch ms; either side may be empty). Default: all",
    )
    p.add_argument(
        "--half-life",
        default="7d",
        metavar="DURATION",
        help="time-decay attribution: a touch this much older than another counts half "
        "(default 7d)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=30.0,
        help="give up when no record arrives for this many seconds (default 30)",
    )
    args = p.parse_args(argv)
    settings = Settings.from_env()
    bootstrap = settings.bootstrap()
    try:
        half_life = parse_duration(args.half_life)
        if half_life <= 0:
            raise ValueError(f"the half-life must be positive, got {args.half_life!r}")
        window = report.parse_window(args.window, settings.clock.now()) if args.window else None
    except ValueError as exc:
        print(f"rota report: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        records = read_records(
            bootstrap,
            settings.topics,
            journeys=args.journey,
            progress=_progress_printer(),
            idle_timeout=args.timeout,
        )
    except (ReportError, RuntimeError) as exc:
        print(f"rota report: {exc}", file=sys.stderr)
        return 2
    print(
        f"rota report: read {records.read:,} records ({len(records.transitions):,} transitions, "
        f"{len(records.actions):,} actions) from {records.partitions} partition(s) "
        f"in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    if records.undecodable:
        print(f"rota report: {records.undecodable} undecodable record(s) skipped", file=sys.stderr)
    result = report.build(
        records.transitions,
        records.actions,
        journeys=args.journey,
        window=window,
        half_life_ms=half_life,
    )
    for missing in sorted(set(args.journey or ()) - {j.journey_id for j in result.journeys}):
        print(f"rota report: no entries of journey {missing!r} recorded", file=sys.stderr)
    if args.format == "json":
        sys.stdout.write(json.dumps(report.to_json(result), indent=2) + "\n")
    else:
        sys.stdout.write(report.to_text(result))
    return 0


def _progress_printer() -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        if total >= PROGRESS_MIN:
            print(
                f"rota report: read {done:,} of {total:,} records ({done / total:.0%})",
                file=sys.stderr,
                flush=True,
            )

    return show
