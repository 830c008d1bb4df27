"""`Coalescer`: concurrent callers share one call, later ones the next, each gets its own
answers; failures reach every caller of their round and a cancelled caller harms nobody."""

import asyncio

import pytest

from serving.coalesce import Coalescer


class Doubler:
    """Answers 2x per item; each call waits for `release` when one is set."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.release: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(items)
        if self.release is not None:
            await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return [2 * i for i in items]


def test_a_lone_caller_is_answered_by_one_call_of_its_own():
    double = Doubler()
    assert asyncio.run(Coalescer(double).submit([1, 2])) == [2, 4]
    assert double.calls == [[1, 2]]


def test_callers_of_one_turn_share_a_call_and_get_their_own_answers():
    double = Doubler()

    async def main() -> list[list[int]]:
        shared = Coalescer(double)
        return await asyncio.gather(shared.submit([1]), shared.submit([2, 3]), shared.submit([4]))

    assert asyncio.run(main()) == [[2], [4, 6], [8]]
    assert double.calls == [[1, 2, 3, 4]]


def test_callers_arriving_during_a_call_share_the_next_one():
    double = Doubler()

    async def main() -> list[list[int]]:
        double.release = asyncio.Event()
        shared = Coalescer(double)
        first = asyncio.ensure_future(shared.submit([1]))
        while not double.calls:  # the first call is in flight
            await asyncio.sleep(0)
        later = [asyncio.ensure_future(shared.submit([n])) for n in (2, 3)]
        await asyncio.sleep(0)
        double.release.set()
        return [await first, *[await f for f in later]]

    assert asyncio.run(main()) == [[2], [4], [6]]
    assert double.calls == [[1], [2, 3]]


def test_a_failure_reaches_every_caller_of_its_round_and_the_next_round_works():
    double = Doubler()

    async def main() -> tuple[list[object], list[int]]:
        shared = Coalescer(double)
        double.fail = ValueError("no")
        failed = await asyncio.gather(
            shared.submit([1]), shared.submit([2]), return_exceptions=True
        )
        double.fail = None
        return failed, await shared.submit([5])

    failed, after = asyncio.run(main())
    assert [type(e) for e in failed] == [ValueError, ValueError]
    assert after == [10]


def test_a_cancelled_caller_leaves_the_others_their_answers():
    double = Doubler()

    async def main() -> list[int]:
        double.release = asyncio.Event()
        shared = Coalescer(double)
        gone = asyncio.ensure_future(shared.submit([1]))
        kept = asyncio.ensure_future(shared.submit([2]))
        while not double.calls:
            await asyncio.sleep(0)
        gone.cancel()
        double.release.set()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await kept

    assert asyncio.run(main()) == [4]


def test_a_loop_shutting_down_mid_call_cancels_every_waiting_caller_and_the_next_loop_works():
    double = Doubler()
    shared = Coalescer(double)
    waiting: list[asyncio.Future[list[int]]] = []

    async def shut_down_mid_call() -> None:
        double.release = asyncio.Event()  # never set: the first call hangs
        waiting.append(asyncio.ensure_future(shared.submit([1])))
        while not double.calls:
            await asyncio.sleep(0)
        waiting.append(asyncio.ensure_future(shared.submit([2])))  # queued behind it
        await asyncio.sleep(0)

    asyncio.run(shut_down_mid_call())  # cancels what is left, the runner included
    assert all(f.cancelled() for f in waiting)
    double.release = None
    assert asyncio.run(shared.submit([3])) == [6]
    assert double.calls[-1] == [3]  # nothing left over from the loop that is gone
