"""Settings read from the environment: the RocksDB memory budget, the fetch wait."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.settings import Settings, SettingsError

MIB = 1024 * 1024


def test_each_partition_database_gets_the_budget_half_buffers_half_cache():
    options = Settings.from_env({"ROTA_ROCKSDB_MEMORY_MB": "64"}).rocksdb_options()
    buffers = options["write_buffer_size"] * options["max_write_buffer_number"]
    assert buffers == 32 * MIB and options["block_cache_size"] == 32 * MIB


def test_the_default_budget_is_far_below_fausts_own_defaults():
    options = Settings.from_env({}).rocksdb_options()
    assert options["block_cache_size"] == 16 * MIB  # Faust's default: 2 GiB per database


def test_a_budget_too_small_to_run_is_refused_with_the_variable_named():
    with pytest.raises(SettingsError, match="ROTA_ROCKSDB_MEMORY_MB must be >= 4"):
        Settings.from_env({"ROTA_ROCKSDB_MEMORY_MB": "1"})


_FETCH_WAIT_OF_A_BUILT_APP = """
import asyncio
from orchestrator.journey.catalog import Catalog
from orchestrator.settings import Settings
from orchestrator.worker.app import create_app
from orchestrator.worker.process import Processor

settings = Settings.from_env()
app = create_app(settings, "127.0.0.1:9", Processor(Catalog.of([]), settings.topics))

async def build() -> int:  # aiokafka clients are built inside a running loop
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    return int(consumer._fetch_max_wait_ms)

print(asyncio.run(build()))
"""


def test_the_worker_consumer_fetch_wait_is_the_setting_not_fausts_1500_ms(tmp_path):
    # Built in a child process: the app's output producer connects as it is built and
    # retries an address where nothing listens for as long as its process lives.
    env = {
        **os.environ,
        "ROTA_FETCH_WAIT_MS": "40",
        "ROTA_DATA_DIR": str(tmp_path),
        "ROTA_WEB_PORT": "65000",  # never bound: the app is built, not started
    }
    child = subprocess.run(
        [sys.executable, "-c", _FETCH_WAIT_OF_A_BUILT_APP],
        env=env, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert child.stdout.split() == ["40"], child.stderr[-2000:]


def test_a_fetch_wait_out_of_range_is_refused_with_the_variable_named():
    with pytest.raises(SettingsError, match="ROTA_FETCH_WAIT_MS must be between 1 and 60000"):
        Settings.from_env({"ROTA_FETCH_WAIT_MS": "0"})
