"""Bearer tokens and the body limit, without a server: `TokenCheck` on its own, and the `Guard`
middleware driven as a plain ASGI app in front of a fake inner app, with fake receive/send."""

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import REGISTRY

from serving.auth import TokenCheck
from serving.middleware import Guard, active_connections

TOKENS = ["t-one", "t-two"]
LIMIT = 100


# --- TokenCheck ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", [None, b"", b"Bearer", b"Bearer   ", b"Basic dC1vbmU6", b"t-one"]
)
def test_no_bearer_token_is_401(header):
    assert TokenCheck(TOKENS).status(header) == 401


@pytest.mark.parametrize(
    "header", [b"Bearer wrong", b"Bearer t-on", b"Bearer t-one2", b"Bearer T-ONE", b"Bearer t-"]
)
def test_a_wrong_token_is_403(header):
    assert TokenCheck(TOKENS).status(header) == 403


@pytest.mark.parametrize(
    "header",
    [b"Bearer t-one", b"Bearer t-two", b"bearer t-one", b"BEARER t-two", b" Bearer  t-one "],
)
def test_each_configured_token_passes_whatever_the_schemes_case(header):
    assert TokenCheck(TOKENS).status(header) is None


@pytest.mark.parametrize("header", [None, b"", b"Bearer wrong"])
def test_without_configured_tokens_every_request_passes(header):
    assert TokenCheck([]).status(header) is None


# --- Guard as an ASGI app -----------------------------------------------------------------------


@dataclass
class Inner:
    """The app behind the guard: reads the whole body, answers 200 with its length."""

    calls: int = 0
    body: bytes = b""
    in_flight: int | None = None  # active_connections() while it answers

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        self.calls += 1
        self.in_flight = active_connections()
        while True:
            message = await receive()
            self.body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(self.body)).encode()})


@dataclass
class Exchange:
    """One request through the guard: what the client sent and what came back."""

    messages: list[dict]
    received: int = 0  # how many messages were taken from the client
    sent: list[dict] = field(default_factory=list)

    async def receive(self) -> dict:
        self.received += 1
        return self.messages[self.received - 1]

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return self.sent[0]["status"]

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


def chunks(*parts: bytes) -> list[dict]:
    """The ASGI messages of a body sent in `parts`."""
    return [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]


def call(
    path: str = "/predict",
    headers: dict[str, str] | None = None,
    messages: list[dict] | None = None,
    tokens: list[str] = TOKENS,
) -> tuple[Exchange, Inner]:
    inner = Inner()
    guard = Guard(inner, TokenCheck(tokens), LIMIT)
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": "POST", "path": path, "headers": raw}
    exchange = Exchange(messages if messages is not None else chunks(b"{}"))
    asyncio.run(guard(scope, exchange.receive, exchange.send))
    return exchange, inner


def refused(status: int, endpoint: str = "predict") -> float:
    labels = {"endpoint": endpoint, "status": str(status)}
    return REGISTRY.get_sample_value("churn_client_errors_total", labels) or 0.0


AUTH = {"Authorization": "Bearer t-one"}


def test_a_request_without_a_token_is_refused_before_the_app():
    before = refused(401)
    exchange, inner = call(headers={"content-length": "2"})
    assert (exchange.status, json.loads(exchange.body)) == (401, {"error": "missing bearer token"})
    assert exchange.headers[b"www-authenticate"] == b"Bearer"
    assert exchange.headers[b"content-length"] == str(len(exchange.body)).encode()
    assert (inner.calls, exchange.received) == (0, 0)
    assert refused(401) == before + 1


def test_a_wrong_token_is_refused_before_the_app():
    before = refused(403, "batch")
    exchange, inner = call("/predict/batch", {"Authorization": "Bearer nope"})
    assert (exchange.status, json.loads(exchange.body)) == (403, {"error": "invalid token"})
    assert b"www-authenticate" not in exchange.headers
    assert inner.calls == 0
    assert refused(403, "batch") == before + 1


def test_a_right_token_reaches_the_app_with_its_body():
    exchange, inner = call(headers={**AUTH, "content-length": "2"})
    assert (exchange.status, exchange.body) == (200, b"2")
    assert (inner.calls, inner.body) == (1, b"{}")
    assert inner.in_flight == 1  # this request, counted while it is answered
    assert active_connections() == 0


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/metrics", "/docs.json", "/static_content/x.js"]
)
def test_probes_metrics_and_docs_need_no_token(path):
    exchange, inner = call(path)
    assert (exchange.status, inner.calls) == (200, 1)


def test_without_configured_tokens_the_guard_only_limits_size():
    exchange, inner = call(tokens=[])
    assert (exchange.status, inner.calls) == (200, 1)


def test_the_token_is_checked_before_the_size():
    exchange, _ = call(headers={"content-length": str(LIMIT + 1)})
    assert exchange.status == 401


# --- the body limit -----------------------------------------------------------------------------


def json_text(size: int) -> bytes:
    """A JSON body of exactly `size` bytes (a string)."""
    return b'"' + b"x" * (size - 2) + b'"'


def test_a_content_length_at_the_limit_passes():
    body = json_text(LIMIT)
    exchange, inner = call(headers={**AUTH, "content-length": str(LIMIT)}, messages=chunks(body))
    assert exchange.status == 200
    assert inner.body == body


def test_a_content_length_over_the_limit_is_413_without_reading_the_body():
    before = refused(413)
    exchange, inner = call(
        headers={**AUTH, "content-length": str(LIMIT + 1)}, messages=chunks(json_text(LIMIT + 1))
    )
    assert exchange.status == 413
    assert json.loads(exchange.body) == {"error": f"request body larger than {LIMIT} bytes"}
    assert (inner.calls, exchange.received) == (0, 0)
    assert refused(413) == before + 1


@pytest.mark.parametrize("value", ["", "abc", "-1", "1e3", "12 ", "0x10", "+5"])
def test_an_invalid_content_length_is_400(value):
    before = refused(400)
    exchange, inner = call(headers={**AUTH, "content-length": value})
    assert exchange.status == 400
    assert json.loads(exchange.body) == {"error": "invalid Content-Length header"}
    assert inner.calls == 0
    assert refused(400) == before + 1


CHUNKED = {**AUTH, "transfer-encoding": "chunked"}


def test_a_chunked_body_within_the_limit_reaches_the_app_whole():
    whole = json_text(LIMIT)
    parts = (whole[:40], whole[40:80], whole[80:])  # exactly LIMIT bytes
    exchange, inner = call(headers=CHUNKED, messages=chunks(*parts))
    assert exchange.status == 200
    assert inner.body == whole
    assert exchange.received == 3  # read once by the guard, replayed to the app


def test_a_chunked_body_growing_past_the_limit_is_413_as_soon_as_it_does():
    parts = (b"a" * 40, b"b" * 40, b"c" * 21, b"d" * 500)
    exchange, inner = call(headers=CHUNKED, messages=chunks(*parts))
    assert exchange.status == 413
    assert json.loads(exchange.body) == {"error": f"request body larger than {LIMIT} bytes"}
    assert inner.calls == 0
    assert exchange.received == 3  # the chunk that crossed the limit; the rest never read


def test_a_client_leaving_mid_body_gets_nothing_and_the_app_is_not_called():
    messages = [*chunks(b"a" * 10, b"b" * 10)[:1], {"type": "http.disconnect"}]
    exchange, inner = call(headers=CHUNKED, messages=messages)
    assert (inner.calls, exchange.sent) == (0, [])


# --- the body read as JSON ----------------------------------------------------------------------

NOT_JSON = {
    "error": "request body: is not valid JSON",
    "detail": [{"loc": [], "msg": "request: is not valid JSON", "type": "not_json"}],
}


@pytest.mark.parametrize("body", [b"{not json", b"\x00\xff", b"[1, 2", b'{"a": 1'])
def test_a_body_that_is_not_json_is_the_contracts_400_before_the_app(body):
    before = refused(400, "batch")
    exchange, inner = call("/predict/batch", AUTH, chunks(body))
    assert (exchange.status, json.loads(exchange.body)) == (400, NOT_JSON)
    assert inner.calls == 0
    assert refused(400, "batch") == before + 1


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data", None])
def test_the_app_is_told_the_body_is_json_whatever_its_declared_type(content_type):
    headers = {**AUTH, **({"content-type": content_type} if content_type else {})}
    seen: list[dict] = []

    async def inner(scope: dict, receive: Any, send: Any) -> None:
        seen.append(dict(scope["headers"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": raw}
    exchange = Exchange(chunks(b'{"features": {}}'))
    asyncio.run(Guard(inner, TokenCheck(TOKENS), LIMIT)(scope, exchange.receive, exchange.send))
    assert seen[0][b"content-type"] == b"application/json"
    assert seen[0][b"authorization"] == b"Bearer t-one"


def test_an_empty_body_reaches_the_app_to_be_refused_there():
    exchange, inner = call(headers=AUTH, messages=chunks(b""))
    assert (exchange.status, inner.calls, inner.body) == (200, 1, b"")


def test_an_answer_of_the_app_is_counted_by_its_status():
    async def refusing(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    before = refused(400, "dataframe")
    raw = [(b"authorization", b"Bearer t-one")]
    scope = {"type": "http", "method": "POST", "path": "/predict/dataframe", "headers": raw}
    exchange = Exchange(chunks(b"[]"))
    asyncio.run(Guard(refusing, TokenCheck(TOKENS), LIMIT)(scope, exchange.receive, exchange.send))
    assert exchange.status == 400
    assert refused(400, "dataframe") == before + 1
