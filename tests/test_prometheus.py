"""Rota's Prometheus rules and dashboard, checked by real Prometheus tools.

- ``promtool check rules`` / ``check config`` on every file of ``deploy/prometheus``, and
  ``promtool test rules`` on the alert unit tests;
- the rules and the dashboard read only metrics of the README's catalogue;
- a real Prometheus server scrapes a real ``rota worker`` and a real ``rota connector run
  log`` process: targets up, the key series have values, the rule files load and evaluate
  healthy, every dashboard query parses, no label holds a customer id, and stopping the
  worker raises ``RotaWorkerDown``.

Prometheus is the Debian package ``prometheus`` (``/usr/bin/prometheus``,
``/usr/bin/promtool``). The session fixture installs it when it is missing and the
machine can (root + apt-get); the tests skip, saying why, only when that fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer
from conftest import wait_for

from orchestrator import broker as brokers
from orchestrator import wire
from orchestrator.processes import spawn, tail, terminate
from orchestrator.records import CHANNELS, Context, Touchpoint
from orchestrator.topics import ensure_topics

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "rota.json"
#: apt-get update + install, together: under pytest-timeout's 300 s per test, so a stuck
#: install ends in a skip that says so rather than in a timeout.
INSTALL_TIMEOUT = 240.0


#: Every label a Rota series may carry: bounded sets (journeys, steps, channels, reasons,
#: connectors, results, partitions, topics), never a customer id.
BOUNDED_LABELS = {
    "__name__", "job", "instance", "le", "quantile",
    "type", "journey", "channel", "reason", "kind", "step", "partition", "topic",
    "connector", "result", "provider", "status", "phase", "table",
}  # fmt: skip


# -- the binaries ----------------------------------------------------------------------


@dataclass(frozen=True)
class PrometheusTools:
    prometheus: str
    promtool: str

    def promtool_run(self, *args: str | Path, cwd: Path | None = None) -> str:
        done = subprocess.run(
            [self.promtool, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=cwd,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"promtool {' '.join(map(str, args))} failed:\n{output}"
        return output


def _find_tools() -> PrometheusTools | None:
    prometheus = shutil.which("prometheus") or _existing("/usr/bin/prometheus")
    promtool = shutil.which("promtool") or _existing("/usr/bin/promtool")
    return PrometheusTools(prometheus, promtool) if prometheus and promtool else None


def _existing(path: str) -> str | None:
    return path if os.access(path, os.X_OK) else None


def _install_with_apt() -> str:
    """Install the Debian package; returns why it could not ("" when it ran)."""
    if not shutil.which("apt-get"):
        return "no apt-get on this machine (install Prometheus 2.x and promtool on PATH)"
    if os.geteuid() != 0:
        return "not root, cannot apt-get install prometheus (install it, or run as root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    deadline = time.monotonic() + INSTALL_TIMEOUT
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"],
    ):
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                env=env,
                timeout=max(1.0, deadline - time.monotonic()),
            )
        except subprocess.TimeoutExpired:
            return f"`{' '.join(argv)}` did not finish within {INSTALL_TIMEOUT:.0f} s"
        if done.returncode != 0:
            return f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr[-500:]}"
    return ""


@pytest.fixture(scope="session")
def prometheus_tools() -> PrometheusTools:
    tools = _find_tools()
    if tools is None:
        reason = _install_with_apt()
        tools = _find_tools()
        if tools is None:
            pytest.skip(f"Prometheus is not installed and could not be: {reason or 'unknown'}")
    return tools


# -- the rule files, offline -----------------------------------------------------------


def test_every_rule_file_passes_promtool_check(prometheus_tools):
    assert RULE_FILES, "no rule files in deploy/prometheus/rules"
    out = prometheus_tools.promtool_run("check", "rules", *RULE_FILES)
    assert out.count("SUCCESS") == len(RULE_FILES)


def test_alert_unit_tests_pass(prometheus_tools):
    assert RULE_TESTS, "no promtool unit tests in deploy/prometheus/tests"
    prometheus_tools.promtool_run("test", "rules", *RULE_TESTS)


def test_prometheus_configs_pass_promtool_check(prometheus_tools, tmp_path):
    prometheus_tools.promtool_run("check", "config", PROMETHEUS_DIR / "prometheus.yml")
    # Debian's Prometheus is built without Kubernetes service discovery, so the pod
    # discovery is swapped for a static target: the relabelling is what is checked.
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus-kubernetes.yml").read_text())
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs"), job["job_name"]
        job["static_configs"] = [{"targets": ["pod:9464"]}]
    config["rule_files"] = [str(f) for f in RULE_FILES]
    checked = tmp_path / "prometheus-kubernetes.yml"
    checked.write_text(yaml.safe_dump(config))
    prometheus_tools.promtool_run("check", "config", checked)


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def _catalogue() -> set[str]:
    """Metric names in the README's metrics table (first column, in backticks)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`(rota_[a-z0-9_]+)`", line.split("|")[1]))
    return names


_METRIC = re.compile(r"(?<![:\w])(rota_[a-z0-9_]+)(?![:\w])")


def _metrics_read_by(expr: str) -> set[str]:
    return {re.sub(r"_(bucket|sum|count)$", "", m) for m in _METRIC.findall(expr)}


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_rules_and_dashboard_read_only_catalogued_metrics():
    catalogue = _catalogue()
    assert "rota_events_consumed_total" in catalogue, "README metrics table not found"
    read = set().union(*(_metrics_read_by(r["expr"]) for r in _rules()))
    read |= set().union(*(_metrics_read_by(e) for e in _dashboard_exprs()))
    unknown = read - catalogue
    assert not unknown, f"not in the README's metrics catalogue: {sorted(unknown)}"


def test_every_alert_says_how_bad_and_links_an_existing_runbook_section():
    runbook = (ROOT / "deploy" / "README.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", runbook, flags=re.M)
    }
    alerts = [r for r in _rules() if "alert" in r]
    assert len(alerts) >= 8
    for alert in alerts:
        assert alert["labels"]["severity"] in {"page", "ticket"}, alert["alert"]
        assert {"summary", "description", "runbook_url"} <= set(alert["annotations"])
        anchor = alert["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in anchors, f"{alert['alert']}: no section #{anchor} in deploy/README.md"
    names = {a["alert"] for a in alerts}
    # The list: lag, dead letters, timer lateness, delivery failures, worker
    # down, rebalancing storm.
    assert {
        "RotaConsumerLagGrowing",
        "RotaDeadLetterRateHigh",
        "RotaTimerLatenessHigh",
        "RotaDeliveryFailureRateHigh",
        "RotaWorkerDown",
        "RotaRebalancingStorm",
    } <= names


def test_recording_rules_follow_the_level_metric_operations_convention():
    for rule in _rules():
        if "record" in rule:
            level, metric, operations = rule["record"].split(":")
            assert level and operations and metric.startswith("rota_"), rule["record"]
            assert not metric.endswith("_total"), f"{rule['record']}: drop _total after rate"


# -- a real Prometheus against a real worker and connector ------------------------------


JOURNEY = """
id: prom_welcome
name: Welcome, for the Prometheus test
version: 1
entry:
  event: Signed Up
  reentry: never
steps:
  hello:
    type: action
    channel: log
    template: hello
    next: done
  done:
    type: end
"""


class PrometheusServer:
    def __init__(self, tools: PrometheusTools, workdir: Path, jobs: dict[str, list[str]]):
        self.port = brokers.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(f) for f in RULE_FILES],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]}
                for job, targets in jobs.items()
            ],
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.proc = spawn(
            [
                tools.prometheus,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            log_path=self.log_path,
        )

    def api(self, path: str, **params: str) -> Any:
        if self.proc.poll() is not None:
            pytest.fail(f"prometheus exited ({self.proc.returncode}):\n{tail(self.log_path)}")
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as resp:
                body = json.load(resp)
        except OSError:
            return None
        assert body["status"] == "success", body
        return body["data"]

    def value(self, expr: str) -> float | None:
        data = self.api("query", query=expr)
        if not data or not data["result"]:
            return None
        return sum(float(r["value"][1]) for r in data["result"])

    def stop(self) -> None:
        terminate(self.proc)


@pytest.fixture
def log_connector(kafka, topics, tmp_path) -> Iterator[int]:
    """``rota connector run log`` as a process; yields its metrics port."""
    port = brokers.free_port()
    env = {
        **os.environ,
        "ROTA_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "ROTA_TOPIC_PREFIX": topics.prefix,
        "ROTA_LOG_CHANNELS": "log",
        "ROTA_CONNECTOR_METRICS_PORT": str(port),
    }
    proc = spawn(
        [sys.executable, "-m", "orchestrator.cli", "connector", "run", "log"],
        log_path=tmp_path / "connector.log",
        env=env,
    )
    yield port
    terminate(proc)


def _signed_up(customer: str) -> Touchpoint:
    return Touchpoint(
        event_id=f"{customer}-signup",
        type="identify",
        name="Signed Up",
        channel="web",
        occurred_at=int(time.time() * 1000),
        customer_id=customer,
        traits={"email": f"{customer}@example.com"},
        context=Context(timezone="UTC"),
    )


@pytest.mark.kafka
def test_real_prometheus_scrapes_worker_and_connector_and_evaluates_rota_rules(
    kafka, topics, tmp_path, start_worker, log_connector, prometheus_tools
):
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "welcome.yaml").write_text(JOURNEY)
    ensure_topics(kafka.bootstrap, topics.all_for(CHANNELS), partitions=4)
    worker = start_worker(journeys)
    targets = {
        "rota-worker": [f"127.0.0.1:{worker.metrics_port}"],
        "rota-connector": [f"127.0.0.1:{log_connector}"],
    }
    prometheus = PrometheusServer(prometheus_tools, tmp_path, targets)
    try:
        producer = Producer({"bootstrap.servers": kafka.bootstrap})

        def sign_up(customers: list[str]) -> None:
            for c in customers:
                tp = wire.encode_touchpoint(_signed_up(c))
                producer.produce(topics.touchpoints, key=c.encode(), value=tp)
            assert producer.flush(10) == 0

        customers = [f"prom-cust-{i}" for i in range(5)]
        sign_up(customers)
        producer.produce(topics.touchpoints, key=b"poison", value=b"\x00 not a touchpoint")
        assert producer.flush(10) == 0

        # Both targets are up.
        def all_up() -> bool:
            data = prometheus.api("targets")
            active = data["activeTargets"] if data else []
            return len(active) == 2 and all(t["health"] == "up" for t in active)

        wait_for(all_up, timeout=60, interval=0.5, what="both scrape targets up")

        # The key series have values once the loop closed: touchpoints consumed,
        # actions emitted, delivered by the connector, the outcomes consumed back.
        n = len(customers)
        for expr, at_least in [
            ('sum(rota_events_consumed_total{type="identify"})', n),
            ('sum(rota_actions_emitted_total{journey="prom_welcome", channel="log"})', n),
            ('sum(rota_connector_deliveries_total{connector="log", result="delivered"})', n),
            ('sum(rota_events_consumed_total{type="outcome"})', n),
            ('sum(rota_deadletter_total{reason="undecodable"})', 1),
            ('sum(rota_journey_funnel_total{journey="prom_welcome", kind="entered"})', n),
            ("sum(rota_batch_processing_seconds_count)", 1),
            ("sum(rota_event_lag_seconds_count)", n),
            ("sum(rota_partitions_assigned)", 4),
            ("sum(rota_journeys_live)", 1),
            (f'count(rota_consumer_lag{{topic="{topics.touchpoints}"}})', 1),
        ]:
            wait_for(
                lambda e=expr, m=at_least: (prometheus.value(e) or 0) >= m,
                timeout=60,
                interval=0.5,
                what=f"{expr} >= {at_least}",
            )
        # A second wave, so that counters grow between scrapes (a series' first sample
        # is not an increase): the recording rules then evaluate to rates above zero.
        sign_up([f"prom-cust-{i}" for i in range(5, 10)])
        wait_for(
            lambda: (
                (prometheus.value('sum(rota_events_consumed_total{type="identify"})') or 0) >= 2 * n
            ),
            timeout=30,
            interval=0.5,
            what="the second wave scraped",
        )
        for record in (
            "job:rota_events_consumed:rate5m",
            "job_journey_channel:rota_actions_emitted:rate5m",
            "connector_result:rota_connector_deliveries:rate5m",
            f'count(topic:rota_consumer_lag:sum{{topic="{topics.touchpoints}"}})',
        ):
            wait_for(
                lambda r=record: (prometheus.value(r) or 0) > 0,
                timeout=20,
                interval=0.5,
                what=f"recording rule {record}",
            )

        # Every rule file loaded, every rule evaluated without error.
        def rules_healthy() -> list[dict[str, Any]] | None:
            groups = prometheus.api("rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return rules if rules and all(r["health"] == "ok" for r in rules) else None

        rules = wait_for(rules_healthy, timeout=20, interval=0.5, what="all rules healthy")
        assert len(rules) == len(_rules())
        assert {g["file"] for g in prometheus.api("rules")["groups"]} == {
            str(f) for f in RULE_FILES
        }

        # Every dashboard query is valid PromQL over these series.
        substitutions = {"$__rate_interval": "1m", "$__range": "5m", "$journey": ".*"}
        for expr in _dashboard_exprs():
            for var, value in substitutions.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, f"unsubstituted dashboard variable in {expr}"
            assert prometheus.api("query", query=expr) is not None, expr

        # Bounded labels only, and no customer id anywhere in a label value.
        series = prometheus.api("series", **{"match[]": '{__name__=~"rota_.*"}'})
        assert series
        labels = {key for s in series for key in s}
        assert labels <= BOUNDED_LABELS, f"unexpected labels: {labels - BOUNDED_LABELS}"
        assert not [s for s in series if any("prom-cust" in v for v in s.values())]
        # Counters and histograms come without ``*_created`` series (half a scrape's lines).
        assert not [s for s in series if s["__name__"].endswith("_created")]

        # A worker that stops answering trips RotaWorkerDown (pending for its 2 minutes).
        worker.kill()

        def worker_down_pending() -> bool:
            alerts = prometheus.api("alerts")["alerts"]
            return any(
                a["labels"]["alertname"] == "RotaWorkerDown" and a["state"] == "pending"
                for a in alerts
            )

        wait_for(worker_down_pending, timeout=20, interval=0.5, what="RotaWorkerDown pending")
    finally:
        prometheus.stop()
