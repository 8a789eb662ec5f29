"""Configuration of the ingest processes, from ``ROTA_INGEST_*`` environment variables
(plus the common ``ROTA_KAFKA_BOOTSTRAP`` and ``ROTA_TOPIC_PREFIX``), validated at
start. Documented in the README's configuration table."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestrator.ingest.writekeys import WriteKeys
from orchestrator.settings import Settings, SettingsError
from orchestrator.topics import Topics


@dataclass(frozen=True)
class HttpIngestConfig:
    bootstrap: str
    write_keys: WriteKeys = field(repr=False)
    topics: Topics = field(default_factory=Topics)
    host: str = "0.0.0.0"
    """ROTA_INGEST_HOST: address the HTTP ingest listens on."""
    port: int = 8088
    """ROTA_INGEST_PORT: its port (0 = a free one)."""
    ack_timeout: float = 10.0
    """ROTA_INGEST_ACK_TIMEOUT: seconds to wait for Kafka's acknowledgement before
    answering 503 (the SDK retries)."""
    dedup_ids: int = 100_000
    """ROTA_INGEST_DEDUP_IDS: acknowledged messageIds remembered (0 = none)."""
    partitions: int = 8

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, **overrides: object
    ) -> HttpIngestConfig:
        env = os.environ if env is None else env
        settings = Settings.from_env(env)
        values: dict[str, object] = {
            "bootstrap": settings.bootstrap(),
            "topics": settings.topics,
            "partitions": settings.partitions,
            "write_keys": WriteKeys.from_env(env),
            "host": env.get("ROTA_INGEST_HOST", "").strip() or "0.0.0.0",
            "port": _number(env, "ROTA_INGEST_PORT", int, 8088),
            "ack_timeout": _number(env, "ROTA_INGEST_ACK_TIMEOUT", float, 10.0),
            "dedup_ids": _number(env, "ROTA_INGEST_DEDUP_IDS", int, 100_000),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**values)  # type: ignore[arg-type]
        config.check()
        return config

    def check(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"ROTA_INGEST_PORT must be a port number, got {self.port}")
        if not 0.1 <= self.ack_timeout <= 300:
            raise SettingsError(
                f"ROTA_INGEST_ACK_TIMEOUT must be between 0.1 and 300 s, got {self.ack_timeout}"
            )
        if self.dedup_ids < 0:
            raise SettingsError(f"ROTA_INGEST_DEDUP_IDS must be >= 0, got {self.dedup_ids}")


def _number(
    env: Mapping[str, str], key: str, kind: type[int] | type[float], default: float
) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not a valid {kind.__name__}") from None
