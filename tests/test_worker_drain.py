"""The fetcher's loop (``faust_context.direct_drain``): records of a raw-bytes channel
handed to it directly, in order, each once; everything that has to wait, and every other
partition, handed to Faust's own hand-over. A real Faust app and consumer, not started:
the fetches are scripted (``bench/delivery.py``), so no broker is needed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.types import TP

from orchestrator.bench import delivery
from orchestrator.bench.delivery import ScriptedFetches, raw_channel, record

RAW, JSON = TP("unit.drain.raw", 0), TP("unit.drain.json", 0)


def _run(body: Callable[[faust.App], Awaitable[Any]], buffer: int = 4096) -> Any:
    async def main() -> Any:
        return await body(delivery.app(buffer))

    return asyncio.run(main())


def _queued(channel: Any) -> list[Any]:
    out = []
    while not channel.queue.empty():
        out.append(channel.queue.get_nowait())
    return out


def test_raw_records_reach_the_channel_in_order_each_once_without_fausts_hand_over():
    other = TP(RAW.topic, 1)

    async def body(app: faust.App) -> Any:
        channel = raw_channel(app, RAW.topic)
        fetches = [
            {RAW: [record(RAW, 0), record(RAW, 1)], other: [record(other, 5)]},
            {RAW: [record(RAW, 2, b"cust", b"later")]},
        ]
        scripted = ScriptedFetches(app, fetches)
        scripted.subscribe(channel, RAW, other)
        await scripted.drain()
        events = _queued(channel)
        return events, scripted.through_faust, dict(scripted.consumer._read_offset)

    events, through_faust, read = _run(body)
    assert [(e.message.partition, e.message.offset) for e in events] == [
        (0, 0), (1, 5), (0, 1), (0, 2)
    ]  # fmt: skip  # Faust's round robin over the fetch's partitions
    assert (events[-1].key, events[-1].value) == (b"cust", b"later")
    assert all(e.message.refcount == 1 for e in events)  # released by Message.ack
    assert through_faust == []
    assert read == {RAW: 2, other: 5}


def test_a_record_already_read_is_not_delivered_again():
    async def body(app: faust.App) -> Any:
        channel = raw_channel(app, RAW.topic)
        fetches = [{RAW: [record(RAW, 3)]}, {RAW: [record(RAW, 2), record(RAW, 4)]}]
        scripted = ScriptedFetches(app, fetches)
        scripted.subscribe(channel, RAW)
        await scripted.drain()
        return [e.message.offset for e in _queued(channel)]

    assert _run(body) == [3, 4]


def test_other_channels_get_their_records_through_fausts_hand_over():
    async def body(app: faust.App) -> Any:
        channel = app.topic(JSON.topic, key_serializer="raw", value_serializer="json").clone(
            is_iterator=True
        )
        scripted = ScriptedFetches(app, [{JSON: [record(JSON, 0, b"k", b'{"a": 1}')]}])
        scripted.subscribe(channel, JSON)
        await scripted.drain()
        return [e.value for e in _queued(channel)], scripted.through_faust

    assert _run(body) == ([{"a": 1}], [0])


def test_a_full_channel_makes_the_loop_wait_for_room_through_fausts_hand_over():
    async def body(app: faust.App) -> Any:
        channel = raw_channel(app, RAW.topic)
        scripted = ScriptedFetches(app, [{RAW: [record(RAW, 0), record(RAW, 1)]}])
        scripted.subscribe(channel, RAW)
        draining = asyncio.ensure_future(scripted.drain())
        await asyncio.sleep(0.05)
        blocked = not draining.done()
        first = channel.queue.get_nowait()
        await draining
        return blocked, first.message.offset, _queued(channel), scripted.through_faust

    blocked, first, rest, through_faust = _run(body, buffer=1)
    assert blocked and first == 0
    assert [e.message.offset for e in rest] == [1]
    assert through_faust == [1]


def test_a_new_consumer_generation_stops_delivery_of_the_fetch():
    async def body(app: faust.App) -> Any:
        channel = raw_channel(app, RAW.topic)
        scripted = ScriptedFetches(app, [{RAW: [record(RAW, 0), record(RAW, 1)]}])
        scripted.subscribe(channel, RAW)
        handler = app.topics._tp_to_callback[RAW]
        deliver_now = handler.rota_deliver_now

        def deliver_and_rebalance(message: Any) -> bool:
            app.consumer_generation_id += 1  # a rebalance came in after the first record
            return bool(deliver_now(message))

        handler.rota_deliver_now = deliver_and_rebalance
        await scripted.drain()
        return [e.message.offset for e in _queued(channel)]

    assert _run(body) == [0]
