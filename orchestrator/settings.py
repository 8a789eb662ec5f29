"""Configuration, in one place: read from ``ROTA_*`` environment variables at start,
validated, documented in the README's configuration table."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from orchestrator.clock import Clock
from orchestrator.topics import Topics


class SettingsError(ValueError):
    """A configuration value is missing or wrong; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str | None = None
    """ROTA_KAFKA_BOOTSTRAP: host:port[,host:port]. Unset: testcontainers Kafka if a
    Docker engine answers, else the embedded Tansu broker."""
    topic_prefix: str = "rota"
    """ROTA_TOPIC_PREFIX: prefix of every topic name."""
    partitions: int = 8
    """ROTA_PARTITIONS: partitions of topics Rota creates (the upper bound on workers)."""
    journeys: Path = Path("journeys")
    """ROTA_JOURNEYS: directory (or file) of journey definitions."""
    data_dir: Path = Path(".rota/data")
    """ROTA_DATA_DIR: RocksDB state directory of this worker (one per worker)."""
    metrics_port: int = 9464
    """ROTA_METRICS_PORT: port of the /metrics endpoint (0 = pick a free one)."""
    web_port: int = 0
    """ROTA_WEB_PORT: Faust web port of the worker (0 = pick a free one)."""
    app_id: str = "rota-worker"
    """ROTA_APP_ID: Faust app id = consumer group; workers with the same id share work."""
    batch_size: int = 2000
    """ROTA_BATCH_SIZE: most touchpoints the worker takes per batch."""
    batch_wait: float = 0.02
    """ROTA_BATCH_WAIT: seconds the worker waits to fill a batch before processing it."""
    tick_interval: float = 0.5
    """ROTA_TICK_INTERVAL: seconds between timer ticks (timers fire at most this late)."""
    session_timeout_ms: int = 6000
    """ROTA_SESSION_TIMEOUT_MS: consumer session timeout; a dead worker's partitions move
    after this long."""
    dedup_ids: int = 128
    """ROTA_DEDUP_IDS: recent event ids remembered per customer (duplicates are ignored)."""
    dedup_hours: float = 168.0
    """ROTA_DEDUP_HOURS: how long a remembered event id is kept (default 7 days)."""
    clock_speed: float = 1.0
    """ROTA_CLOCK_SPEED: 1 = real time; >1 runs timers and demo time faster (demos only)."""
    clock_origin_ms: int = 0
    """ROTA_CLOCK_ORIGIN_MS: wall time (ms) from which a sped-up clock runs fast."""
    webhook_url: str | None = None
    """ROTA_WEBHOOK_URL: where the webhook connector POSTs actions."""
    webhook_timeout: float = 5.0
    """ROTA_WEBHOOK_TIMEOUT: seconds per webhook request."""

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    def bootstrap(self) -> str:
        """The cluster to join. Commands other than ``rota run`` and the tests never
        start a broker of their own, so for them the address is required."""
        if not self.kafka_bootstrap:
            raise SettingsError(
                "ROTA_KAFKA_BOOTSTRAP is required: host:port[,host:port] of the Kafka "
                "cluster (`rota run` starts a local one for you)"
            )
        return self.kafka_bootstrap

    @property
    def clock(self) -> Clock:
        return Clock(self.clock_speed, self.clock_origin_ms)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            key = f"ROTA_{f.name.upper()}"
            if key not in env or env[key] == "":
                continue
            raw = env[key]
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            try:
                if kind.startswith("int"):
                    values[f.name] = int(raw)
                elif kind.startswith("float"):
                    values[f.name] = float(raw)
                elif kind.startswith("Path"):
                    values[f.name] = Path(raw)
                else:
                    values[f.name] = raw
            except ValueError:
                raise SettingsError(f"{key}={raw!r} is not a valid {kind}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        if self.batch_size < 1 or self.batch_wait <= 0 or self.tick_interval <= 0:
            raise SettingsError(
                "ROTA_BATCH_SIZE, ROTA_BATCH_WAIT and ROTA_TICK_INTERVAL must be > 0"
            )
        if self.dedup_ids < 1 or self.dedup_hours <= 0:
            raise SettingsError("ROTA_DEDUP_IDS and ROTA_DEDUP_HOURS must be > 0")
        if self.clock_speed <= 0:
            raise SettingsError(f"ROTA_CLOCK_SPEED must be > 0, got {self.clock_speed}")
        if self.partitions < 1:
            raise SettingsError(f"ROTA_PARTITIONS must be >= 1, got {self.partitions}")
        for name in ("metrics_port", "web_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise SettingsError(f"ROTA_{name.upper()} must be a port number, got {port}")
        if not self.topic_prefix or any(c in self.topic_prefix for c in " /\\"):
            raise SettingsError(f"ROTA_TOPIC_PREFIX {self.topic_prefix!r} is not a valid prefix")
