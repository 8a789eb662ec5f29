"""Batch processing: bytes in, decisions applied, bytes out - without Faust.

The Faust agent (``worker/app.py``) hands each batch of one partition to
``Processor.process``, with a ``PartitionBackend`` over that partition's tables. Keeping
this free of Faust lets tests run it over dicts, and keeps the one place that touches
Faust internals (``worker/faust_context.py``) small.

Per batch, each customer's state is read once and written once (write-back), however
many of their events the batch holds: state writes dominate the cost of a stream
worker, and each write is also a changelog record.
"""

from __future__ import annotations

import hashlib
import logging
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from msgspec import Struct
from msgspec.structs import replace

from orchestrator import analytics, metrics, wire
from orchestrator.core import bandit, identity
from orchestrator.core.decide import Decision, decide, remember
from orchestrator.core.decision import Timer, TimerFired
from orchestrator.core.state import CustomerState
from orchestrator.journey.catalog import Catalog
from orchestrator.records import Touchpoint
from orchestrator.topics import Topics
from orchestrator.worker import timers

log = logging.getLogger(__name__)

#: The touchpoint that erases a customer (``rota forget`` publishes it).
FORGET_EVENT = "Customer Forgotten"
#: Internal touchpoints of identity stitching (see ``Processor._link``).
STITCH_EVENT = "$stitch"
MERGE_EVENT = "$merge"


def forgotten_key(customer: str) -> str:
    """Where the erasure marker lives: a hash, so the table keeps no readable id."""
    return "forgotten:" + hashlib.sha256(customer.encode()).hexdigest()


#: A customer ``_Batch.state`` has not read yet (None is a customer with no state).
_UNREAD: Any = object()

#: Where a partition keeps its offer statistics, in its customers table.
BANDITS_KEY = "$bandits"


def merged_key(anon: str) -> str:
    """Where the "merged into" marker of a visitor lives."""
    return "merged:" + anon


class PartitionBackend(Protocol):
    """One partition's customer table and timer index."""

    def get_state(self, customer: str) -> bytes | None: ...

    def put_state(self, customer: str, value: bytes) -> None: ...

    def delete_state(self, customer: str) -> None: ...

    def put_timer(self, index_key: bytes) -> None: ...

    def write(self, states: Sequence[tuple[str, bytes | None]], fired: Iterable[bytes]) -> None:
        """A batch's state changes (``None`` deletes) and the index entries of the timers
        it fired, removed: each table in one write."""
        ...

    def due_timers(self, now: int, limit: int) -> list[bytes]:
        """The first ``limit`` index entries due by ``now``, in due order."""
        ...


class Incoming(Struct, gc=False):
    """One consumed record and where it came from. Built per record, so a Struct
    (``orchestrator.core.state`` says why)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


class Outgoing(Struct, gc=False):
    """One record to produce, built per action, transition and dead letter."""

    topic: str
    key: bytes | None
    value: bytes


@dataclass
class BatchResult:
    out: list[Outgoing] = field(default_factory=list)
    consumed: int = 0
    fired: int = 0
    ticks: int = 0
    pending: _Batch | None = None

    def apply_state(self) -> None:
        """Write the batch's state changes (customer states, fired timers removed).

        The adapter calls this only once ``out`` is acknowledged by Kafka: were state
        durable before the actions it led to, a crash in between would lose them for
        good - the replayed events would be recognised as duplicates.
        """
        if self.pending is not None:
            self.pending.flush()
            self.pending = None


class Processor:
    """Runs the decision core over batches of one partition."""

    def __init__(self, catalog: Catalog, topics: Topics, *, max_fire_per_tick: int = 20_000):
        #: Replaced whole by live deploys (orchestrator/deployments.py); never mutated.
        self.catalog = catalog
        self.topics = topics
        self.max_fire_per_tick = max_fire_per_tick

    def process(
        self,
        records: Sequence[Incoming],
        backend: PartitionBackend,
        *,
        now: int,
        defer_state: bool = False,
        previous: BatchResult | None = None,
    ) -> BatchResult:
        """Decide for ``records`` of one partition (there may be none), then fire its
        timers due by ``now``.

        Ticks fire timers too, but behind a backlog of touchpoints a tick waits its
        turn, and the timers with it; the worker therefore calls this for every
        partition it owns in each batch. With ``defer_state`` the state changes wait
        for ``BatchResult.apply_state`` (see there); timers set are written at once - a
        timer without its state fires as a no-op, the reverse would never fire.

        ``previous`` is the partition's batch before this one, whose state changes may
        not be applied yet (the worker decides a batch while Kafka acknowledges the one
        before, ``worker/pipeline.py``): this batch reads through them, so it sees
        exactly what it would have seen had they been written."""
        started = time.perf_counter()
        catalog = self.catalog  # one catalog per batch, even if a deploy swaps it meanwhile
        batch = _Batch(backend, catalog, previous.pending if previous is not None else None)
        result = BatchResult()
        for rec in records:
            if rec.topic == self.topics.ticks:
                tick_now = timers.decode_tick(rec.value) or now
                result.ticks += 1
                result.fired += self._fire_due(batch, tick_now, result, observed_at=now)
                continue
            result.consumed += 1
            self._touchpoint(batch, rec, result)
        result.fired += self._fire_due(batch, now, result, observed_at=now)
        batch.tally.publish()
        if defer_state:
            result.pending = batch
        else:
            batch.flush()
        if records:  # not the partitions that only had their timers looked at
            metrics.PROCESSING_SECONDS.observe(time.perf_counter() - started)
        done = time.time()
        ticks = self.topics.ticks
        metrics.observe_all(
            metrics.EVENT_LAG_SECONDS,
            [
                max(0.0, done - rec.timestamp_ms / 1000)
                for rec in records
                if rec.timestamp_ms and rec.topic != ticks
            ],
        )
        return result

    def _touchpoint(self, batch: _Batch, rec: Incoming, result: BatchResult) -> None:
        try:
            tp = wire.decode_touchpoint(rec.value or b"")
        except wire.DecodeError as exc:
            self._deadletter(batch, rec, "undecodable", str(exc), result)
            return
        batch.tally.add(metrics.EVENTS_CONSUMED, tp.type)
        customer = tp.subject
        if tp.name == FORGET_EVENT:
            batch.forget(customer)
            batch.tally.add(metrics.FORGOTTEN)
            return
        try:
            decision = self._decide(batch, tp, customer, result)
        except Exception as exc:  # a bug or bad data must not stop the partition
            log.exception("processing failed for event %s", tp.event_id)
            detail = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
            self._deadletter(batch, rec, "processing_error", detail, result)
            return
        if decision is None:
            return
        self._apply(batch, customer, decision, result, tp, tp.occurred_at)
        if tp.customer_id and tp.anonymous_id:
            self._link(batch, customer, f"anon:{tp.anonymous_id}", tp, result)

    def _decide(
        self, batch: _Batch, tp: Touchpoint, customer: str, result: BatchResult
    ) -> Decision | None:
        """The touchpoint's decision, or None when it needs none (suppressed, an
        identity record, forwarded). Raises on bad data - a ``$merge`` whose state does
        not read among it - for the caller to dead-letter before anything changed."""
        state = batch.state(customer)
        if state is None and batch.is_forgotten(customer):
            batch.tally.add(metrics.SUPPRESSED_FORGOTTEN)
            return None
        if tp.name == STITCH_EVENT:
            self._stitch(batch, tp, result)
            return None
        if tp.name == MERGE_EVENT:
            self._merge(batch, tp)
            return None
        if state is None and tp.customer_id is None:  # a merged visitor has no state left
            target = batch.merged_into(customer)
            if target is not None:  # their events go to the customer now
                self._publish(replace(tp, customer_id=target), result)
                return None
        return decide(state, tp, batch.catalog, customer_id=customer, bandits=batch.bandits())

    # -- identity stitching -----------------------------------------------------------
    #
    # A touchpoint naming both a customer and an anonymous id links them. The visitor's
    # state lives on the partition of ``anon:<id>``, so it moves through Kafka, in
    # order, with every step at least once and idempotent:
    # 1. the customer's partition records the link and sends ``$stitch`` to the visitor's
    #    partition (once: the link is in the customer's ``identities``);
    # 2. the visitor's partition marks the visitor as merged into the customer, deletes
    #    the visitor's state and sends it to the customer's partition in ``$merge``;
    #    visitor events from then on are forwarded to the customer (the marker);
    # 3. the customer's partition folds the state in (``core.identity.merge``) and sets
    #    the timers of what it adopted. ``$merge`` has a fixed event id, so a replay is
    #    a duplicate; forwarded events keep their ids, so none is processed twice.

    def _link(
        self, batch: _Batch, customer: str, anon: str, tp: Touchpoint, result: BatchResult
    ) -> None:
        state = batch.state(customer)
        if state is None or anon in state.identities:
            return
        batch.set_state(
            customer, replace(state, identities=tuple(sorted((*state.identities, anon))))
        )
        request = Touchpoint(
            event_id=f"$stitch:{anon}:{customer}",
            type="alias",
            name=STITCH_EVENT,
            channel=tp.channel,
            occurred_at=tp.occurred_at,
            anonymous_id=anon.removeprefix("anon:"),
            properties={"into": customer},
        )
        self._publish(request, result)

    def _stitch(self, batch: _Batch, tp: Touchpoint, result: BatchResult) -> None:
        anon, into = tp.subject, str(tp.properties.get("into") or "")
        if not into or batch.merged_into(anon) is not None:
            return  # a replay, or the visitor was linked to someone before: first wins
        state = batch.move_out(anon, into)
        batch.tally.add(metrics.IDENTITIES_MERGED)
        if state is None:
            return  # never seen: only later events need forwarding
        merge = Touchpoint(
            event_id=f"$merge:{anon}",
            type="alias",
            name=MERGE_EVENT,
            channel=tp.channel,
            occurred_at=tp.occurred_at,
            customer_id=into,
            anonymous_id=tp.anonymous_id,
            properties={"state": state.to_bytes().decode()},
        )
        self._publish(merge, result)

    def _publish(self, tp: Touchpoint, result: BatchResult) -> None:
        """A touchpoint for the partition of its subject, sent with the batch's outputs."""
        value = wire.encode_touchpoint(tp)
        result.out.append(Outgoing(self.topics.touchpoints, tp.subject.encode(), value))

    def _merge(self, batch: _Batch, tp: Touchpoint) -> None:
        customer = tp.subject
        known = batch.state(customer)
        if known is not None and tp.event_id in known.seen:
            return
        anon = CustomerState.from_bytes(str(tp.properties.get("state", "")).encode())
        dedup = batch.catalog.dedup
        merged, adopted = identity.merge(
            known, anon, customer=customer, now=tp.occurred_at, max_seen=dedup.max_ids
        )
        seen = dict(merged.seen)
        remember(seen, tp.event_id, tp.occurred_at, dedup)
        batch.set_state(customer, replace(merged, seen=seen))
        for timer in adopted:
            batch.set_timer(timer)

    def _fire_due(self, batch: _Batch, now: int, result: BatchResult, *, observed_at: int) -> int:
        """Fire the timers due by ``now`` (the tick's time). Lateness is measured at
        ``observed_at`` (the worker's clock now): a tick queued behind a backlog is late
        by the time it waited too."""
        fired = 0
        for index_key in batch.backend.due_timers(now, self.max_fire_per_tick):
            if batch.has_fired(index_key):
                continue  # fired before, its removal pending (a scan without a floor sees it)
            due_at, customer, timer_id = timers.decode_index_key(index_key)
            batch.fired.add(index_key)
            fired += 1
            batch.tally.add(metrics.TIMERS_FIRED)
            late = max(0, max(now, observed_at) - due_at) / 1000
            batch.tally.observe(metrics.TIMER_LATENESS_SECONDS, late)
            state = batch.state(customer)
            if state is None:
                continue  # erased (or never stored): nothing left to act on
            event = TimerFired(customer_id=customer, timer_id=timer_id, due_at=due_at, now=now)
            try:
                decision = decide(
                    state, event, batch.catalog, customer_id=customer, bandits=batch.bandits()
                )
            except Exception as exc:
                log.exception("timer %s failed", timer_id)
                self._deadletter(
                    batch,
                    Incoming(self.topics.ticks, -1, -1, customer.encode(), index_key),
                    "timer_error",
                    f"{type(exc).__name__}: {exc}",
                    result,
                )
                continue
            self._apply(batch, customer, decision, result, None, now)
        return fired

    def _apply(
        self,
        batch: _Batch,
        customer: str,
        decision: Decision,
        result: BatchResult,
        tp: Touchpoint | None,
        at: int,
    ) -> None:
        """Take one decision's outputs (its actions, and one analytics record per funnel
        event, stamped ``at``: the decision time) and set its timers."""
        if tp is not None and decision.state is batch.peek(customer):
            batch.tally.add(metrics.EVENTS_DUPLICATE)  # the core returned the state untouched
        batch.set_state(customer, decision.state)
        for action in decision.actions:
            result.out.append(
                Outgoing(
                    self.topics.actions(action.channel),
                    action.customer_id.encode(),
                    wire.encode_action(action),
                )
            )
            batch.tally.add(metrics.ACTIONS_EMITTED, action.journey_id, action.channel)
        if decision.bandit_pulls or decision.bandit_wins:
            batch.learn(decision.bandit_pulls, decision.bandit_wins)
        for action, reason in decision.suppressed:
            batch.tally.add(metrics.ACTIONS_SUPPRESSED, action.journey_id, action.channel, reason)
        for action, reason in decision.deferred:
            batch.tally.add(metrics.ACTIONS_DEFERRED, action.journey_id, action.channel, reason)
        for timer in decision.timers_set:
            batch.set_timer(timer)
            batch.tally.add(metrics.TIMERS_SET)
        # Cancelled timers are not looked up and deleted here: their index entries stay
        # until due and the core ignores them then (it knows which timers are live).
        for step in decision.funnel:
            batch.tally.add(metrics.FUNNEL, step.journey_id, step.kind, step.step or "")
        if decision.funnel:
            key = customer.encode()
            trigger = tp.event_id if tp is not None else None
            for record in analytics.transitions(customer, decision.funnel, at, trigger):
                result.out.append(
                    Outgoing(self.topics.analytics, key, wire.encode_transition(record))
                )

    def _deadletter(
        self, batch: _Batch, rec: Incoming, reason: str, detail: str, result: BatchResult
    ) -> None:
        batch.tally.add(metrics.DEADLETTERED, reason)
        record = wire.DeadLetter.now(
            reason=reason,
            detail=detail,
            source_topic=rec.topic,
            source_partition=rec.partition,
            source_offset=rec.offset,
            original_key=rec.key,
            original_value=rec.value,
        )
        result.out.append(Outgoing(self.topics.deadletter, rec.key, wire.encode_deadletter(record)))


class _Batch:
    """Write-back cache of customer states for one batch of one partition.

    ``previous`` is the partition's batch before, until its changes are written: reads
    go through it, and the changes this batch makes at once (forgetting, re-setting a
    timer it fired) take precedence over its pending ones."""

    def __init__(self, backend: PartitionBackend, catalog: Catalog, previous: _Batch | None = None):
        self.backend = backend
        self.catalog = catalog
        self._previous = previous
        self._states: dict[str, CustomerState | None] = {}
        #: The changed states, encoded when set: their objects are still in the CPU's
        #: caches then, and not by the time the batch is written, after the next batch
        #: was decided (over the benchmark's 100k customers a state's encoding took 4.5-6
        #: us per touchpoint when set and 6.7-10 us when written; a customer changed
        #: twice in a batch is encoded twice).
        self._encoded: dict[str, bytes] = {}
        #: Timer index entries fired in this batch, removed with the state changes.
        self.fired: set[bytes] = set()
        #: Visitors merged into a customer in this batch: anon key -> customer.
        self._moved: dict[str, str] = {}
        self._bandits: dict[str, tuple[int, int]] | None = None
        self._bandits_dirty = False
        #: What the batch counted, added to the metrics once it is decided.
        self.tally = metrics.Tally()

    def state(self, customer: str) -> CustomerState | None:
        # Not ``try: ... except KeyError``: most customers of a batch are read once, and
        # raising the KeyError cost more than the look-up.
        state = self._states.get(customer, _UNREAD)
        if state is not _UNREAD:
            return state
        previous = self._previous
        if previous is not None:
            # What the table holds, or will once ``previous`` is written.
            state = previous._states.get(customer, _UNREAD)
        if state is _UNREAD:
            raw = self.backend.get_state(customer)
            state = CustomerState.from_bytes(raw) if raw is not None else None
        self._states[customer] = state
        return state

    def peek(self, customer: str) -> CustomerState | None:
        return self._states.get(customer)

    def set_state(self, customer: str, state: CustomerState) -> None:
        if self._states.get(customer) is state:
            return
        self._states[customer] = state
        self._encoded[customer] = state.to_bytes()

    def set_timer(self, timer: Timer) -> None:
        key = timers.index_key(timer)
        # Set again after it fired earlier in this batch (a replayed event re-creating
        # the timer its lost state had: same id, same due time): it is live again and
        # must survive the removal of the fired entries.
        self.fired.discard(key)
        if self._previous is not None:
            self._previous.fired.discard(key)
        self.backend.put_timer(key)

    def has_fired(self, index_key: bytes) -> bool:
        """Fired in this batch or the one before, its index entry not yet removed."""
        if index_key in self.fired:
            return True
        return self._previous is not None and index_key in self._previous.fired

    def forget(self, customer: str) -> None:
        """Erase the customer's state (a tombstone in the changelog) and remember, by
        hash only, that they were forgotten. Their pending timer index entries stay
        until due and then fire as no-ops: the state they would act on is gone."""
        self._states[customer] = None
        self._encoded.pop(customer, None)
        if self._previous is not None:  # its write would bring the customer back
            self._previous._encoded.pop(customer, None)
        self.backend.delete_state(customer)
        self.backend.put_state(forgotten_key(customer), b"1")

    def bandits(self) -> dict[str, tuple[int, int]]:
        """The partition's offer statistics (``core.bandit``), read once per batch."""
        if self._bandits is None:
            previous = self._previous
            if previous is not None and previous._bandits is not None:
                self._bandits = dict(previous._bandits)  # a copy: it is written as it is
            else:
                raw = self.backend.get_state(BANDITS_KEY)
                self._bandits = (
                    {k: (v[0], v[1]) for k, v in orjson.loads(raw).items()} if raw else {}
                )
        return self._bandits

    def learn(self, pulls: Sequence[str], wins: Sequence[str]) -> None:
        self._bandits_dirty |= bandit.learn(self.bandits(), pulls, wins)

    def merged_into(self, anon: str) -> str | None:
        """The customer a visitor was merged into, if any."""
        if not anon.startswith("anon:"):
            return None
        if anon in self._moved:
            return self._moved[anon]
        if self._previous is not None and anon in self._previous._moved:
            return self._previous._moved[anon]
        raw = self.backend.get_state(merged_key(anon))
        return raw.decode() if raw is not None else None

    def move_out(self, anon: str, into: str) -> CustomerState | None:
        """The visitor's state, to be deleted here and marked as merged into ``into``
        with the batch's other state changes: after the ``$merge`` carrying it is in
        Kafka, never before."""
        state = self.state(anon)
        self._states[anon] = None
        self._encoded.pop(anon, None)
        self._moved[anon] = into
        return state

    def is_forgotten(self, customer: str) -> bool:
        return self.backend.get_state(forgotten_key(customer)) is not None

    def flush(self) -> None:
        changes: list[tuple[str, bytes | None]] = list(self._encoded.items())
        self._encoded.clear()
        if self._bandits_dirty and self._bandits is not None:
            changes.append((BANDITS_KEY, orjson.dumps(self._bandits)))
            self._bandits_dirty = False
        for anon, into in self._moved.items():
            changes.append((anon, None))
            changes.append((merged_key(anon), into.encode()))
        self._moved.clear()
        self.backend.write(changes, self.fired)
        self.fired.clear()
