"""The fetcher's hand-over of a record (``faust_context.fast_wait_first``): inline when
it need not wait, and otherwise exactly Faust's race against the flow being suspended."""

from __future__ import annotations

import asyncio
import warnings

from mode import Service

from orchestrator.worker.faust_context import fast_wait_first


class _Consumer(Service):
    """What the hand-over sees of a Faust consumer: a service with ``suspend_flow``."""

    wait_first = fast_wait_first

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()


def _run(body):
    async def main():
        consumer = _Consumer()
        await consumer.start()
        try:
            return await body(consumer)
        finally:
            await consumer.stop()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a coroutine never awaited fails the test
        return asyncio.run(main())


def test_a_hand_over_that_need_not_wait_runs_inline_and_returns_its_result():
    async def body(consumer):
        async def deliver():
            return asyncio.current_task()

        result = await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        return result, asyncio.current_task()

    result, caller = _run(body)
    assert result.results == [caller]  # ran in the caller's task: no task of its own
    assert len(result.done) == 1 and not result.stopped


def test_a_hand_over_that_has_to_wait_finishes_in_the_background():
    async def body(consumer):
        space = asyncio.get_running_loop().create_future()
        got = []

        async def deliver():
            got.append(await space)
            return "queued"

        asyncio.get_running_loop().call_later(0.01, space.set_result, "room")
        result = await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        return result, got

    result, got = _run(body)
    assert result.results == ["queued"] and got == ["room"]


def test_suspending_the_flow_cancels_a_waiting_hand_over_which_unwinds():
    async def body(consumer):
        never = asyncio.get_running_loop().create_future()
        unwound = []

        async def deliver():
            try:
                await never
            finally:
                unwound.append(True)

        asyncio.get_running_loop().call_later(0.01, consumer.suspend_flow.set)
        result = await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        await asyncio.sleep(0.01)  # let the cancelled hand-over unwind
        return result, unwound, never.cancelled()

    result, unwound, cancelled = _run(body)
    assert result.results == [True]  # the suspension won
    assert unwound == [True] and cancelled


def test_an_error_in_the_hand_over_propagates():
    async def body(consumer):
        async def deliver():
            raise ValueError("undecodable")

        try:
            await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        except ValueError as exc:
            return str(exc)
        return None

    assert _run(body) == "undecodable"


def test_while_the_flow_is_suspended_the_hand_over_is_fausts_own_race():
    async def body(consumer):
        consumer.suspend_flow.set()
        ran = []

        async def deliver():
            ran.append(asyncio.current_task())
            return "queued"

        result = await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        return result, ran, asyncio.current_task()

    result, ran, caller = _run(body)
    assert ran and ran[0] is not caller  # in a task of its own, as Faust runs it
    assert len(result.done) >= 1
