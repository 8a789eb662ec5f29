"""Faust's side of the worker's receiving, without a broker: a real Faust app and
consumer (not started) whose fetches are scripted, run through the fetcher's loop into
a channel, as in the worker.

It is how ``bench.cost`` counts what a record costs before the worker sees it - a part
a touchpoint pays and a fired timer does not - and how the tests of the worker's Faust
patches (``worker/faust_context.py``) drive that loop record by record.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from orchestrator.worker.faust_context import install_worker_patches

#: A record's timestamp, ms (any fixed one: nothing reads it as a time here).
STAMP = 1_700_000_000_000


def record(tp: TP, offset: int, key: bytes | None = b"k", value: bytes = b"v") -> Any:
    """A fetched record of ``tp`` as aiokafka hands it to Faust."""
    size = len(value)
    return ConsumerRecord(tp.topic, tp.partition, offset, STAMP, 0, key, value, None, 1, size, ())


def app(buffer: int = 4096) -> faust.App:
    """A Faust app with the worker's patches and flow resumed; its consumer is built but
    never started. Call from inside a running event loop."""
    install_worker_patches()
    made = faust.App(
        "rota-scripted", broker="kafka://127.0.0.1:9", store="memory://",
        stream_buffer_maxsize=buffer,
    )  # fmt: skip
    made.flow_control.resume()
    return made


def raw_channel(app: faust.App, topic: str) -> Any:
    """``topic``'s channel as the worker's agent subscribes it (raw bytes)."""
    return app.topic(topic, key_serializer="raw", value_serializer="raw").clone(is_iterator=True)


class _Fetcher:
    """What the loop sees of Faust's fetcher service: it stops once the fetches ran out."""

    def __init__(self) -> None:
        self._stopped = asyncio.Event()


class ScriptedFetches:
    """``app``'s consumer fetching ``fetches`` in turn (each as Faust's ``getmany`` gets
    them: records by partition), every partition active, then its fetcher stopping.
    ``through_faust`` lists the offsets handed over by Faust's own hand-over (the
    consumer's callback) rather than directly."""

    def __init__(self, app: faust.App, fetches: list[dict[TP, list[Any]]]) -> None:
        self.app = app
        consumer: Any = app.consumer  # its private parts are what gets scripted
        self.consumer = consumer
        self.through_faust: list[int] = []
        self._fetcher = _Fetcher()
        pending = list(fetches)
        faust_callback = consumer.callback

        async def callback(message: Any) -> None:
            self.through_faust.append(message.offset)
            await faust_callback(message)

        async def wait_next_records(timeout: float) -> tuple[Any, Any]:
            if not pending:
                self._fetcher._stopped.set()
                return None, None
            return pending.pop(0), None

        consumer.callback = callback
        consumer._wait_next_records = wait_next_records
        consumer.highwater = lambda tp: 0  # no broker to ask
        consumer.can_resume_flow.set()

    def subscribe(self, channel: Any, *tps: TP) -> None:
        """Route ``tps`` to ``channel`` as the conductor does once an agent subscribed
        (its records acknowledged, as an agent's are)."""
        conductor = self.app.topics
        conductor._acking_topics.update(channel.topics)  # type: ignore[attr-defined]
        for tp in tps:
            conductor._tp_to_callback[tp] = conductor._build_handler(tp, {channel})  # type: ignore[attr-defined]

    async def drain(self, timeout: float = 10.0) -> None:
        """Run the fetcher's loop until the fetches are delivered."""
        loop = self.consumer._drain_messages(self._fetcher)
        await asyncio.wait_for(loop, timeout=timeout)
