"""Settings read from the environment: the RocksDB memory budget."""

from __future__ import annotations

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
