"""Turning `ChurnError`s raised inside an API method into JSON responses with their own status."""

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.responses import JSONResponse

from models.errors import ChurnError

F = TypeVar("F", bound=Callable[..., Any])


def error_response(exc: ChurnError) -> JSONResponse:
    return JSONResponse(exc.to_body(), status_code=exc.status_code)


def http_errors(func: F) -> F:
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
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await func(*args, **kwargs)
            except ChurnError as exc:
                return error_response(exc)

        async_wrapper.__signature__ = signature  # type: ignore[attr-defined]
        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ChurnError as exc:
            return error_response(exc)

    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
