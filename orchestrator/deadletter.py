"""``rota deadletter list|replay``: look at what was dead-lettered and, after a fix, send
it back where it came from.

Replay re-publishes each record's original key and bytes to its source topic,
unchanged; the engine de-duplicates by event id, so replaying twice is harmless.
Records are read by assigning every partition (no consumer group), from the beginning
or from ``--since``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from orchestrator import wire
from orchestrator.kafka_security import client_config, producer_config
from orchestrator.records import iso, parse_time
from orchestrator.settings import Settings


@dataclass(frozen=True)
class Entry:
    partition: int
    offset: int
    record: wire.DeadLetter | None
    error: str | None = None


def read(bootstrap: str, topic: str, *, since_ms: int = 0, idle: float = 2.0) -> Iterator[Entry]:
    """Every dead letter of ``topic``, until no record arrived for ``idle`` seconds."""
    consumer = Consumer(
        {
            **client_config(bootstrap),
            "group.id": "rota-deadletter-cli",
            "enable.auto.commit": False,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise SystemExit(f"rota deadletter: topic {topic} does not exist")
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        last = time.monotonic()
        while time.monotonic() - last < idle:
            for msg in consumer.consume(500, timeout=0.2):
                if msg.error() is not None:
                    continue
                last = time.monotonic()
                partition, offset = msg.partition() or 0, msg.offset() or 0
                try:
                    dl = wire.decode_deadletter(msg.value() or b"")
                except wire.DecodeError as exc:
                    yield Entry(partition, offset, None, str(exc))
                    continue
                if dl.failed_at >= since_ms:
                    yield Entry(partition, offset, dl)
    finally:
        consumer.close()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="rota deadletter", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="print dead letters (one JSON object per line)")
    rp = sub.add_parser("replay", help="re-publish dead letters to their source topics")
    for cmd in (ls, rp):
        cmd.add_argument("--since", help="only records dead-lettered at or after this time")
        cmd.add_argument("--reason", action="append", help="only these reasons (repeatable)")
    ls.add_argument("--bytes", action="store_true", help="include the original bytes (hex)")
    rp.add_argument("--dry-run", action="store_true", help="say what would be replayed")
    args = p.parse_args(argv)
    settings = Settings.from_env()
    bootstrap = settings.bootstrap()
    since = parse_time(args.since) if args.since else 0
    entries = (
        e
        for e in read(bootstrap, settings.topics.deadletter, since_ms=since)
        if e.record is None or not args.reason or e.record.reason in args.reason
    )
    if args.command == "list":
        return _list(entries, with_bytes=args.bytes)
    return _replay(bootstrap, entries, dry_run=args.dry_run)


def _list(entries: Iterator[Entry], *, with_bytes: bool) -> int:
    reasons: Counter[str] = Counter()
    for e in entries:
        if e.record is None:
            print(json.dumps({"partition": e.partition, "offset": e.offset, "error": e.error}))
            continue
        dl = e.record
        reasons[dl.reason] += 1
        row = {
            "partition": e.partition,
            "offset": e.offset,
            "reason": dl.reason,
            "detail": dl.detail.splitlines()[0] if dl.detail else "",
            "component": dl.component,
            "failed_at": iso(dl.failed_at),
            "source": f"{dl.source_topic}[{dl.source_partition}]@{dl.source_offset}",
            "value_bytes": len(dl.original_value or b""),
        }
        if with_bytes:
            row["key_hex"] = (dl.original_key or b"").hex()
            row["value_hex"] = (dl.original_value or b"").hex()
        print(json.dumps(row))
    summary = ", ".join(f"{r}={n}" for r, n in sorted(reasons.items())) or "none"
    print(f"# {sum(reasons.values())} dead letters: {summary}", file=sys.stderr)
    return 0


def _replay(bootstrap: str, entries: Iterator[Entry], *, dry_run: bool) -> int:
    producer = Producer({**producer_config(bootstrap), "enable.idempotence": True})
    failures: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    replayed: Counter[str] = Counter()
    for e in entries:
        dl = e.record
        if dl is None or dl.original_value is None or dl.source_partition < 0:
            continue  # unreadable dead letters and timer errors have nothing to resend
        replayed[dl.source_topic] += 1
        if not dry_run:
            producer.produce(
                dl.source_topic, key=dl.original_key, value=dl.original_value, on_delivery=delivered
            )
            producer.poll(0)
    if producer.flush(30) or failures:
        print(
            f"rota deadletter replay: {len(failures)} records failed to publish: {failures[:3]}",
            file=sys.stderr,
        )
        return 1
    verb = "would replay" if dry_run else "replayed"
    print(
        f"{verb} {sum(replayed.values())} records"
        + "".join(f"; {n} to {t}" for t, n in sorted(replayed.items()))
    )
    return 0
