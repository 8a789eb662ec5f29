"""Topic names and how they are created.

All topic names derive from one prefix (``ROTA_TOPIC_PREFIX``, default ``rota``) so a
cluster can host several independent deployments, and each test can use its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from orchestrator.kafka_security import client_config


@dataclass(frozen=True)
class Topics:
    """The names, each formatted once per instance: the worker reads some per record."""

    prefix: str = "rota"

    @cached_property
    def touchpoints(self) -> str:
        return f"{self.prefix}.touchpoints"

    @cached_property
    def ticks(self) -> str:
        """Clock ticks, one per partition per interval: timers fire while the worker
        processes the tick of the partition that owns them (see worker/timers.py)."""
        return f"{self.prefix}.ticks"

    @cached_property
    def journeys(self) -> str:
        """Deployed journey versions (compacted; see orchestrator/deployments.py)."""
        return f"{self.prefix}.journeys"

    @cached_property
    def deadletter(self) -> str:
        return f"{self.prefix}.deadletter"

    @cached_property
    def analytics(self) -> str:
        """Every journey transition, per customer (``JourneyTransition``; see
        orchestrator/analytics.py): what ``rota report`` measures."""
        return f"{self.prefix}.analytics"

    def actions(self, channel: str) -> str:
        return f"{self.prefix}.actions.{channel}"

    def all_for(self, channels: Iterable[str]) -> list[str]:
        return [
            self.touchpoints,
            self.ticks,
            self.deadletter,
            self.analytics,
            *(self.actions(c) for c in channels),
        ]


def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    *,
    partitions: int,
    replication: int = 1,
    config: dict[str, str] | None = None,
    timeout: float = 15.0,
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created.

    Existing topics are left as they are (their partition count is not changed: that
    would move customers between partitions and their state with them).
    """
    admin = AdminClient(client_config(bootstrap))
    wanted = sorted(set(names))
    futures = admin.create_topics(
        [NewTopic(n, partitions, replication, config=config or {}) for n in wanted],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return sorted(created)
