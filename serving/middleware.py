"""The ASGI middleware in front of the service's routes: CORS, bearer auth, a body limit,
the error answers of the prediction endpoints (counted, and the ones BentoML gives for a body it
could not read or validate rewritten in the contract's words: `serving.client_errors`), and the
HTTP requests in flight on this worker (`active_connections()`, reported by /health).

Plain ASGI rather than Starlette's BaseHTTPMiddleware, which would buffer each response and
cost a task per request. Its settings come from the running service instance, so the service
keeps one settings object, built when it starts.
"""

import json
from collections.abc import Iterable
from typing import Any

import bentoml
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import client_errors, loop_lag, metrics
from serving.auth import TokenCheck
from serving.settings import ServiceSettings

# Probes, metrics and the API docs stay open; every other path needs a token when tokens are set.
OPEN_PATHS = frozenset(["/healthz", "/livez", "/readyz", "/metrics", "/health", "/", "/docs.json"])
OPEN_PREFIXES = ("/static_content/",)
VALIDATED = {"/predict": "predict", "/predict/batch": "batch", "/predict/dataframe": "dataframe"}
# Endpoints whose body is one record of the contract: their failing fields get its words.
RECORD_ENDPOINTS = frozenset(["predict"])

# HTTP requests inside `Guard` on this worker (one event loop, so no lock). A CORS preflight,
# answered before `Guard`, is not counted.
_in_flight = 0


def active_connections() -> int:
    """HTTP requests being answered by this worker, the caller's own included."""
    return _in_flight


class ServingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._handler: ASGIApp | None = None
        # BentoML builds its middleware once per worker, when the worker starts.
        client_errors.install()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._handler is None:
            # Requests arrive only once the service instance exists (after BentoML's start-up).
            self._handler = build(self.app, bentoml.get_current_service().settings)
            loop_lag.start()
        await self._handler(scope, receive, send)


def build(app: ASGIApp, settings: ServiceSettings) -> ASGIApp:
    guard = Guard(app, TokenCheck(settings.tokens), settings.max_body_bytes)
    if not settings.origins:
        return guard
    return CORSMiddleware(
        guard,
        allow_origins=settings.origins,
        allow_methods=["GET", "POST"],
        allow_headers=["authorization", "content-type"],
        max_age=600,
    )


class Guard:
    def __init__(self, app: ASGIApp, tokens: TokenCheck, max_body_bytes: int) -> None:
        self.app = app
        self.tokens = tokens
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        global _in_flight
        _in_flight += 1
        try:
            await self.guard(scope, receive, send)
        finally:
            _in_flight -= 1

    async def guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        headers = dict(scope["headers"])
        if not (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)):
            status = self.tokens.status(headers.get(b"authorization"))
            if status == 401:
                await refuse(
                    send, path, 401, "missing bearer token", [(b"www-authenticate", b"Bearer")]
                )
                return
            if status == 403:
                await refuse(send, path, 403, "invalid token")
                return
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await refuse(send, path, 400, "invalid Content-Length header")
                return
            if int(length) > self.max_body_bytes:
                await self.too_large(send, path)
                return
        elif b"chunked" in headers.get(b"transfer-encoding", b""):
            messages = await read_limited(receive, self.max_body_bytes)
            if messages is None:
                await self.too_large(send, path)
                return
            receive = replay(messages, receive)
        if endpoint := VALIDATED.get(path):
            send = ErrorAnswers(send, endpoint)
        await self.app(scope, receive, send)

    async def too_large(self, send: Send, path: str) -> None:
        await refuse(send, path, 413, f"request body larger than {self.max_body_bytes} bytes")


async def refuse(
    send: Send, path: str, status: int, error: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Answer a request `Guard` turns away, and count it."""
    metrics.record_client_error(VALIDATED.get(path, "other"), status)
    await reply(send, status, error, headers)


async def reply(
    send: Send, status: int, error: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_limited(receive: Receive, limit: int) -> list[Message] | None:
    """A chunked body's messages, or None as soon as it grows past `limit` bytes."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages
        size += len(message.get("body", b""))
        if size > limit:
            return None
        if not message.get("more_body", False):
            return messages


def replay(messages: list[Message], receive: Receive) -> Receive:
    pending = iter(messages)

    async def replayed() -> Message:
        return next(pending, None) or await receive()

    return replayed


class ErrorAnswers:
    """Passes a response through; an error answer is counted, and BentoML's own ones rewritten.

    A 2xx or 3xx costs a status check. A 4xx is counted in `churn_client_errors` (by status), a
    400 also in `churn_validation_failures` (by each field its `detail` names). A 400 that BentoML
    gave for a body failing its validation, or a 500 for a body it could not read, is held back
    and rewritten by `client_errors.rewrite` from what `client_errors.ClientErrorLog` read from
    the exception (a 500 of that kind becomes a 400).
    """

    def __init__(self, send: Send, endpoint: str) -> None:
        self.send = send
        self.endpoint = endpoint
        self.start: Message | None = None  # held back while the body is read
        self.rejection: client_errors.Rejection | None = None
        self.body = bytearray()

    async def __call__(self, message: Message) -> None:
        if self.start is None:
            if message["type"] != "http.response.start" or message["status"] < 400:
                await self.send(message)
                return
            status = message["status"]
            self.rejection = client_errors.take()
            if status == 400 or (status == 500 and self.rejection is not None):
                self.start = message
                return
            if status < 500:
                metrics.record_client_error(self.endpoint, status)
            await self.send(message)
            return
        if message["type"] != "http.response.body":  # not a body to rewrite: pass it on
            start, self.start = self.start, None
            await self.send(start)
            await self.send(message)
            return
        self.body += message.get("body", b"")
        if message.get("more_body", False):
            return
        start, self.start = self.start, None
        status, body = client_errors.rewrite(
            start["status"], bytes(self.body), self.rejection, self.endpoint in RECORD_ENDPOINTS
        )
        if status < 500:
            metrics.record_client_error(self.endpoint, status)
        if status == 400:
            metrics.record_validation_failures(self.endpoint, failing_fields(body))
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**start, "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


def failing_fields(body: bytes) -> list[str]:
    """Field names in a 400 body (`detail[].loc[-1]`); "request" when it names none."""
    try:
        detail: Any = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        detail = None
    if not isinstance(detail, list):
        return ["request"]
    fields = [
        str(err["loc"][-1]) if isinstance(err, dict) and err.get("loc") else "request"
        for err in detail
    ]
    return fields or ["request"]
