"""The timer index of a partition over real RocksDB (rocksdict): scans for due timers
start at a floor instead of stepping over every fired entry's tombstone, and never miss
an entry - one set below the floor, one written by recovery behind the worker's back."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

from faust.stores.rocksdb import Store
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from rocksdict import Options, Rdict

from orchestrator.core.decision import Timer
from orchestrator.worker import timers
from orchestrator.worker.partition_store import PartitionStore, ScanFloors, _Partition


class _Sent:
    """Where the changelog records would go (``Outputs.send``)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes | None, int]] = []

    def send(self, topic: str, key: bytes, value: bytes | None, partition: int) -> None:
        self.records.append((topic, key, value, partition))


def _open(path: Path) -> Rdict:
    return Rdict(str(path), options=Options(raw_mode=True))


def _store(tmp: Path, floors: ScanFloors | None = None) -> tuple[PartitionStore, Rdict, _Sent]:
    sent = _Sent()
    index = _open(tmp / "timers")
    store = PartitionStore(
        _Partition(_open(tmp / "customers"), "customers-changelog", 3, sent),  # type: ignore[arg-type]
        _Partition(index, "timers-changelog", 3, sent),  # type: ignore[arg-type]
        floors or ScanFloors(),
    )
    return store, index, sent


def _key(due: int, n: int = 0) -> bytes:
    return timers.index_key(Timer(f"c{n}", f"t{n}", due))


def _fire(store: PartitionStore, now: int, limit: int = 1_000) -> list[bytes]:
    due = store.due_timers(now, limit)
    store.write([], due)
    return due


def test_due_timers_come_in_due_order_and_fired_ones_do_not_come_again(tmp_path: Path):
    store, _, sent = _store(tmp_path)
    for n, due in enumerate([5_000, 1_000, 3_000, 9_000]):
        store.put_timer(_key(due, n))
    assert _fire(store, 4_000) == [_key(1_000, 1), _key(3_000, 2)]
    assert _fire(store, 6_000) == [_key(5_000, 0)]
    assert _fire(store, 6_000) == []
    # Deletions went to the changelog too, on the partition's own partition.
    deleted = [(k, p) for t, k, v, p in sent.records if t == "timers-changelog" and v is None]
    assert deleted == [(_key(1_000, 1), 3), (_key(3_000, 2), 3), (_key(5_000, 0), 3)]


def test_a_timer_set_below_the_floor_is_found(tmp_path: Path):
    store, _, _ = _store(tmp_path)
    store.put_timer(_key(1_000, 1))
    assert _fire(store, 10_000) == [_key(1_000, 1)]  # the floor is now past 10,000
    store.put_timer(_key(2_000, 2))  # already due when set
    assert _fire(store, 10_000) == [_key(2_000, 2)]


def test_the_limit_leaves_the_rest_for_the_next_scan(tmp_path: Path):
    store, _, _ = _store(tmp_path)
    keys = [_key(1_000 + n, n) for n in range(10)]
    for key in keys:
        store.put_timer(key)
    assert _fire(store, 5_000, limit=4) == keys[:4]
    assert _fire(store, 5_000, limit=4) == keys[4:8]
    assert _fire(store, 5_000, limit=4) == keys[8:]


def test_entries_pending_removal_are_not_returned_twice(tmp_path: Path):
    """The worker removes fired entries with the batch's state, after the next batch
    has scanned (``worker/pipeline.py``)."""
    store, _, _ = _store(tmp_path)
    store.put_timer(_key(1_000, 1))
    first = store.due_timers(5_000, 100)
    assert store.due_timers(5_000, 100) == []
    store.write([], first)
    assert store.due_timers(5_000, 100) == []


def test_an_entry_written_behind_the_stores_back_is_found(tmp_path: Path):
    """Changelog recovery and standby replicas write the database directly."""
    store, index, _ = _store(tmp_path)
    store.put_timer(_key(1_000, 1))
    assert _fire(store, 10_000) == [_key(1_000, 1)]
    index.put(_key(500, 2), b"")  # as Faust's recovery would
    assert _fire(store, 10_000) == [_key(500, 2)]


def test_another_database_for_the_partition_starts_without_a_floor(tmp_path: Path):
    """A partition that moved away and back is reopened: another database object."""
    floors = ScanFloors()
    store, _, _ = _store(tmp_path / "a", floors)
    store.put_timer(_key(1_000, 1))
    assert _fire(store, 10_000) == [_key(1_000, 1)]
    other, other_index, _ = _store(tmp_path / "b", floors)
    other_index.put(_key(500, 2), b"")
    assert other.due_timers(10_000, 100) == [_key(500, 2)]


#: Where Faust records the changelog offset a partition's database holds.
FAUST_OFFSET_KEY: bytes = Store.offset_key


def test_recording_the_changelog_offset_keeps_the_floor(tmp_path: Path):
    """Faust's offset key sits in the index's database, after every index entry. Were
    its write taken for one from behind the store's back, the next scan would start
    from the first key and step over every fired entry's tombstone."""
    floors = ScanFloors()
    store, index, _ = _store(tmp_path, floors)
    store.put_timer(_key(1_000, 1))
    store.put_timer(_key(90_000, 2))
    assert _fire(store, 10_000) == [_key(1_000, 1)]
    floor = floors.get(3, index)
    assert floor is not None and floor < _key(90_000, 2)
    assert timers.upper_bound(10**13 - 1) < FAUST_OFFSET_KEY
    with floors.kept(3, index):
        index.put(FAUST_OFFSET_KEY, b"1234")
    assert floors.get(3, index) == floor
    assert _fire(store, 100_000) == [_key(90_000, 2)]  # the offset key is no timer
    index.put(_key(500, 3), b"")  # not through kept: recovery's write drops the floor
    assert floors.get(3, index) is None
    assert _fire(store, 100_000) == [_key(500, 3)]


class IndexMachine(RuleBasedStateMachine):
    """Random puts, scans, removals, offset records and writes from outside, against a
    set: a live entry due by ``now`` and not yet handed out is returned by the next
    scan."""

    def __init__(self) -> None:
        super().__init__()
        self._dir = Path(tempfile.mkdtemp(prefix="rota-index-"))
        self.floors = ScanFloors()
        self.store, self.index, _ = _store(self._dir, self.floors)
        self.live: set[bytes] = set()
        self.pending: set[bytes] = set()  # handed out, removal not yet written
        self.serial = itertools.count()

    @rule(due=st.integers(0, 100))
    def put(self, due: int) -> None:
        key = _key(due, next(self.serial))
        self.store.put_timer(key)
        self.live.add(key)

    @rule(due=st.integers(0, 100))
    def recovered(self, due: int) -> None:
        key = _key(due, next(self.serial))
        self.index.put(key, b"")
        self.live.add(key)

    @rule(offset=st.integers(0, 10**6))
    def offset_recorded(self, offset: int) -> None:
        with self.floors.kept(3, self.index):
            self.index.put(FAUST_OFFSET_KEY, str(offset).encode())

    @rule(now=st.integers(0, 120), limit=st.integers(1, 5))
    def scan(self, now: int, limit: int) -> None:
        got = self.store.due_timers(now, limit)
        upper = timers.upper_bound(now)
        assert got == sorted(got)
        assert all(k in self.live and k < upper for k in got)
        fresh = [k for k in got if k not in self.pending]
        expected = sorted(k for k in self.live - self.pending if k < upper)
        # Pending entries may come again (a scan with no floor sees them) and take
        # room; the fresh ones are the earliest not handed out yet, none skipped.
        assert fresh == expected[: len(fresh)]
        if len(got) < limit:
            assert fresh == expected
        self.pending.update(got)

    @rule()
    def remove_fired(self) -> None:
        self.store.write([], sorted(self.pending))
        self.live -= self.pending
        self.pending.clear()

    @invariant()
    def index_holds_the_live_entries(self) -> None:
        assert set(self.index.keys()) - {FAUST_OFFSET_KEY} == self.live

    def teardown(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


TestIndexMachine = IndexMachine.TestCase
TestIndexMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
