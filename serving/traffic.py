"""BentoML's request timeout (`traffic.timeout`), with its timer cancelled when the answer starts.

BentoML 1.4's `TimeoutMiddleware` schedules `loop.call_later(timeout, ...)` for every request
and never cancels it, so each answered request leaves a timer, a future and their references
alive for the whole timeout: under load, tens of thousands of objects that every full garbage
collection walks, which made those collections /predict's long tail (benchmarks/README.md,
"The tail"). This subclass keeps BentoML's behaviour (a 504 with its message once the timeout
passes before the response starts) and cancels the timer as soon as the response starts or the
request ends.

`install()` puts it where BentoML looks the class up when it builds a worker's app;
tests/unit/test_traffic.py fails if a BentoML upgrade moves that place or fixes the leak.
"""

import asyncio
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

BentoTimeoutMiddleware = traffic.TimeoutMiddleware


class TimeoutMiddleware(BentoTimeoutMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def started(message: Message) -> None:
            if not waiter.done():
                waiter.set_result(None)
                timer.cancel()
            await send(message)

        answer = asyncio.ensure_future(self.app(scope, receive, started))
        try:
            await waiter
        except TimeoutError:
            if answer.cancel():
                await self._too_slow(scope, receive, send)
        else:
            await answer
        finally:
            timer.cancel()

    async def _too_slow(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"Not able to process the request in {self.timeout} seconds"
        await JSONResponse({"error": message}, status_code=504)(scope, receive, send)


def install() -> None:
    """Make BentoML build this class for `traffic.timeout` (once per process; idempotent)."""
    traffic.TimeoutMiddleware = TimeoutMiddleware  # type: ignore[misc]
