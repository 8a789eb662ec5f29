"""Faust's send buffer, as patched by ``install_complete_flush``: ``flush`` returns only
when every message put so far has been handed to the Kafka client.

The worker relies on it twice: actions are flushed before the state that says they
happened is written, and Faust flushes before committing offsets. The client here
stalls each send the way a loaded machine does; Faust's own flush gave up after 0.1 s.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.transport.producer import ProducerBuffer

from orchestrator.worker.faust_context import install_complete_flush


class StallingClient:
    """The channel a buffered message is published through; each send takes a while."""

    def __init__(self, stall: float) -> None:
        self.stall = stall
        self.handed_over: list[int] = []

    async def publish_message(self, fut: SimpleNamespace, wait: bool) -> None:
        await asyncio.sleep(self.stall)
        self.handed_over.append(fut.n)


async def _flush_with(stall: float, count: int) -> tuple[list[int], list[int]]:
    install_complete_flush()
    buffer = ProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
    client = StallingClient(stall)
    await buffer.start()
    try:
        for n in range(count):
            buffer.put(SimpleNamespace(n=n, message=SimpleNamespace(channel=client)))
        await buffer.flush()
        at_return = list(client.handed_over)
    finally:
        await buffer.stop()
    return at_return, list(range(count))


def test_flush_waits_through_stalls_longer_than_a_tenth_of_a_second():
    at_return, sent = asyncio.run(_flush_with(stall=0.25, count=4))
    assert at_return == sent


def test_flush_waits_for_the_message_already_taken_off_the_queue():
    # One message: the queue is empty as soon as the buffer's task picks it up, while
    # the client still holds it back.
    at_return, sent = asyncio.run(_flush_with(stall=0.3, count=1))
    assert at_return == sent
