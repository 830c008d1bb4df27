"""Workarounds for BentoML 1.4 defects, all in this one module (the only one importing BentoML's
private modules). Each has a test in tests/serving/test_bentoml_fixes.py that fails once BentoML
fixes the defect, so the workaround can go.

1. Errors (bentoml/BentoML#4232, fixed by the open PR #5709): BentoML answers a 4xx
   `BentoMLException` raised in an API with a one-element list (`[{"error": ...}]`) holding only
   its message, and logs each one at ERROR with its traceback. `renders_errors` turns our own
   errors (`models.errors.ChurnError`, which carry their status) into the JSON object they
   describe and one INFO line, before BentoML sees them. Anything else still reaches BentoML:
   a bug stays a logged 500.
2. The request timeout (`traffic.timeout`): BentoML's `TimeoutMiddleware` schedules a timer per
   request and never cancels it, so every answered request leaves a timer and a future alive for
   the whole timeout; under load, tens of thousands of objects that each full garbage collection
   walks (benchmarks/README.md, "The tail"). `install()` makes BentoML build a subclass that
   cancels the timer once the answer starts, with the same 504 otherwise.
3. The connection pool to a dependency (`runner_connection`): BentoML's client closes its pool
   every `max_requests` calls or `max_age` seconds while calls are still in flight on it, which
   fail (seen as 500s under load in the batched design). `RUNNER_CONNECTION` keeps one pool.
"""

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from models.errors import ChurnError, InvalidInputError
from serving import metrics

logger = logging.getLogger("serving")

P = ParamSpec("P")
R = TypeVar("R")

RUNNER_CONNECTION = {"max_requests": 2**62, "max_age": 1e12}


def error_response(exc: ChurnError, endpoint: str, path: str) -> JSONResponse:
    """The answer to a request that raised `exc`, logged as a client error when it is one (one
    INFO line: the path, status and failing fields, never the body; serving.middleware counts
    it) and its failing fields counted."""
    status = exc.status_code
    if 400 <= status < 500:
        reason = exc.log_reason() if isinstance(exc, InvalidInputError) else str(exc)
        logger.info("client error on %s [POST]: %d %s", path, status, reason)
    if isinstance(exc, InvalidInputError):
        metrics.record_validation_failures(endpoint, (e.field for e in exc.errors))
    return JSONResponse(exc.to_body(), status_code=status)


def renders_errors(endpoint: str, path: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate an API method (under `@bentoml.api`) so that a `ChurnError` it raises becomes
    its own JSON body and status, as `error_response` builds them.

    The wrapper carries the method's signature as `__signature__`: BentoML computes
    `inspect.signature` of the API function on every call, which otherwise unwraps and rebuilds
    it each time."""

    def decorate(func: Callable[P, Any]) -> Callable[P, Any]:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                try:
                    return await func(*args, **kwargs)
                except ChurnError as exc:
                    return error_response(exc, endpoint, path)

        else:

            @functools.wraps(func)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                try:
                    return func(*args, **kwargs)
                except ChurnError as exc:
                    return error_response(exc, endpoint, path)

        wrapper.__signature__ = inspect.signature(func)  # type: ignore[attr-defined]
        return wrapper

    return decorate


class TimeoutMiddleware(traffic.TimeoutMiddleware):
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
                message = f"Not able to process the request in {self.timeout} seconds"
                await JSONResponse({"error": message}, status_code=504)(scope, receive, send)
        else:
            await answer
        finally:
            timer.cancel()


def install() -> None:
    """Make BentoML build our `TimeoutMiddleware` (once per process, before BentoML builds the
    worker's app: service.py calls it at import)."""
    traffic.TimeoutMiddleware = TimeoutMiddleware  # type: ignore[misc]
