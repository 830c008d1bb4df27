"""The edge in front of the service's routes (an ASGI middleware, BentoML's documented
`add_asgi_middleware`): CORS, bearer tokens, the body limit, and the prediction endpoints' bodies
read as JSON before BentoML does.

The API methods take their bodies loosely (any JSON value) and validate them themselves, so the
one thing BentoML could still refuse is a body that is not JSON at all: the edge answers that
with the contract's 400, and tells BentoML the body is JSON whatever its declared content type
(a `curl -d` without a header then works). Every 4xx of the prediction endpoints is counted
here, in `churn_client_errors_total`, whoever answered it.

Plain ASGI rather than Starlette's BaseHTTPMiddleware, which would buffer each response and
cost a task per request. Its settings come from the running service instance (built once, when
service.py is imported).
"""

import json
import logging
from collections.abc import Iterable, Mapping

import bentoml
from pydantic_core import from_json
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.errors import REQUEST, InvalidInputError
from models.validation import describe
from serving import loop_lag, metrics, seed
from serving.auth import TokenCheck
from serving.settings import ServiceSettings

logger = logging.getLogger("serving")

# Probes, metrics and the API docs stay open; every other path needs a token when tokens are set.
# The Open Inference Protocol's probes (serving/oip.py) too.
OPEN_PATHS = frozenset(["/healthz", "/livez", "/readyz", "/metrics", "/health", "/", "/docs.json"])
OPEN_PATHS |= {"/v2/health/live", "/v2/health/ready"}
OPEN_PREFIXES = ("/static_content/",)
ENDPOINTS = {"/predict": "predict", "/predict/batch": "batch", "/predict/dataframe": "dataframe"}
JSON_TYPE = (b"content-type", b"application/json")
# The replaced services' routes (serving/seed.py): a retired route's 404 names its successor to
# anyone; an alias is read and counted as the route it aliases.
OPEN_PATHS |= frozenset(seed.RETIRED)
ENDPOINTS |= {alias: ENDPOINTS[ours] for alias, ours in seed.ALIASES.items()}

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
            loop_lag.start()
        await self._handler(scope, receive, send)


def build(app: ASGIApp, settings: ServiceSettings) -> ASGIApp:
    guard = Guard(app, TokenCheck(settings.tokens), settings.max_body_bytes)
    if not settings.cors_origins:
        return guard
    return CORSMiddleware(
        guard,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["authorization", "content-type"],
        max_age=600,
    )


def endpoint_of(path: str) -> str:
    """The metrics label of a path; the protocol's inference (serving/oip.py), any model or
    version, is `infer` and has its body checked like the prediction endpoints'."""
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return "infer"
    return ENDPOINTS.get(path, "other")


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
        endpoint = endpoint_of(path)
        headers = dict(scope["headers"])
        if not (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)):
            status = self.tokens.status(headers.get(b"authorization"))
            if status == 401:
                challenge = [(b"www-authenticate", b"Bearer")]
                await refuse(send, endpoint, 401, {"error": "missing bearer token"}, challenge)
                return
            if status == 403:
                await refuse(send, endpoint, 403, {"error": "invalid token"})
                return
        length = headers.get(b"content-length")
        if length is not None and not length.isdigit():
            await refuse(send, endpoint, 400, {"error": "invalid Content-Length header"})
            return
        if length is not None and int(length) > self.max_body_bytes:
            await self.too_large(send, endpoint)
            return
        if endpoint == "other" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            body = await read_limited(receive, self.max_body_bytes)
        except ClientGoneError:
            return  # nobody to answer
        if body is None:
            await self.too_large(send, endpoint)
            return
        # A body of the protocol's binary extension is JSON only up to that header's length.
        if body.strip() and b"inference-header-content-length" not in headers:
            try:
                from_json(body)
            except ValueError as exc:
                await not_json(send, endpoint, path, str(exc))
                return
        scope = {**scope, "headers": [*json_headers(scope["headers"])]}
        await self.app(scope, replay(body, receive), counted(send, endpoint))

    async def too_large(self, send: Send, endpoint: str) -> None:
        error = {"error": f"request body larger than {self.max_body_bytes} bytes"}
        await refuse(send, endpoint, 413, error)


def json_headers(headers: Iterable[tuple[bytes, bytes]]) -> Iterable[tuple[bytes, bytes]]:
    """The request's headers with its content type said to be JSON."""
    yield from ((k, v) for k, v in headers if k.lower() != b"content-type")
    yield JSON_TYPE


async def not_json(send: Send, endpoint: str, path: str, note: str) -> None:
    error = InvalidInputError([describe(REQUEST, "not_json")])
    logger.info("client error on %s [POST]: 400 %s", path, error.log_reason(note))
    metrics.record_validation_failures(endpoint, [REQUEST])
    await refuse(send, endpoint, 400, error.to_body())


def counted(send: Send, endpoint: str) -> Send:
    """`send`, counting the answer when it is a 4xx (whoever answered: our API methods,
    BentoML's concurrency limit)."""

    async def counting(message: Message) -> None:
        if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
            metrics.record_client_error(endpoint, message["status"])
        await send(message)

    return counting


async def refuse(
    send: Send,
    endpoint: str,
    status: int,
    body: Mapping[str, object],
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Answer a request the edge turns away, and count it."""
    metrics.record_client_error(endpoint, status)
    content = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON_TYPE, (b"content-length", str(len(content)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": content})


class ClientGoneError(Exception):
    """The client disconnected before its body was read."""


async def read_limited(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it grows past `limit` bytes (a chunked body has no
    length to check beforehand)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGoneError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands over `body` once, then waits on the client (a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
