"""Turning `ChurnError`s raised inside an API method into JSON responses with their own status."""

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

from starlette.responses import JSONResponse

from models.errors import ChurnError, InvalidInputError
from serving.client_errors import summary

P = ParamSpec("P")
R = TypeVar("R")


def error_response(exc: ChurnError) -> JSONResponse:
    body = exc.to_body()
    if isinstance(exc, InvalidInputError):
        # The summary every 400 of the service gives (`serving.client_errors`).
        body["error"] = summary(exc.errors)
    return JSONResponse(body, status_code=exc.status_code)


@overload
def http_errors(
    func: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R | JSONResponse]]: ...
@overload
def http_errors(func: Callable[P, R]) -> Callable[P, R | JSONResponse]: ...
def http_errors(func: Callable[P, Any]) -> Callable[P, Any]:
    """Let an API method raise `ChurnError`; the caller gets its status and JSON body.

    BentoML answers any other exception with a 500 and nothing else, which is what we want for
    bugs, so only our own errors are translated.

    The wrapper carries the function's signature as `__signature__`: BentoML calls
    `inspect.signature` on the API function for every request, and without it that call
    unwraps and rebuilds the signature each time (a few % of a small request's CPU).
    """
    signature = inspect.signature(func)
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                return await func(*args, **kwargs)
            except ChurnError as exc:
                return error_response(exc)

        async_wrapper.__signature__ = signature  # type: ignore[attr-defined]  # not in typeshed
        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            return func(*args, **kwargs)
        except ChurnError as exc:
            return error_response(exc)

    wrapper.__signature__ = signature  # type: ignore[attr-defined]  # not in typeshed
    return wrapper
