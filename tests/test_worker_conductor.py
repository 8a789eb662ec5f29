"""The conductor's hand-over of fetched records to the agent's channel
(``faust_context.install_lean_delivery``): raw bytes queued as they came, everything
else - and every change of subscribers - left to Faust's own handler. A real Faust app
object with the worker's patches (``bench/delivery.py``), not started: no broker is
needed to build and call its handlers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from conftest import consumer_message
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from orchestrator.bench import delivery

TOPIC = "unit.lean"
TP0 = TP(TOPIC, 0)


def _message(offset: int, key: bytes | None, value: bytes | None) -> ConsumerMessage:
    return consumer_message(TOPIC, offset, key, value, headers=[("h", b"1")])


def _run(body: Callable[[faust.App], Awaitable[Any]], buffer: int = 4096) -> Any:
    async def main() -> Any:
        return await body(delivery.app(buffer))

    return asyncio.run(main())


def test_a_raw_record_reaches_the_channel_as_fetched_holding_one_reference():
    async def body(app: faust.App) -> Any:
        channel = delivery.raw_channel(app, TOPIC)
        handler = app.topics._build_handler(TP0, {channel})
        first, second = _message(7, b"cust-1", b"\xc3\x01avro"), _message(8, None, None)
        await handler(first)
        await handler(second)
        return [channel.queue.get_nowait() for _ in range(2)], first, second

    (a, b), first, second = _run(body)
    assert (a.key, a.value, a.message) == (b"cust-1", b"\xc3\x01avro", first)
    assert a.headers == {"h": b"1"}
    assert (b.key, b.value, b.message) == (None, None, second)
    assert first.refcount == 1 and second.refcount == 1  # released by Message.ack


def test_a_topic_that_decodes_its_values_keeps_fausts_handler():
    async def body(app: faust.App) -> Any:
        channel = app.topic(TOPIC, key_serializer="raw", value_serializer="json").clone(
            is_iterator=True
        )
        handler = app.topics._build_handler(TP0, {channel})
        await handler(_message(1, b"k", b'{"a": 1}'))
        return channel.queue.get_nowait().value

    assert _run(body) == {"a": 1}


def test_a_subscriber_added_after_the_build_gets_the_record_too():
    async def body(app: faust.App) -> Any:
        channel, later = delivery.raw_channel(app, TOPIC), delivery.raw_channel(app, TOPIC)
        channels = {channel}
        handler = app.topics._build_handler(TP0, channels)
        channels.add(later)  # Faust rebuilds on resubscription; until then, its handler
        message = _message(3, b"k", b"v")
        await handler(message)
        return channel.queue.get_nowait(), later.queue.get_nowait(), message

    a, b, message = _run(body)
    assert a.message is message and b.message is message
    assert message.refcount == 2


def test_a_full_channel_makes_the_hand_over_wait_for_room():
    async def body(app: faust.App) -> Any:
        channel = delivery.raw_channel(app, TOPIC)
        handler = app.topics._build_handler(TP0, {channel})
        await handler(_message(1, b"k", b"one"))
        waiting = asyncio.ensure_future(handler(_message(2, b"k", b"two")))
        await asyncio.sleep(0.01)
        blocked = not waiting.done()
        first = channel.queue.get_nowait()
        await asyncio.wait_for(waiting, timeout=5)
        return blocked, first.value, channel.queue.get_nowait().value

    assert _run(body, buffer=1) == (True, b"one", b"two")


def test_a_suspended_flow_holds_the_record_until_it_resumes():
    async def body(app: faust.App) -> Any:
        channel = delivery.raw_channel(app, TOPIC)
        handler = app.topics._build_handler(TP0, {channel})
        app.flow_control.suspend()
        waiting = asyncio.ensure_future(handler(_message(1, b"k", b"v")))
        await asyncio.sleep(0.01)
        held = channel.queue.empty() and not waiting.done()
        app.flow_control.resume()
        await asyncio.wait_for(waiting, timeout=5)
        return held, channel.queue.get_nowait().value

    assert _run(body) == (True, b"v")
