"""Runs one connector against Kafka: consume actions, deliver, report, commit.

The loop, per action read from ``<prefix>.actions.<channel>``:

1. decode it; bytes that are not an action go to the dead-letter topic
   (reason ``undecodable``, original bytes kept) and the runner carries on;
2. hand it to a delivery thread chosen by customer id - actions of one customer stay
   in order, different customers are delivered concurrently;
3. the thread skips actions already delivered (``DeliveryLedger``) or expired, waits
   while the endpoint's circuit is open (``CircuitBreaker``) and for a token of the
   channel's rate limit (``TokenBucket``), calls ``connector.deliver`` and retries
   retryable failures (``RetryPolicy``);
4. the runner publishes the outcome touchpoint (and a dead letter for failed or
   rejected actions), and only once those are acknowledged by Kafka commits the
   offset - per partition, up to the end of the contiguous run of finished actions
   (``OffsetTracker``).

So nothing is lost: an action whose outcome is not safely on Kafka is read again after
a crash, and then de-duplicated by the ledger (delivery) and by the engine
(outcome ``event_id``). Kafka I/O happens on the thread calling ``run``; connectors
never see Kafka.

Ordering and back-pressure: one customer's actions go through one delivery thread in
order, so a customer waiting to retry also holds back the others sharing that thread
(bounded by the retry policy). At most ``max_in_flight`` actions are read and not yet
finished; when that stays full for ``pause_after`` seconds the partitions are paused.

Failing endpoints: consecutive retryable failures open the circuit; then no delivery
thread calls the connector until a probe after the cool-down succeeds. Actions wait
meanwhile (they are not failed); when waiting fills ``max_in_flight``, reading pauses.

Rebalances: before partitions are given away, their actions in flight are finished
(up to ``drain_timeout``) and committed, so the next owner does not repeat them.

Stopping: when ``stop`` is set the runner reads nothing more, lets the actions already
read finish for up to ``drain_timeout`` seconds, publishes and commits what finished,
and returns. Actions still waiting (to retry, or in a queue) after that are abandoned
uncommitted: they are read again on the next start.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka import TopicPartition as KafkaPartition

from connectors import metrics
from connectors.base import Connector, DeliveryResult, DeliveryStatus
from connectors.circuit import CircuitBreaker, CircuitSettings, CircuitState, Permit
from connectors.ledger import DeliveryLedger, MemoryLedger
from connectors.offsets import OffsetTracker, TopicPartition
from connectors.outcomes import Outcome, is_expired, outcome_touchpoint
from connectors.ratelimit import RateLimit, TokenBucket
from connectors.retry import RetryPolicy
from orchestrator.kafka_security import client_config, producer_config
from orchestrator.records import NextBestAction, Scalar, iso
from orchestrator.topics import Topics
from orchestrator.wire import (
    DeadLetter,
    DecodeError,
    decode_action,
    encode_deadletter,
    encode_touchpoint,
)

log = logging.getLogger(__name__)


def wall_ms() -> int:
    return int(time.time() * 1000)


def lane_of(customer_id: str, lanes: int) -> int:
    """The delivery thread of a customer's actions: one customer, one thread, so their
    actions are delivered in the order they were read."""
    return zlib.crc32(customer_id.encode()) % lanes


class RunnerError(RuntimeError):
    """The runner stopped because going on could lose data (a record it must publish
    was not acknowledged, or the consumer failed fatally). Offsets past the problem
    were not committed, so a restart resumes from there."""


class Result(StrEnum):
    """How one consumed action ended; the values are the metrics' ``result`` label."""

    DELIVERED = "delivered"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    BOUNCED = "bounced"
    DUPLICATE = "duplicate"
    ABANDONED = "abandoned"
    """Stopped before it finished: not committed, read again on the next start."""


_OUTCOME = {
    Result.DELIVERED: Outcome.DELIVERED,
    Result.FAILED: Outcome.FAILED,
    Result.REJECTED: Outcome.REJECTED,
    Result.EXPIRED: Outcome.EXPIRED,
    Result.BOUNCED: Outcome.BOUNCED,
}
_FINAL = {DeliveryStatus.REJECTED: Result.REJECTED, DeliveryStatus.BOUNCED: Result.BOUNCED}
_DEAD_LETTER_REASON = {Result.FAILED: "delivery_failed", Result.REJECTED: "delivery_rejected"}


@dataclass(frozen=True, slots=True)
class RunnerStats:
    """Counts since the runner started (a snapshot: ``ConnectorRunner.stats``)."""

    consumed: int = 0
    delivered: int = 0
    failed: int = 0
    rejected: int = 0
    expired: int = 0
    bounced: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retries: int = 0
    abandoned: int = 0

    def summary(self) -> str:
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


@dataclass(frozen=True, slots=True)
class _Job:
    tp: TopicPartition
    offset: int
    key: bytes | None
    value: bytes
    action: NextBestAction


@dataclass(frozen=True, slots=True)
class _Done:
    job: _Job
    result: Result
    detail: str = ""
    attempts: int = 0
    provider_message_id: str | None = None
    properties: Mapping[str, Scalar] | None = None


class ConnectorRunner:
    def __init__(
        self,
        connector: Connector,
        *,
        bootstrap: str,
        topics: Topics,
        group_id: str | None = None,
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int | None = None,
        max_in_flight: int = 1000,
        delivery_threads: int = 8,
        retry: RetryPolicy | None = None,
        rate_limits: Mapping[str, RateLimit] | None = None,
        circuit: CircuitSettings | None = None,
        ledger: DeliveryLedger | None = None,
        now_ms: Callable[[], int] = wall_ms,
        commit_interval: float = 1.0,
        drain_timeout: float = 10.0,
        flush_timeout: float = 30.0,
        pause_after: float = 2.0,
        consumer_config: Mapping[str, Any] | None = None,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        """``session_timeout_ms`` is kept short on purpose: the embedded broker delays a
        group join by about half of it. ``now_ms`` judges expiry and stamps outcomes;
        pass the deployment's clock when time runs faster (demos). ``rate_limits`` maps a
        channel to its limit (channels not named are not limited). ``consumer_config``
        and ``producer_config`` are merged over the librdkafka settings chosen here."""
        if max_in_flight < 1 or delivery_threads < 1:
            raise ValueError("max_in_flight and delivery_threads must be >= 1")
        if not connector.channels:
            raise ValueError(f"connector {connector.name!r} serves no channel")
        self.connector = connector
        self.name = connector.name
        self.bootstrap = bootstrap
        self.topics = topics
        self.group_id = group_id or f"{topics.prefix}-connector-{connector.name}"
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms or max(500, session_timeout_ms // 4)
        self.max_in_flight = max_in_flight
        self.delivery_threads = delivery_threads
        self.retry = retry or RetryPolicy()
        unknown = sorted(set(rate_limits or {}) - set(connector.channels))
        if unknown:
            raise ValueError(f"rate limit for {unknown}: not served by {connector.name!r}")
        self.rate_limits = dict(rate_limits or {})
        self._buckets = {
            topics.actions(channel): (channel, TokenBucket(limit))
            for channel, limit in self.rate_limits.items()
        }
        self.circuit = CircuitBreaker(
            circuit, on_change=lambda state: metrics.CIRCUIT_STATE.labels(self.name).set(state)
        )
        self.ledger: DeliveryLedger = ledger if ledger is not None else MemoryLedger()
        self.now_ms = now_ms
        self.commit_interval = commit_interval
        self.drain_timeout = drain_timeout
        self.flush_timeout = flush_timeout
        self.consumer_config = dict(consumer_config or {})
        self.producer_config = dict(producer_config or {})
        self.pause_after = pause_after
        self.poll_interval = 0.05

        self._counts = dict.fromkeys((f.name for f in fields(RunnerStats)), 0)
        self._counts_lock = threading.Lock()
        self._tracker = OffsetTracker()
        self._done: queue.SimpleQueue[_Done] = queue.SimpleQueue()
        self._lanes: list[queue.SimpleQueue[_Job | None]] = []
        self._abandon = threading.Event()
        self._assignment: frozenset[TopicPartition] = frozenset()
        self._paused = False
        self._full_since: float | None = None
        self._failed = False
        self._lane_error: BaseException | None = None
        self._produce_error: KafkaError | None = None
        self._warned: set[int] = set()
        self._last_commit = 0.0
        self._started = False
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None

    @property
    def source_topics(self) -> list[str]:
        return [self.topics.actions(channel) for channel in self.connector.channels]

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this runner currently owns in its consumer group."""
        return self._assignment

    @property
    def paused(self) -> bool:
        """True while consumption is paused because ``max_in_flight`` actions are
        unfinished (for ``pause_after`` seconds or longer)."""
        return self._paused

    @property
    def circuit_state(self) -> CircuitState:
        return self.circuit.state

    @property
    def stats(self) -> RunnerStats:
        with self._counts_lock:
            return RunnerStats(**self._counts)

    # -- the consuming thread ------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume and deliver until ``stop`` is set; see the module docstring."""
        if self._started:
            raise RuntimeError("a ConnectorRunner runs once; make a new one")
        self._started = True
        self._consumer = Consumer(self._consumer_settings())
        self._producer = Producer(self._producer_settings())
        self._lanes = [queue.SimpleQueue() for _ in range(self.delivery_threads)]
        threads = [
            threading.Thread(
                target=self._lane_loop, args=(lane,), name=f"rota-{self.name}-{i}", daemon=True
            )
            for i, lane in enumerate(self._lanes)
        ]
        for thread in threads:
            thread.start()
        log.info("connector %s consuming %s as %s", self.name, self.source_topics, self.group_id)
        try:
            self._consumer.subscribe(
                self.source_topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            while not stop.is_set():
                self._step()
            self._drain(None, time.monotonic() + self.drain_timeout)
            self._stop_lanes(threads)
            self._handle_done(timeout=0)
            self._commit()
        except BaseException:
            self._failed = True
            self._stop_lanes(threads, wait=1.0)
            raise
        finally:
            self._close()

    def _step(self) -> None:
        assert self._consumer is not None and self._producer is not None
        self._raise_if_failed()
        finished = self._handle_done(timeout=0)
        room = self.max_in_flight - self._tracker.pending()
        metrics.IN_FLIGHT.labels(self.name).set(self.max_in_flight - room)
        if room <= 0:
            # Full. Briefly: just wait for deliveries to finish. For longer (a channel in
            # trouble, actions waiting to retry): pause the partitions and keep calling
            # consume, so rebalances are served and the group keeps this member.
            # Pausing drops librdkafka's prefetched messages, hence not at once.
            now = time.monotonic()
            self._full_since = self._full_since or now
            if not self._paused and now - self._full_since >= self.pause_after:
                self._pause(True)
        else:
            self._full_since = None
            if self._paused and room >= self.max_in_flight // 2:
                self._pause(False)
        if room <= 0 or self._paused:
            self._handle_done(timeout=self.poll_interval)
            messages = self._consumer.consume(1, timeout=0) if self._paused else []
        else:
            # consume(n, timeout) waits for all n or the timeout: take what is there,
            # and block (for one message) only when there is nothing else to do.
            messages = self._consumer.consume(min(room, 1000), timeout=0)
            if not messages and not finished:
                messages = self._consumer.consume(1, timeout=self.poll_interval)
        for message in messages:
            error = message.error()
            if error is not None:
                self._consumer_error(error)
            else:
                self._accept(message)
        self._producer.poll(0)
        if time.monotonic() - self._last_commit >= self.commit_interval:
            self._commit()

    def _accept(self, message: Message) -> None:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        tp = (topic, partition)
        key, value = message.key(), message.value()
        self._tracker.started(tp, offset)
        self._count("consumed")
        metrics.ACTIONS_CONSUMED.labels(self.name).inc()
        try:
            if value is None:
                raise DecodeError("no value (a tombstone)")
            action = decode_action(value)
        except DecodeError as exc:
            log.warning("connector %s: %s[%d]@%d is not an action: %s", self.name, *tp, offset, exc)
            self._dead_letter(tp, offset, key, value, "undecodable", str(exc))
            self._tracker.completed(tp, offset)
            return
        lane = lane_of(action.customer_id, len(self._lanes))
        self._lanes[lane].put(_Job(tp, offset, key, value, action))

    def _handle_done(self, timeout: float) -> int:
        """Finish what the delivery threads completed (waiting up to ``timeout`` for the
        first one); returns how many."""
        try:
            done = self._done.get(timeout=timeout) if timeout > 0 else self._done.get_nowait()
        except queue.Empty:
            return 0
        count = 0
        while True:
            self._finish(done)
            count += 1
            try:
                done = self._done.get_nowait()
            except queue.Empty:
                return count

    def _finish(self, done: _Done) -> None:
        job, result, action = done.job, done.result, done.job.action
        if result is Result.ABANDONED:
            self._count("abandoned")
            return  # left pending: its offset is not committed
        metrics.DELIVERIES.labels(self.name, result.value).inc()
        self._count("duplicates" if result is Result.DUPLICATE else result.value)
        outcome = _OUTCOME.get(result)
        if outcome is not None:
            touchpoint = outcome_touchpoint(
                action,
                outcome,
                connector=self.name,
                occurred_at=self.now_ms(),
                detail=done.detail,
                attempts=done.attempts,
                provider_message_id=done.provider_message_id,
                extra=done.properties,
            )
            self._produce(
                self.topics.touchpoints, action.customer_id.encode(), encode_touchpoint(touchpoint)
            )
        reason = _DEAD_LETTER_REASON.get(result)
        if reason is not None:
            log.warning(
                "connector %s: action %s %s after %d attempt(s): %s",
                self.name,
                action.action_id,
                result.value,
                done.attempts,
                done.detail,
            )
            self._dead_letter(job.tp, job.offset, job.key, job.value, reason, done.detail)
        self._tracker.completed(job.tp, job.offset)

    def _dead_letter(
        self,
        tp: TopicPartition,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        reason: str,
        detail: str,
    ) -> None:
        record = DeadLetter.now(
            reason=reason,
            detail=detail,
            source_topic=tp[0],
            source_partition=tp[1],
            source_offset=offset,
            original_key=key,
            original_value=value,
            component=f"connector:{self.name}",
        )
        self._produce(self.topics.deadletter, key, encode_deadletter(record))
        self._count("dead_lettered")
        metrics.DEADLETTERED.labels(self.name, reason).inc()

    def _produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        assert self._producer is not None
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
                return
            except BufferError:  # local queue full: let it drain
                self._producer.poll(0.1)

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            log.error(
                "connector %s: publishing to %s failed: %s", self.name, message.topic(), error
            )
            if self._produce_error is None:
                self._produce_error = error

    def _commit(self) -> None:
        """Commit what finished, after everything published for it is acknowledged."""
        assert self._consumer is not None and self._producer is not None
        self._last_commit = time.monotonic()
        offsets = self._tracker.committable()
        if not offsets:
            return
        remaining = self._producer.flush(self.flush_timeout)
        if remaining:
            raise RunnerError(
                f"{remaining} outcome/dead-letter record(s) not acknowledged within "
                f"{self.flush_timeout:g}s; offsets not committed"
            )
        if self._produce_error is not None:
            raise RunnerError(
                f"publishing an outcome or dead letter failed ({self._produce_error}); "
                "offsets not committed"
            )
        try:
            self._consumer.commit(
                offsets=[KafkaPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=False,
            )
        except KafkaException as exc:  # e.g. a rebalance in progress: try again later
            log.warning("connector %s: commit failed, will retry: %s", self.name, exc)
            return
        self._tracker.committed(offsets)

    def _drain(self, tps: set[TopicPartition] | None, deadline: float) -> None:
        """Finish (publish outcomes of) actions already read, on ``tps`` or all."""
        assert self._producer is not None
        while self._tracker.pending(tps) and time.monotonic() < deadline:
            self._raise_if_failed()
            self._handle_done(timeout=self.poll_interval)
            self._producer.poll(0)

    def _pause(self, paused: bool) -> None:
        assert self._consumer is not None
        assignment = self._consumer.assignment()
        if assignment:
            if paused:
                log.info(
                    "connector %s: %d actions in flight, pausing", self.name, self.max_in_flight
                )
                self._consumer.pause(assignment)
            else:
                self._consumer.resume(assignment)
        self._paused = paused

    def _consumer_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise RunnerError(f"connector {self.name}: consumer failed: {error}")
        # Logged once per kind at warning level: a missing topic repeats every poll.
        level = logging.DEBUG if error.code() in self._warned else logging.WARNING
        self._warned.add(error.code())
        log.log(level, "connector %s: consumer: %s", self.name, error)

    def _raise_if_failed(self) -> None:
        if self._lane_error is not None:
            raise RunnerError(f"a delivery thread failed: {self._lane_error!r}") from (
                self._lane_error
            )

    def _on_assign(self, consumer: Consumer, partitions: list[KafkaPartition]) -> None:
        log.info("connector %s assigned %d partition(s)", self.name, len(partitions))
        self._assignment = self._assignment | {(p.topic, p.partition) for p in partitions}
        self._paused = False  # a new assignment starts unpaused

    def _on_revoke(self, consumer: Consumer, partitions: list[KafkaPartition]) -> None:
        """Before giving partitions away, finish and commit their work (bounded), so the
        next owner does not deliver it again."""
        tps = {(p.topic, p.partition) for p in partitions}
        if not self._failed:
            if not self._abandon.is_set():  # stopping: what is left was abandoned
                self._drain(tps, time.monotonic() + self.drain_timeout)
            self._commit()
        self._tracker.forget(tps)
        self._assignment = self._assignment - tps

    def _on_lost(self, consumer: Consumer, partitions: list[KafkaPartition]) -> None:
        log.warning("connector %s lost %d partition(s)", self.name, len(partitions))
        tps = {(p.topic, p.partition) for p in partitions}
        self._tracker.forget(tps)
        self._assignment = self._assignment - tps

    def _stop_lanes(self, threads: list[threading.Thread], wait: float | None = None) -> None:
        self._abandon.set()
        self.circuit.wake()
        for lane in self._lanes:
            lane.put(None)
        deadline = time.monotonic() + (self.drain_timeout if wait is None else wait)
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _close(self) -> None:
        try:
            if self._consumer is not None:
                self._consumer.close()  # serves the final revoke (see _on_revoke)
        finally:
            try:
                if self._producer is not None:
                    self._producer.flush(self.flush_timeout)
            finally:
                self._consumer = self._producer = None  # let librdkafka's handles go
                self.connector.close()
                self.ledger.close()
                metrics.IN_FLIGHT.labels(self.name).set(0)

    # -- delivery threads ------------------------------------------------------------

    def _lane_loop(self, jobs: queue.SimpleQueue[_Job | None]) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            if self._abandon.is_set():
                self._done.put(_Done(job, Result.ABANDONED))
                continue
            try:
                self._done.put(self._deliver(job))
            except BaseException as exc:  # a bug or a broken ledger: stop the runner
                log.exception("connector %s: delivery thread failed", self.name)
                self._lane_error = exc
                self._done.put(_Done(job, Result.ABANDONED))

    def _deliver(self, job: _Job) -> _Done:
        action = job.action
        if self.ledger.seen(action.action_id):
            return _Done(job, Result.DUPLICATE, "already delivered")
        attempts = 0
        while True:
            if is_expired(action, self.now_ms()):
                return self._expired(job, attempts)
            permit = self._wait_turn(job.tp[0])
            if permit is None:
                return _Done(job, Result.ABANDONED, "stopped while waiting", attempts)
            if is_expired(action, self.now_ms()):  # it may have waited a while
                self.circuit.release(permit)
                return self._expired(job, attempts)
            attempts += 1
            result = self._attempt(action)
            endpoint_failed = result.status is DeliveryStatus.FAILED and result.retryable
            self.circuit.record(permit, ok=not endpoint_failed)
            if result.status is DeliveryStatus.DELIVERED:
                self.ledger.record(action.action_id)
                return _Done(
                    job,
                    Result.DELIVERED,
                    result.detail,
                    attempts,
                    result.provider_message_id,
                    result.properties,
                )
            if not self.retry.should_retry(result, attempts):
                final = _FINAL.get(result.status, Result.FAILED)
                return _Done(job, final, result.detail, attempts, None, result.properties)
            delay = self.retry.delay(attempts, result.retry_after)
            log.info(
                "connector %s: action %s attempt %d failed (%s); retrying in %.2fs",
                self.name,
                action.action_id,
                attempts,
                result.detail,
                delay,
            )
            if self._abandon.wait(delay):
                return _Done(job, Result.ABANDONED, result.detail, attempts)
            self._count("retries")
            metrics.RETRIES.labels(self.name).inc()

    def _expired(self, job: _Job, attempts: int) -> _Done:
        assert job.action.expires_at is not None
        return _Done(job, Result.EXPIRED, f"expired at {iso(job.action.expires_at)}", attempts)

    def _wait_turn(self, topic: str) -> Permit | None:
        """Wait until the circuit allows a call and the channel's rate limit has a token
        for it; None when stopping. The circuit comes first: a token taken and then held
        through an outage would let a burst through on recovery."""
        permit = self.circuit.acquire(self._abandon)
        if permit is None:
            return None
        limited = self._buckets.get(topic)
        if limited is None:
            return permit
        channel, bucket = limited
        started = time.monotonic()
        if not bucket.acquire(self._abandon):
            self.circuit.release(permit)
            return None
        waited = time.monotonic() - started
        if waited > 0.0005:
            metrics.RATE_LIMIT_WAIT.labels(self.name, channel).inc(waited)
        return permit

    def _attempt(self, action: NextBestAction) -> DeliveryResult:
        started = time.perf_counter()
        try:
            return self.connector.deliver(action)
        except Exception as exc:
            log.exception("connector %s raised on action %s", self.name, action.action_id)
            return DeliveryResult.failed(f"connector raised {type(exc).__name__}: {exc}")
        finally:
            metrics.DELIVERY_SECONDS.labels(self.name).observe(time.perf_counter() - started)

    # -- plumbing ----------------------------------------------------------------------

    def _count(self, name: str) -> None:
        with self._counts_lock:
            self._counts[name] += 1

    def _consumer_settings(self) -> dict[str, Any]:
        return {
            **client_config(self.bootstrap),
            "group.id": self.group_id,
            "client.id": f"rota-connector-{self.name}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": self.heartbeat_interval_ms,
            # Notice action topics created after start within seconds, not minutes.
            "topic.metadata.refresh.interval.ms": 10_000,
            # Apache Kafka answers a waiting fetch when records arrive; the embedded
            # broker only when the wait (librdkafka's default: 500 ms) expires.
            "fetch.wait.max.ms": 100,
            **self.consumer_config,
        }

    def _producer_settings(self) -> dict[str, Any]:
        return {
            **producer_config(self.bootstrap),
            "client.id": f"rota-connector-{self.name}",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            **self.producer_config,
        }
