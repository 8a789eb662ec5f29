"""The agent's batches, taken from its channel queue (``faust_context.batches``): what
Faust's stream would let through, tracked for Faust's wait-for-acknowledgements, in
batches no larger than asked."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from conftest import consumer_message
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from orchestrator.worker.faust_context import batches

TOPIC = "unit.touchpoints"


class _App:
    """The parts of a Faust app the reader looks at."""

    def __init__(self) -> None:
        self.flow_control = FlowControlEvent()
        self.flow_control.resume()
        self.consumer_generation_id = 1
        self.tracked: list[int] = []
        self.consumer = SimpleNamespace(track_message=lambda m: self.tracked.append(m.offset))
        self.topics = SimpleNamespace(acks_enabled_for=lambda topic: topic == TOPIC)


def _event(offset: int, generation: int = 1) -> Any:
    return SimpleNamespace(message=consumer_message(TOPIC, offset, generation=generation))


def _channel(events: list[Any]) -> Any:
    queue: FlowControlQueue[Any] = FlowControlQueue(
        maxsize=100, flow_control=FlowControlEvent(initially_suspended=False)
    )
    for event in events:
        queue.put_nowait(event)
    return SimpleNamespace(queue=queue)


def _first(app: _App, channel: Any, max_events: int, within: float) -> list[int]:
    async def take() -> list[int]:
        it = batches(app, channel, max_events, within)
        events = await asyncio.wait_for(anext(it), timeout=5)
        await it.aclose()
        return [e.message.offset for e in events]

    return asyncio.run(take())


def test_a_batch_takes_what_is_queued_up_to_the_maximum_in_order():
    channel = _channel([_event(n) for n in range(10)])
    assert _first(_App(), channel, 4, 0.01) == [0, 1, 2, 3]
    assert channel.queue.qsize() == 6


def test_records_of_an_earlier_consumer_generation_are_skipped_and_not_tracked():
    app = _App()
    app.consumer_generation_id = 2
    channel = _channel([_event(0, generation=1), _event(1, generation=2), _event(2, 1)])
    assert _first(app, channel, 10, 0.01) == [1]
    assert app.tracked == [1]


def test_each_message_is_tracked_once_as_unacknowledged():
    app = _App()
    events = [_event(0), _event(1)]
    _first(app, _channel(events), 10, 0.01)
    _first(app, _channel(events), 10, 0.01)  # the same messages again: already tracked
    assert app.tracked == [0, 1]


def test_events_arriving_within_the_wait_join_the_batch():
    app = _App()
    channel = _channel([_event(0)])

    async def take() -> list[int]:
        async def later() -> None:
            await asyncio.sleep(0.01)
            channel.queue.put_nowait(_event(1))

        feeder = asyncio.ensure_future(later())
        events = await anext(batches(app, channel, 10, 0.5))
        await feeder
        return [e.message.offset for e in events]

    assert asyncio.run(take()) == [0, 1]
