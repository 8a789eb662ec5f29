"""A third party adds a channel with a pip package: nothing in Rota changes.

The test makes a small package, ``rota-pigeon``: a connector class and the entry point
a ``pyproject.toml`` would declare::

    [project.entry-points."rota.connectors"]
    pigeon = "rota_pigeon:PigeonConnector"

It is packed as a wheel by hand (a wheel is a zip with ``.dist-info`` metadata; this
keeps the test free of build backends), installed with pip into a directory of its own
(``pip install --target``, leaving the test environment as it was), and that directory
is put on the path. Then ``rota connector list`` must find it and the runner must
deliver through it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from test_connector_runner import action, make_runner, outcomes, publish_actions, running

from connectors import cli, registry

MODULE = '''
"""A carrier-pigeon channel: "delivers" by writing to an outbox file."""
import threading

from connectors.base import ConfigError, DeliveryResult


class PigeonConnector:
    name = "pigeon"
    channels = ("pigeon",)

    def __init__(self, outbox):
        self.outbox = outbox
        self.lock = threading.Lock()

    @classmethod
    def from_config(cls, env):
        outbox = env.get("ROTA_PIGEON_OUTBOX", "")
        if not outbox:
            raise ConfigError("ROTA_PIGEON_OUTBOX", "is required")
        return cls(outbox)

    def deliver(self, action):
        with self.lock, open(self.outbox, "a") as f:
            f.write(action.action_id + "\\n")
        return DeliveryResult.delivered("pigeon released")

    def close(self):
        pass
'''


def build_wheel(directory: Path) -> Path:
    """``rota_pigeon-0.1.0-py3-none-any.whl``, as a build backend would write it."""
    info = "rota_pigeon-0.1.0.dist-info"
    files = {
        "rota_pigeon/__init__.py": MODULE.lstrip(),
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: rota-pigeon\nVersion: 0.1.0\n",
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: rota-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{info}/entry_points.txt": ("[rota.connectors]\npigeon = rota_pigeon:PigeonConnector\n"),
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest())
        record.append(f"{name},sha256={digest.rstrip(b'=').decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,", ""])
    wheel = directory / "rota_pigeon-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``rota-pigeon`` pip-installed into a directory that is on ``sys.path``."""
    root = tmp_path_factory.mktemp("pigeon")
    wheel, target = build_wheel(root), root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert (target / "rota_pigeon").is_dir()
    sys.path.insert(0, str(target))
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        sys.modules.pop("rota_pigeon", None)


def test_the_installed_package_is_discovered_by_rota_connector_list(installed, capsys):
    assert registry.available()["pigeon"].value == "rota_pigeon:PigeonConnector"
    assert cli.list_connectors({"ROTA_PIGEON_OUTBOX": "/tmp/outbox"}) == 0
    out = capsys.readouterr().out
    assert "pigeon" in out and "rota_pigeon:PigeonConnector" in out
    assert "webhook" in out  # the built-in ones are still there

    # The real command, in a fresh interpreter that has the package on its path.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(installed), str(Path.cwd())]),
    }
    listed = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "connector", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    pigeon = next(line for line in listed.stdout.splitlines() if line.startswith("pigeon"))
    assert "(not configured: ROTA_PIGEON_OUTBOX: is required" in pigeon


@pytest.mark.kafka
def test_the_runner_delivers_through_the_third_party_connector(installed, kafka, topics, tmp_path):
    outbox = tmp_path / "outbox"
    connector = registry.load("pigeon").from_config({"ROTA_PIGEON_OUTBOX": str(outbox)})
    runner = make_runner(kafka, topics, connector)
    actions = [action(n, channel="pigeon") for n in range(3)]
    publish_actions(kafka.bootstrap, topics.actions("pigeon"), actions)

    with running(runner):
        wait_for(lambda: runner.stats.delivered == 3, timeout=30, what="3 pigeons")

    assert sorted(outbox.read_text().split()) == ["act-0", "act-1", "act-2"]
    reported = outcomes(kafka.bootstrap, topics)
    assert sorted((t.action_id, t.name, t.source) for t in reported) == [
        (f"act-{n}", "Action Delivered", "connector:pigeon") for n in range(3)
    ]
