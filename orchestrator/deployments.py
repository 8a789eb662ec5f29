"""Live journey deploys through a compacted Kafka topic (``<prefix>.journeys``).

``rota deploy FILE...`` validates journey files and publishes each version as one
record, key ``<id>@<version>``, value JSON (below). Workers read the topic from the
start and keep following it (``DeploymentWatcher``): a new version takes new entries
within a second, without a restart, while customers already inside older versions stay
on them (journeys/README.md, Versions). ``rota journeys pause|resume|archive ID``
publish status changes: paused journeys take no new entries, archived versions are
unloaded (their remaining instances end as exited).

Value (UTF-8 JSON): ``{"id", "version", "status": "live"|"paused"|"archived",
"source": <the YAML text>, "file": <original path>, "deployed_at": <epoch ms>}``.
Compaction keeps the latest record per version, so the topic is the cluster's
definitive list of what is deployed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from orchestrator.journey.catalog import (
    Catalog,
    DedupWindow,
    catalog_from_sources,
    journey_files,
)
from orchestrator.journey.parse import read_documents
from orchestrator.journey.problems import JourneyValidationError
from orchestrator.kafka_security import client_config
from orchestrator.records import iso
from orchestrator.settings import Settings
from orchestrator.topics import ensure_topics

log = logging.getLogger(__name__)
STATUSES = ("live", "paused", "archived")


@dataclass(frozen=True)
class Deployment:
    id: str
    version: int
    status: str
    source: str
    file: str
    deployed_at: int

    @property
    def key(self) -> str:
        return f"{self.id}@{self.version}"

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, value: bytes) -> Deployment:
        d = cls(**json.loads(value))
        if d.status not in STATUSES:
            raise ValueError(f"unknown status {d.status!r}")
        return d


def ensure_topic(bootstrap: str, topic: str) -> None:
    ensure_topics(bootstrap, [topic], partitions=1, config={"cleanup.policy": "compact"})


def read_deployments(bootstrap: str, topic: str, *, idle: float = 1.0) -> dict[str, Deployment]:
    """The latest record per journey version, read until the topic is quiet."""
    found: dict[str, Deployment] = {}
    consumer = _consumer(bootstrap, topic)
    try:
        last = time.monotonic()
        while time.monotonic() - last < idle:
            for msg in consumer.consume(500, timeout=0.1):
                if msg.error() is None:
                    last = time.monotonic()
                    _apply(found, msg.key(), msg.value())
    finally:
        consumer.close()
    return found


def build_catalog(
    base: Sequence[str | Path],
    deployed: Mapping[str, Deployment],
    dedup: DedupWindow | None = None,
) -> Catalog:
    """Files shipped with the worker plus what is deployed on the cluster."""
    active = [d for d in deployed.values() if d.status != "archived"]
    archived = {(d.id, d.version) for d in deployed.values() if d.status == "archived"}
    paused = {d.id for d in active if d.status == "paused"}
    files, _ = journey_files(base)
    keep = [f for f in files if not (_keys_of(f) & archived)]
    texts = [(f"{d.file} (deployed {d.key})", d.source) for d in active]
    catalog = catalog_from_sources(keep, texts, paused=paused)
    return catalog.with_dedup(dedup) if dedup else catalog


class DeploymentWatcher(threading.Thread):
    """Follows the journeys topic and hands each new valid catalog to ``on_change``.

    An invalid deployment (only possible if someone bypassed ``rota deploy``) is logged
    and the previous catalog stays in force: a worker never runs half a change.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        base: Sequence[str | Path],
        deployed: Mapping[str, Deployment],
        on_change: Callable[[Catalog], None],
        dedup: DedupWindow | None = None,
    ):
        super().__init__(name="rota-deployments", daemon=True)
        self.bootstrap, self.topic, self.base = bootstrap, topic, base
        self.deployed = dict(deployed)
        self.on_change = on_change
        self.dedup = dedup
        self.stop_event = threading.Event()

    def run(self) -> None:
        consumer = _consumer(self.bootstrap, self.topic)
        try:
            while not self.stop_event.is_set():
                changed = False
                for msg in consumer.consume(100, timeout=0.5):
                    if msg.error() is None:
                        changed |= _apply(self.deployed, msg.key(), msg.value())
                if changed:
                    try:
                        catalog = build_catalog(self.base, self.deployed, self.dedup)
                    except JourneyValidationError as exc:
                        log.error("ignoring an invalid journey deployment:\n%s", exc)
                        continue
                    log.warning("journeys reloaded: %d journeys", len(catalog))
                    self.on_change(catalog)
        finally:
            consumer.close()


def _consumer(bootstrap: str, topic: str) -> Consumer:
    consumer = Consumer(
        {
            **client_config(bootstrap),
            "group.id": "rota-deployments",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    return consumer


def _apply(found: dict[str, Deployment], key: bytes | None, value: bytes | None) -> bool:
    name = (key or b"").decode()
    if value is None:
        return found.pop(name, None) is not None
    try:
        d = Deployment.decode(value)
    except (ValueError, TypeError) as exc:
        log.error("skipping unreadable deployment record %s: %s", name, exc)
        return False
    if found.get(name) == d:
        return False
    found[name] = d
    return True


def _keys_of(path: Path) -> set[tuple[str, int]]:
    docs, _ = read_documents(path)
    return {
        (d.data["id"], d.data.get("version", 0))
        for d in docs
        if isinstance(d.data, dict) and isinstance(d.data.get("id"), str)
    }


# -- the commands -----------------------------------------------------------------


def deploy_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="rota deploy", description="Validate journey files and deploy them live."
    )
    p.add_argument("paths", nargs="+", help="journey files or directories")
    p.add_argument("--paused", action="store_true", help="deploy without taking entries yet")
    args = p.parse_args(argv)
    settings, bootstrap = _connect()
    files, problems = journey_files(args.paths)
    if problems:
        print("\n".join(str(x) for x in problems), file=sys.stderr)
        return 1
    topic = settings.topics.journeys
    ensure_topic(bootstrap, topic)
    live = read_deployments(bootstrap, topic)
    now = int(time.time() * 1000)
    new: list[Deployment] = []
    for f in files:
        text = f.read_text(encoding="utf-8")
        for jid, version in sorted(_keys_of(f)):
            new.append(
                Deployment(jid, version, "paused" if args.paused else "live", text, str(f), now)
            )
    merged = {**live, **{d.key: d for d in new}}
    try:  # the cluster's whole catalog must stay valid, not only the new files
        build_catalog([], merged)
    except JourneyValidationError as exc:
        print(f"rota deploy: rejected, nothing deployed:\n{exc}", file=sys.stderr)
        return 1
    _publish(bootstrap, topic, new)
    for d in new:
        print(f"deployed {d.key} ({d.status}) from {d.file}")
    return 0


def journeys_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="rota journeys", description="Journeys live on the cluster.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="id, version, status, deployed at")
    for name in ("pause", "resume", "archive"):
        cmd = sub.add_parser(name, help=f"{name} every version of a journey (or one)")
        cmd.add_argument("id")
        cmd.add_argument("--version", type=int)
    args = p.parse_args(argv)
    settings, bootstrap = _connect()
    topic = settings.topics.journeys
    ensure_topic(bootstrap, topic)
    deployed = read_deployments(bootstrap, topic)
    if args.command == "list":
        rows = sorted(deployed.values(), key=lambda d: (d.id, d.version))
        print(f"{'journey':<28} {'version':>7}  {'status':<9} deployed at")
        for d in rows:
            print(f"{d.id:<28} {d.version:>7}  {d.status:<9} {iso(d.deployed_at)}")
        if not rows:
            print("(nothing deployed; workers run the journeys in ROTA_JOURNEYS)")
        return 0
    status = {"pause": "paused", "resume": "live", "archive": "archived"}[args.command]
    targets = [
        d
        for d in deployed.values()
        if d.id == args.id and (args.version is None or d.version == args.version)
    ]
    if not targets:
        print(
            f"rota journeys: {args.id!r} is not deployed (see `rota journeys list`)",
            file=sys.stderr,
        )
        return 1
    now = int(time.time() * 1000)
    _publish(bootstrap, topic, [replace(d, status=status, deployed_at=now) for d in targets])
    for d in targets:
        print(f"{d.key}: {status}")
    return 0


def _connect() -> tuple[Settings, str]:
    settings = Settings.from_env()
    return settings, settings.bootstrap()


def _publish(bootstrap: str, topic: str, deployments: Sequence[Deployment]) -> None:
    producer = Producer({**client_config(bootstrap), "enable.idempotence": True})
    errors: list[str] = []
    for d in deployments:
        producer.produce(
            topic,
            key=d.key.encode(),
            value=d.encode(),
            on_delivery=lambda err, _m: errors.append(str(err)) if err else None,
        )
    if producer.flush(30) or errors:
        raise SystemExit(f"rota: publishing to {topic} failed: {errors[:3]}")
