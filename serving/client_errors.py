"""Client errors: one quiet log line each, and answers in the contract's words.

BentoML 1.4 reads every API's body itself, before our code runs. When that fails (invalid JSON,
JSON nested too deep, a field that breaks the schema), `api_endpoint_wrapper` in
`_bentoml_impl/server/app.py`
- logs it through `bentoml._internal.server.http_app.log_exception` as `[ERROR] Exception on
  PATH [POST]` with the whole traceback (whose last lines quote the start of the body): one
  misbehaving client floods the log and pages whoever watches ERROR lines;
- answers a pydantic `ValidationError` with a 400 in pydantic's words (`"3 validation error for
  PredictRequestIODescriptor"`, `Input should be greater than or equal to 0`), without the
  inputs, so that a null and a wrong type read alike; and anything else that goes wrong while
  reading the body (JSON that `json.loads` refuses on the DataFrame endpoint, a multipart body
  without a boundary) with a 500.

`ClientErrorLog`, a `logging.Filter` on that logger, sees the exception itself. For a client
error (raised while BentoML read the request, or a `BentoMLException` with a 4xx status) it
turns the record into one INFO line without a traceback: path, status and the failing fields
with their codes, never the body. It leaves its reading of the exception (`Rejection`) in a
context variable for `serving.middleware`, which rewrites that request's answer on its way out
(`rewrite`) and counts it. Any other exception (a bug, answered 5xx) keeps its ERROR line and
traceback.

Why a filter rather than a patch of BentoML: a filter is the logging module's own extension
point; nothing of BentoML's is replaced, and if a BentoML upgrade moves the log call or renames
`from_http_request`, the filter stops matching and the service is as loud as before (the tests
notice), never broken. Replacing `log_exception` would mean assigning into a private module
that imported it by name, or wrapping `api_endpoint_wrapper`.

Why a context variable: BentoML offers no hook between the exception and its response, but it
calls the logger synchronously inside its `except` block, in the request's own task (uvicorn
runs each request in a task of its own, and no middleware between ours and the route starts
another), so the middleware's `send` wrapper of that same request reads what the filter left.
A successful request never touches it: the middleware looks only when the status is an error.
If the logger is switched off (a level above ERROR), the filter does not run: the log stays
quiet, and the 400s keep BentoML's wording (and an unreadable DataFrame body its 500).
"""

import json
import logging
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType

from bentoml._internal.server import http_app
from bentoml.exceptions import BentoMLException
from pydantic import ValidationError

from models.errors import FieldError
from models.validation import describe, field_errors_from_pydantic

# What BentoML logs every failed API call through (`log_exception`).
BENTOML_LOGGER = http_app.logger
# BentoML's function that reads a request into an API's input (`IOMixin.from_http_request`):
# whatever is raised below it was caused by the request.
READING = "from_http_request"
REQUEST = "request"  # the field name of an error about the body as a whole
MAX_LOG_REASON = 300


@dataclass(frozen=True, slots=True)
class Problem:
    """One failing field: where pydantic found it, and why in the contract's words (`error`)
    and in pydantic's (`raw`, for envelopes the contract does not word: a batch's `requests`)."""

    loc: tuple[str | int, ...]
    error: FieldError
    raw: FieldError


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why BentoML refused a request, as read from its exception."""

    status: int
    problems: tuple[Problem, ...] = ()
    unreadable: bool = False  # no JSON could be read from the body
    note: str = ""  # for the log: the parser's words, or the status phrase

    def log_reason(self) -> str:
        """`loc: code` pairs (never a message that might quote the input), then the note."""
        pairs = "; ".join(
            f"{'.'.join(map(str, p.loc)) or REQUEST}: {p.error.code}" for p in self.problems
        )
        note = f"({self.note})" if pairs and self.note else self.note
        return " ".join(filter(None, [pairs, note]))[:MAX_LOG_REASON]


_rejection: ContextVar[Rejection | None] = ContextVar("churn_client_error", default=None)


def take() -> Rejection | None:
    """What the filter read from this request's exception, if anything (then forgets it)."""
    rejection = _rejection.get()
    if rejection is not None:
        _rejection.set(None)
    return rejection


def raised_while_reading(exc: BaseException) -> bool:
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == READING:
            return True
        tb = tb.tb_next
    return False


def _raw_field(loc: tuple[str | int, ...]) -> str:
    names = [p for p in loc if isinstance(p, str)]
    # A root model (the DataFrame endpoint's input) puts its whole value under "root".
    return REQUEST if not names or names == ["root"] else names[-1]


def _unreadable(note: str) -> Rejection:
    error = describe(REQUEST, "not_json")
    return Rejection(400, (Problem((), error, error),), unreadable=True, note=note)


def read(exc: BaseException) -> Rejection | None:
    """The client error `exc` is, or None for anything else (a bug)."""
    if isinstance(exc, BentoMLException):
        code = HTTPStatus(exc.error_code)
        return Rejection(code.value, note=code.phrase) if 400 <= code.value < 500 else None
    if not raised_while_reading(exc):
        # A ValidationError raised by our own code inside an API method is a bug: keep it loud.
        return None
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False)
        for err in errors:
            if err["type"] == "json_invalid":
                return _unreadable(err["msg"].removeprefix("Invalid JSON: "))
        contract = field_errors_from_pydantic(exc)  # one per error, in the same order
        problems = []
        for err, error in zip(errors, contract, strict=True):
            loc = tuple(err["loc"])
            problems.append(
                Problem(loc, error, FieldError(_raw_field(loc), err["type"], err["msg"]))
            )
        return Rejection(400, tuple(problems))
    if isinstance(exc, json.JSONDecodeError):
        return _unreadable(str(exc))  # the parser's message and position, not the text
    if isinstance(exc, RecursionError):
        return _unreadable("nested too deeply")
    return _unreadable(type(exc).__name__)


class ClientErrorLog(logging.Filter):
    """Turns BentoML's ERROR record of a client error into one INFO line without traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        rejection = read(exc) if exc is not None else None
        if rejection is None:
            return True
        _rejection.set(rejection)
        # BentoML's arguments: the path and the method.
        args = record.args if isinstance(record.args, tuple) and len(record.args) == 2 else ()
        args = args or ("?", "?")
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.msg = "client error on %s [%s]: %d %s"
        record.args = (*args, rejection.status, rejection.log_reason())
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def install() -> None:
    """Add the filter to BentoML's logger, once per process."""
    if not any(isinstance(f, ClientErrorLog) for f in BENTOML_LOGGER.filters):
        BENTOML_LOGGER.addFilter(ClientErrorLog())


def summary(errors: Iterable[FieldError]) -> str:
    """`2 invalid fields: age: must be between 0 and 120; income: is missing`, or `request
    body: is not valid JSON` for the body as a whole."""
    errors = list(errors)
    parts = [f"request body: {e.message}" for e in errors if e.field == REQUEST]
    fields = [e.reason for e in errors if e.field != REQUEST]
    if fields:
        plural = "s" if len(fields) > 1 else ""
        parts.append(f"{len(fields)} invalid field{plural}: " + "; ".join(fields))
    return "; ".join(parts)


def contract_body(problems: Iterable[Problem]) -> dict[str, object]:
    problems = list(problems)
    return {
        "error": summary(p.error for p in problems),
        "detail": [
            {"loc": list(p.loc), "msg": p.error.reason, "type": p.error.code} for p in problems
        ],
    }


def rewrite(
    status: int, body: bytes, rejection: Rejection | None, contract: bool
) -> tuple[int, bytes]:
    """The status and body to send instead of BentoML's for a request it refused.

    An unreadable body is a 400 `not_json` on every endpoint (BentoML answers some with a 500).
    Failing fields are worded by the contract where the body is a record (`contract`: /predict,
    the same words as the batch items, the DataFrame rows, the batch script and the bridge);
    elsewhere (a batch's `requests`, a DataFrame's shape) pydantic's detail stays, and only the
    summary changes. Anything else passes as it is.
    """
    if rejection is None or not rejection.problems or status not in (400, 500):
        return status, body
    if rejection.unreadable or (status == 400 and contract):
        return 400, json.dumps(contract_body(rejection.problems)).encode()
    if status != 400:
        return status, body
    try:
        data = json.loads(body)
        data["error"] = summary(p.raw for p in rejection.problems)
    except (ValueError, TypeError):
        return status, body
    return 400, json.dumps(data).encode()
