"""Deciding one batch while Kafka acknowledges the one before.

A batch is done in three steps, each waiting for Kafka: its actions (and the timers it
set) must be acknowledged before the state that says they happened is written; that
state's changelog must be acknowledged before Faust may commit the batch's offsets.
Taken in turn, the waits were about 40 % of the batch loop's wall time. Here they run
in the background while the agent receives and decides the next batch, which reads
through the state changes not yet written (``Processor.process(previous=...)``). The
worker is CPU-bound, so most of that time went to Faust's delivery of records instead
(README, "Performance"); latency gained more than throughput.

The order of the steps is unchanged, so a crash anywhere still replays rather than
loses: Faust commits an offset only once its record is acknowledged, and the records
of a batch are acknowledged (``Message.ack``, releasing the reference the agent's
channel holds, ``faust_context.batches``) only once its state's changelog is in Kafka.
Faust waits for unacknowledged records before it gives partitions away or stops, so a
rebalance or a shutdown lets the batch in flight finish first.

At most one batch is in flight: the agent waits for it before handing over the next,
so reads go through one batch at most, and memory stays bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.worker.outputs import Epoch, OutputError, Outputs, stop_worker
from orchestrator.worker.partition_store import Tables
from orchestrator.worker.process import BatchResult


class Pipeline:
    def __init__(self, outputs: Outputs, tables: Tables, consumer: Any) -> None:
        self._outputs = outputs
        self._tables = tables
        self._consumer = consumer
        self._results: Mapping[int, BatchResult] = {}
        self._task: asyncio.Task[None] | None = None

    def previous(self, partition: int) -> BatchResult | None:
        """The partition's batch in flight, for the next batch to read through."""
        return self._results.get(partition)

    async def submit(self, results: Mapping[int, BatchResult], events: Sequence[Any]) -> None:
        """Hand over a decided batch (its outputs already sent to ``Outputs``, its
        ``events`` held); returns once the batch before it is done."""
        sent = self._outputs.seal()
        await self.wait()
        self._results = results
        self._task = asyncio.ensure_future(self._complete(results, events, sent))

    async def wait(self) -> None:
        """Until the batch in flight is done (its error, if it failed)."""
        task, self._task = self._task, None
        if task is not None:
            await task

    async def _complete(
        self, results: Mapping[int, BatchResult], events: Sequence[Any], sent: Epoch
    ) -> None:
        # Records of earlier epochs are acknowledged: the batch before waited for them.
        outputs = self._outputs
        try:
            await outputs.acknowledged(sent)
            for result in results.values():
                result.apply_state()
            await outputs.acknowledged(outputs.seal())
        except OutputError as exc:
            stop_worker(exc)
            raise
        self._tables.persist_offsets()
        consumer = self._consumer
        for event in events:
            event.message.ack(consumer)
