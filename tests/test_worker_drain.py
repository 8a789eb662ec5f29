"""The fetcher's loop (``faust_context.direct_drain``): records of a raw-bytes channel
handed to it directly, in order, each once; everything that has to wait, and every other
partition, handed to Faust's own hand-over. A real Faust app and consumer, not started:
the fetch itself is replaced by a list of records, so no broker is needed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from orchestrator.worker.faust_context import (
    install_direct_drain,
    install_fast_handover,
    install_lean_delivery,
)

RAW, JSON = "unit.drain.raw", "unit.drain.json"


def _record(topic: str, partition: int, offset: int, value: bytes = b"v") -> Any:
    stamp = 1_700_000_000_000 + offset
    return ConsumerRecord(topic, partition, offset, stamp, 0, b"k", value, None, 1, len(value), ())


class _Fetcher:
    """What the loop sees of Faust's fetcher: it stops when the fetches run out."""

    def __init__(self) -> None:
        self._stopped = asyncio.Event()


class _Harness:
    """An app whose consumer fetches ``fetches`` in turn, then stops its fetcher."""

    def __init__(self, app: faust.App, fetches: list[dict[TP, list[Any]]]) -> None:
        self.app = app
        self.consumer = consumer = app.consumer
        self.fetcher = _Fetcher()
        self.through_faust: list[int] = []
        consumer.highwater = lambda tp: 1_000  # type: ignore[method-assign]
        consumer.can_resume_flow.set()
        faust_callback = consumer.callback

        async def callback(message: Any) -> None:
            self.through_faust.append(message.offset)
            await faust_callback(message)

        consumer.callback = callback
        pending = list(fetches)

        async def wait_next_records(timeout: float) -> tuple[Any, Any]:
            if not pending:
                self.fetcher._stopped.set()
                return None, None
            return pending.pop(0), None

        consumer._wait_next_records = wait_next_records  # type: ignore[method-assign]

    def subscribe(self, channel: Any, *tps: TP) -> None:
        for tp in tps:
            self.app.topics._tp_to_callback[tp] = self.app.topics._build_handler(tp, {channel})

    async def drain(self) -> None:
        await asyncio.wait_for(self.consumer._drain_messages(self.fetcher), timeout=10)


def _run(body: Callable[[faust.App], Awaitable[Any]], buffer: int = 4096) -> Any:
    install_fast_handover()
    install_lean_delivery()
    install_direct_drain()

    async def main() -> Any:
        app = faust.App(
            "unit-drain", broker="kafka://127.0.0.1:9", store="memory://",
            stream_buffer_maxsize=buffer,
        )  # fmt: skip
        app.flow_control.resume()
        return await body(app)

    return asyncio.run(main())


def _raw(app: faust.App, topic: str = RAW) -> Any:
    return app.topic(topic, key_serializer="raw", value_serializer="raw").clone(is_iterator=True)


def _queued(channel: Any) -> list[Any]:
    out = []
    while not channel.queue.empty():
        out.append(channel.queue.get_nowait())
    return out


def test_raw_records_reach_the_channel_in_order_each_once_without_fausts_hand_over():
    tp0, tp1 = TP(RAW, 0), TP(RAW, 1)

    async def body(app: faust.App) -> Any:
        channel = _raw(app)
        fetches = [
            {tp0: [_record(RAW, 0, 0), _record(RAW, 0, 1)], tp1: [_record(RAW, 1, 5)]},
            {tp0: [_record(RAW, 0, 2, b"later")]},
        ]
        harness = _Harness(app, fetches)
        harness.subscribe(channel, tp0, tp1)
        await harness.drain()
        events = _queued(channel)
        return events, harness.through_faust, dict(harness.consumer._read_offset)

    events, through_faust, read = _run(body)
    assert [(e.message.partition, e.message.offset) for e in events] == [
        (0, 0), (1, 5), (0, 1), (0, 2)
    ]  # fmt: skip  # Faust's round robin over the fetch's partitions
    assert events[-1].value == b"later" and events[-1].key == b"k"
    assert all(e.message.refcount == 1 for e in events)  # released by Message.ack
    assert through_faust == []
    assert read == {tp0: 2, tp1: 5}


def test_a_record_already_read_is_not_delivered_again():
    tp0 = TP(RAW, 0)

    async def body(app: faust.App) -> Any:
        channel = _raw(app)
        fetches = [{tp0: [_record(RAW, 0, 3)]}, {tp0: [_record(RAW, 0, 2), _record(RAW, 0, 4)]}]
        harness = _Harness(app, fetches)
        harness.subscribe(channel, tp0)
        await harness.drain()
        return [e.message.offset for e in _queued(channel)]

    assert _run(body) == [3, 4]


def test_other_channels_get_their_records_through_fausts_hand_over():
    tp = TP(JSON, 0)

    async def body(app: faust.App) -> Any:
        channel = app.topic(JSON, key_serializer="raw", value_serializer="json").clone(
            is_iterator=True
        )
        harness = _Harness(app, [{tp: [_record(JSON, 0, 0, b'{"a": 1}')]}])
        harness.subscribe(channel, tp)
        await harness.drain()
        return [e.value for e in _queued(channel)], harness.through_faust

    assert _run(body) == ([{"a": 1}], [0])


def test_a_full_channel_makes_the_loop_wait_for_room_through_fausts_hand_over():
    tp0 = TP(RAW, 0)

    async def body(app: faust.App) -> Any:
        channel = _raw(app)
        harness = _Harness(app, [{tp0: [_record(RAW, 0, 0), _record(RAW, 0, 1)]}])
        harness.subscribe(channel, tp0)
        draining = asyncio.ensure_future(harness.drain())
        await asyncio.sleep(0.05)
        blocked = not draining.done()
        first = channel.queue.get_nowait()
        await draining
        return blocked, first.message.offset, _queued(channel), harness.through_faust

    blocked, first, rest, through_faust = _run(body, buffer=1)
    assert blocked and first == 0
    assert [e.message.offset for e in rest] == [1]
    assert through_faust == [1]


def test_a_new_consumer_generation_stops_delivery_of_the_fetch():
    tp0 = TP(RAW, 0)

    async def body(app: faust.App) -> Any:
        channel = _raw(app)
        harness = _Harness(app, [{tp0: [_record(RAW, 0, 0), _record(RAW, 0, 1)]}])
        harness.subscribe(channel, tp0)
        handler = app.topics._tp_to_callback[tp0]
        deliver_now = handler.rota_deliver_now

        def deliver_and_rebalance(message: Any) -> bool:
            app.consumer_generation_id += 1  # a rebalance came in after the first record
            return bool(deliver_now(message))

        handler.rota_deliver_now = deliver_and_rebalance
        await harness.drain()
        return [e.message.offset for e in _queued(channel)]

    assert _run(body) == [0]
