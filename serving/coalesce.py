"""Share one Redis round trip among the requests that need one at the same time.

Each /predict needs a cache lookup (and, on a miss, a write) for a single key; one round trip
per request costs more CPU in the Redis client than scoring the linear model does. `Coalescer`
sends the keys of every caller waiting at that moment in one call: a caller arriving while a
call is in flight waits for the next one, which carries everyone who arrived meanwhile. An idle
service therefore waits for nothing, and a busy one makes one round trip per batch of requests
instead of one per request (Nagle's idea, without its timer). `aiodataloader` batches the calls
of one loop turn and sends the next turn's while the first is in flight; waiting for the call in
flight instead makes fewer, larger calls when the loop is busy, which is when it matters.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """`submit(items)` returns `call(items of every waiting caller)`'s answers for `items`.

    `call` must answer one result per item, in order. An exception from `call` reaches every
    caller of that round; a caller that stops waiting (cancelled) does not affect the others.
    Meant for one event loop (the worker's): no locks.
    """

    def __init__(self, call: Callable[[list[T]], Awaitable[Sequence[R]]]) -> None:
        self._call = call
        self._waiting: list[tuple[Sequence[T], asyncio.Future[list[R]]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, items: Sequence[T]) -> list[R]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[R]] = loop.create_future()
        self._waiting.append((items, answer))
        if self._runner is None:
            # Starts on the loop's next turn, so the callers of this turn share its first call.
            self._runner = loop.create_task(self._run())
        return await answer

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                items = [item for wanted, _ in batch for item in wanted]
                try:
                    results = list(await self._call(items))
                except asyncio.CancelledError:  # the loop is shutting down: nobody gets an answer
                    for _, answer in batch + self._waiting:
                        answer.cancel()
                    self._waiting = []
                    raise
                except Exception as exc:  # noqa: BLE001 - handed to every caller, not swallowed
                    for _, answer in batch:
                        if not answer.done():
                            answer.set_exception(exc)
                    continue
                start = 0
                for wanted, answer in batch:
                    if not answer.done():
                        answer.set_result(results[start : start + len(wanted)])
                    start += len(wanted)
        finally:
            self._runner = None
