"""The ASGI middleware in front of the service's routes: CORS, bearer auth, a body limit,
counting the 400s BentoML answers before our code runs (its own pydantic validation), and the
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

from serving import metrics
from serving.auth import TokenCheck
from serving.settings import ServiceSettings

# Probes, metrics and the API docs stay open; every other path needs a token when tokens are set.
OPEN_PATHS = frozenset(["/healthz", "/livez", "/readyz", "/metrics", "/health", "/", "/docs.json"])
OPEN_PREFIXES = ("/static_content/",)
VALIDATED = {"/predict": "predict", "/predict/batch": "batch", "/predict/dataframe": "dataframe"}

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._handler is None:
            # Requests arrive only once the service instance exists (after BentoML's start-up).
            self._handler = build(self.app, bentoml.get_current_service().settings)
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
                await reply(send, 401, "missing bearer token", [(b"www-authenticate", b"Bearer")])
                return
            if status == 403:
                await reply(send, 403, "invalid token")
                return
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await reply(send, 400, "invalid Content-Length header")
                return
            if int(length) > self.max_body_bytes:
                await self.too_large(send)
                return
        elif b"chunked" in headers.get(b"transfer-encoding", b""):
            messages = await read_limited(receive, self.max_body_bytes)
            if messages is None:
                await self.too_large(send)
                return
            receive = replay(messages, receive)
        if endpoint := VALIDATED.get(path):
            send = ValidationCounter(send, endpoint)
        await self.app(scope, receive, send)

    async def too_large(self, send: Send) -> None:
        await reply(send, 413, f"request body larger than {self.max_body_bytes} bytes")


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


class ValidationCounter:
    """Passes a response through; for a 400, counts the fields its JSON `detail` names."""

    def __init__(self, send: Send, endpoint: str) -> None:
        self.send = send
        self.endpoint = endpoint
        self.status = 0
        self.body = bytearray()

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body" and self.status == 400:
            self.body += message.get("body", b"")
            if not message.get("more_body", False):
                metrics.record_validation_failures(self.endpoint, failing_fields(bytes(self.body)))
        await self.send(message)


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
