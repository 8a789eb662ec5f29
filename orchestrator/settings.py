"""Configuration, in one place: read from ``ROTA_*`` environment variables at start,
validated, documented in the README's configuration table."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.clock import Clock

if TYPE_CHECKING:
    # topics.py creates topics with a Kafka client, whose configuration comes from here.
    from orchestrator.topics import Topics


class SettingsError(ValueError):
    """A configuration value is missing or wrong; the message names the variable."""


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
SSL_PROTOCOLS = ("SSL", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
PASSWORD_FILE = "ROTA_KAFKA_SASL_PASSWORD_FILE"
#: The variable behind each field of ``KafkaSecurity``, for reading and for messages.
KAFKA_SECURITY_VARIABLES = {
    "protocol": "ROTA_KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "ROTA_KAFKA_SASL_MECHANISM",
    "sasl_username": "ROTA_KAFKA_SASL_USERNAME",
    "sasl_password": "ROTA_KAFKA_SASL_PASSWORD",
    "ssl_cafile": "ROTA_KAFKA_SSL_CAFILE",
    "ssl_certfile": "ROTA_KAFKA_SSL_CERTFILE",
    "ssl_keyfile": "ROTA_KAFKA_SSL_KEYFILE",
}


@dataclass(frozen=True, repr=False)
class KafkaSecurity:
    """How every Kafka client of this process encrypts and authenticates.

    Process-wide, like the bootstrap address: ``orchestrator.kafka_security`` turns it
    into each client library's configuration, so no client builds its own. Checked on
    construction, so a client never sees a half-configured protocol. ``from_env`` keeps
    only what the protocol uses: the deploy files carry a CA path and a mechanism even
    for PLAINTEXT, and those must not matter (nor must a Secret mounted or not).
    """

    protocol: str = "PLAINTEXT"
    """ROTA_KAFKA_SECURITY_PROTOCOL: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""
    sasl_mechanism: str | None = None
    """ROTA_KAFKA_SASL_MECHANISM: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_* only)."""
    sasl_username: str | None = None
    """ROTA_KAFKA_SASL_USERNAME (SASL_* only)."""
    sasl_password: str | None = None
    """ROTA_KAFKA_SASL_PASSWORD, or ROTA_KAFKA_SASL_PASSWORD_FILE: a file holding it
    (SASL_* only). Never shown by ``repr``."""
    ssl_cafile: Path | None = None
    """ROTA_KAFKA_SSL_CAFILE: PEM CA bundle that verifies the brokers (SSL, SASL_SSL;
    unset: the system's CAs)."""
    ssl_certfile: Path | None = None
    """ROTA_KAFKA_SSL_CERTFILE: PEM client certificate, for mutual TLS."""
    ssl_keyfile: Path | None = None
    """ROTA_KAFKA_SSL_KEYFILE: its unencrypted PEM private key."""

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in SASL_PROTOCOLS

    @property
    def uses_ssl(self) -> bool:
        return self.protocol in SSL_PROTOCOLS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSecurity:
        env = os.environ if env is None else env

        def value(name: str) -> str | None:
            return env.get(KAFKA_SECURITY_VARIABLES[name], "").strip() or None

        protocol = (value("protocol") or "PLAINTEXT").upper()
        values: dict[str, object] = {"protocol": protocol}
        if protocol in SASL_PROTOCOLS:
            mechanism = value("sasl_mechanism")
            values["sasl_mechanism"] = mechanism.upper() if mechanism else None
            values["sasl_username"] = value("sasl_username")
            values["sasl_password"] = _password(env)
        if protocol in SSL_PROTOCOLS:
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                path = value(name)
                values[name] = Path(path) if path else None
        return cls(**values)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        var = KAFKA_SECURITY_VARIABLES
        if self.protocol not in SECURITY_PROTOCOLS:
            raise SettingsError(
                f"{var['protocol']}={self.protocol!r} is not one of {', '.join(SECURITY_PROTOCOLS)}"
            )
        if self.uses_sasl:
            if self.sasl_mechanism is not None and self.sasl_mechanism not in SASL_MECHANISMS:
                raise SettingsError(
                    f"{var['sasl_mechanism']}={self.sasl_mechanism!r} is not one of "
                    f"{', '.join(SASL_MECHANISMS)}"
                )
            missing = []
            if not self.sasl_mechanism:
                missing.append(f"{var['sasl_mechanism']} ({', '.join(SASL_MECHANISMS)})")
            if not self.sasl_username:
                missing.append(var["sasl_username"])
            if not self.sasl_password:
                missing.append(f"{var['sasl_password']} (or {PASSWORD_FILE})")
            if missing:
                raise SettingsError(
                    f"{var['protocol']}={self.protocol} needs {' and '.join(missing)}"
                )
        if self.uses_ssl:
            if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
                given, absent = (
                    ("ssl_certfile", "ssl_keyfile")
                    if self.ssl_keyfile is None
                    else ("ssl_keyfile", "ssl_certfile")
                )
                raise SettingsError(
                    f"{var[given]} is set but {var[absent]} is not: mutual TLS needs "
                    "both the client certificate and its private key"
                )
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                path = getattr(self, name)
                if path is not None:
                    _check_readable(var[name], path)

    def __repr__(self) -> str:
        shown = {f.name: repr(getattr(self, f.name)) for f in fields(self)}
        if self.sasl_password is not None:
            shown["sasl_password"] = "'***'"
        return f"KafkaSecurity({', '.join(f'{k}={v}' for k, v in shown.items())})"


def _password(env: Mapping[str, str]) -> str | None:
    """The SASL password, from the variable or from the file a Kubernetes or Docker
    secret is mounted as (read once: librdkafka and aiokafka take a fixed password)."""
    variable = KAFKA_SECURITY_VARIABLES["sasl_password"]
    # A Secret made with `kubectl create secret --from-file` keeps the file's newline.
    value = env.get(variable, "").rstrip("\r\n")
    path = env.get(PASSWORD_FILE, "").strip()
    if value and path:
        raise SettingsError(f"set either {variable} or {PASSWORD_FILE}, not both")
    if not path:
        return value or None
    try:
        password = Path(path).read_text().rstrip("\r\n")
    except OSError as exc:
        raise SettingsError(f"{PASSWORD_FILE}: cannot read {path}: {exc.strerror}") from None
    if not password:
        raise SettingsError(f"{PASSWORD_FILE}: {path} is empty")
    return password


def _check_readable(variable: str, path: Path) -> None:
    if not path.exists():
        raise SettingsError(f"{variable}: {path} does not exist")
    if not path.is_file():
        raise SettingsError(f"{variable}: {path} is not a file")
    if not os.access(path, os.R_OK):
        raise SettingsError(f"{variable}: {path} is not readable by this process")


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
    policy: Path | None = None
    """ROTA_POLICY: contact policy file (frequency caps, quiet hours); ``none``: no policy;
    unset: policy.yaml when there is one, else none."""
    data_dir: Path = Path(".rota/data")
    """ROTA_DATA_DIR: RocksDB state directory of this worker (one per worker)."""
    metrics_port: int = 9464
    """ROTA_METRICS_PORT: port of the /metrics endpoint (0 = pick a free one)."""
    web_port: int = 0
    """ROTA_WEB_PORT: port of the worker's HTTP API (inspector, readiness; 0 = a free one)."""
    web_host: str = "127.0.0.1"
    """ROTA_WEB_HOST: address the worker's HTTP API listens on (0.0.0.0 in a cluster)."""
    web_url: str = ""
    """ROTA_WEB_URL: how other workers reach this one's API, to forward a customer request
    to the worker owning the customer (default http://<web host>:<web port>)."""
    app_id: str = "rota-worker"
    """ROTA_APP_ID: Faust app id = consumer group; workers with the same id share work."""
    batch_size: int = 2000
    """ROTA_BATCH_SIZE: most touchpoints the worker takes per batch."""
    batch_wait: float = 0.02
    """ROTA_BATCH_WAIT: seconds the worker waits to fill a batch before processing it."""
    fetch_wait_ms: int = 10
    """ROTA_FETCH_WAIT_MS: longest the worker's fetch waits at the broker for new records.
    Apache Kafka answers a waiting fetch as soon as records arrive, so there it only
    bounds idle polling (raise it to cut idle fetch requests); the embedded broker answers
    when the wait expires, so there it is added to every touchpoint's latency: 100 ms gave
    a p50 of 193 ms from publication to action at half the maximum rate, 10 ms 125 ms
    (Faust's own value is 1,500 ms)."""
    tick_interval: float = 0.5
    """ROTA_TICK_INTERVAL: seconds between timer ticks (timers fire at most this late)."""
    rocksdb_memory_mb: int = 32
    """ROTA_ROCKSDB_MEMORY_MB: memory budget of each partition's RocksDB database (half
    write buffers, half block cache); a worker holds two per partition it owns."""
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
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    """ROTA_KAFKA_SECURITY_PROTOCOL, ROTA_KAFKA_SASL_*, ROTA_KAFKA_SSL_*: see
    ``KafkaSecurity``. Read here so a bad value stops the process at start."""

    @property
    def topics(self) -> Topics:
        from orchestrator.topics import Topics

        return Topics(self.topic_prefix)

    def policy_file(self) -> Path | None:
        """The contact policy file to load, if any. A file named explicitly must exist."""
        if self.policy == Path("none"):
            return None
        if self.policy is not None:
            if not self.policy.is_file():
                raise SettingsError(f"ROTA_POLICY={self.policy}: no such file")
            return self.policy
        default = Path("policy.yaml")
        return default if default.is_file() else None

    def bootstrap(self) -> str:
        """The cluster to join. Commands other than ``rota run`` and the tests never
        start a broker of their own, so for them the address is required."""
        if not self.kafka_bootstrap:
            raise SettingsError(
                "ROTA_KAFKA_BOOTSTRAP is required: host:port[,host:port] of the Kafka "
                "cluster (`rota run` starts a local one for you)"
            )
        return self.kafka_bootstrap

    def rocksdb_options(self) -> dict[str, int]:
        """Faust's RocksDB options for each partition database. Faust's defaults (three
        64 MiB write buffers and a 2 GiB block cache per database) let a worker's memory
        grow with the state it holds; state belongs on disk."""
        mib = 1024 * 1024
        return {
            "write_buffer_size": self.rocksdb_memory_mb * mib // 4,
            "max_write_buffer_number": 2,
            "block_cache_size": self.rocksdb_memory_mb * mib // 2,
        }

    @property
    def clock(self) -> Clock:
        return Clock(self.clock_speed, self.clock_origin_ms)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        values["kafka_security"] = KafkaSecurity.from_env(env)
        for f in fields(cls):
            if f.name == "kafka_security":
                continue
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
        if not 1 <= self.fetch_wait_ms <= 60_000:
            raise SettingsError(
                f"ROTA_FETCH_WAIT_MS must be between 1 and 60000, got {self.fetch_wait_ms}"
            )
        if self.dedup_ids < 1 or self.dedup_hours <= 0:
            raise SettingsError("ROTA_DEDUP_IDS and ROTA_DEDUP_HOURS must be > 0")
        if self.rocksdb_memory_mb < 4:
            raise SettingsError(
                f"ROTA_ROCKSDB_MEMORY_MB must be >= 4, got {self.rocksdb_memory_mb}"
            )
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
