"""serving/bentoml_fixes.py: each workaround does its job, and each BentoML defect it works around
is still there. When a `..._still_...` test fails, BentoML has fixed that defect: drop the
workaround and its tests."""

import asyncio
import json
import logging
import os
import subprocess
import sys
from typing import Any

import aiohttp
import bentoml
import pytest
from _bentoml_impl.client.proxy2 import SessionManager
from aiohttp import web
from bentoml._internal.server.http import traffic as bento_traffic
from bentoml.exceptions import InvalidArgument
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from models.errors import InvalidInputError
from models.validation import describe
from serving import bentoml_fixes
from tests.support import ROOT

SCOPE = {"type": "http", "method": "POST", "path": "/predict", "headers": []}


# --- 1. errors ----------------------------------------------------------------------------------


@bentoml.service(name="defects")
class Defects:
    @bentoml.api
    def bentomls_way(self) -> str:
        raise InvalidArgument("bad input")

    @bentoml.api
    @bentoml_fixes.renders_errors("predict", "/ours")
    def ours(self) -> str:
        raise InvalidInputError([describe("age", "out_of_range")], [("features", "age")])

    @bentoml.api
    @bentoml_fixes.renders_errors("predict", "/a_bug")
    def a_bug(self) -> str:
        raise RuntimeError("a bug")


@pytest.fixture(scope="module")
def client():
    with TestClient(Defects.to_asgi(), raise_server_exceptions=False) as c:
        yield c


def test_bentoml_still_answers_a_4xx_exception_with_a_list_and_logs_its_traceback(client, caplog):
    with caplog.at_level(logging.ERROR):
        resp = client.post("/bentomls_way", json={})
    assert (resp.status_code, resp.json()) == (400, [{"error": "bad input"}])
    assert any(r.exc_info for r in caplog.records if r.levelno == logging.ERROR)


def test_our_errors_get_their_body_and_one_info_line(client, caplog):
    with caplog.at_level(logging.INFO):
        resp = client.post("/ours", json={})
    assert resp.status_code == 400
    assert resp.json() == {
        "error": "1 invalid field: age: must be between 0 and 120",
        "detail": [
            {"loc": ["features", "age"], "msg": "age: must be between 0 and 120",
             "type": "out_of_range"}
        ],
    }  # fmt: skip
    lines = [r for r in caplog.records if r.name == "serving"]
    assert [r.getMessage() for r in lines] == [
        "client error on /ours [POST]: 400 features.age: out_of_range"
    ]
    assert not any(r.exc_info for r in caplog.records)


def test_a_bug_stays_bentomls_500_with_its_traceback(client, caplog):
    with caplog.at_level(logging.ERROR):
        resp = client.post("/a_bug", json={})
    assert resp.status_code == 500
    assert "a bug" not in resp.text
    assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)


def test_the_wrapper_keeps_the_signature_bentoml_reads():
    import inspect

    def api(self: Any, body: Any, /) -> str:
        return "ok"

    wrapped = bentoml_fixes.renders_errors("predict", "/p")(api)
    assert inspect.signature(wrapped) == inspect.signature(api)
    assert "__signature__" in vars(wrapped)  # not rebuilt by unwrapping on every call


# --- 2. the request timeout ---------------------------------------------------------------------


async def answer(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def run(middleware: Any, app: Any) -> tuple[list[asyncio.TimerHandle], list[Message]]:
    """The timers the middleware scheduled for one request, and what it sent."""
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []
    schedule = loop.call_later

    def spy(delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        timer = schedule(delay, callback, *args)
        timers.append(timer)
        return timer

    loop.call_later = spy  # type: ignore[method-assign]
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    try:
        await middleware(app, 30.0)(dict(SCOPE), receive, send)
    finally:
        del loop.call_later
    return timers, sent


def test_the_timer_is_cancelled_once_the_answer_is_sent():
    timers, sent = asyncio.run(run(bentoml_fixes.TimeoutMiddleware, answer))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert len(timers) == 1
    assert timers[0].cancelled()


def bentomls_timeout_middleware() -> type:
    """BentoML's own class: once service.py is imported in this process (any test that loads the
    service), `bentoml_fixes.install()` has put ours in its place in BentoML's module."""
    original = bentoml_fixes.TimeoutMiddleware.__bases__[0]
    assert original.__module__ == bento_traffic.__name__
    return original


def test_bentomls_own_timeout_middleware_still_leaves_its_timer_running():
    timers, _ = asyncio.run(run(bentomls_timeout_middleware(), answer))
    assert len(timers) == 1
    assert not timers[0].cancelled()


def test_a_request_slower_than_the_timeout_gets_bentomls_504():
    never = asyncio.Event()

    async def stuck(scope: Scope, receive: Receive, send: Send) -> None:
        await never.wait()

    async def main() -> list[Message]:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        await bentoml_fixes.TimeoutMiddleware(stuck, 0.05)(dict(SCOPE), receive, send)
        return sent

    sent = asyncio.run(main())
    assert sent[0]["status"] == 504
    body = json.loads(sent[1]["body"])
    assert body == {"error": "Not able to process the request in 0.05 seconds"}


def test_bentoml_builds_the_installed_class():
    from bentoml._internal.server.base_app import BaseAppFactory

    bentoml_fixes.install()

    class App(BaseAppFactory):  # what BentoML's service app extends
        name = "t"

    built = [m.cls for m in App(timeout=30).middlewares]
    assert built == [bentoml_fixes.TimeoutMiddleware]


def test_importing_the_service_installs_it_before_bentoml_builds_the_app(model_tag):
    # In a fresh interpreter, as a BentoML worker imports service.py.
    code = (
        "import service\n"
        "from bentoml._internal.server.http import traffic\n"
        "from serving.bentoml_fixes import TimeoutMiddleware\n"
        "print(traffic.TimeoutMiddleware is TimeoutMiddleware)\n"
    )
    env = {**os.environ, "CHURN_MODEL_TAG": model_tag}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "True"


# --- 3. the connection pool to a dependency -----------------------------------------------------


def test_bentomls_client_still_closes_its_pool_under_calls_in_flight():
    async def main() -> list[Any]:
        async def slow(_: web.Request) -> web.Response:
            await asyncio.sleep(0.05)
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/", slow)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        sessions = SessionManager(
            f"http://127.0.0.1:{runner.addresses[0][1]}", 10, {}, max_requests=1
        )

        async def call() -> str:
            session = await sessions.get_session()  # as BentoML's client does for each call
            async with session.get("/") as resp:
                return await resp.text()

        try:
            return await asyncio.gather(*[call() for _ in range(6)], return_exceptions=True)
        finally:
            await sessions.close()
            await runner.cleanup()

    outcomes = asyncio.run(main())
    # Calls running when a later one renews the pool fail; with one pool for good, none would.
    assert any(isinstance(o, aiohttp.ClientConnectionError) for o in outcomes), outcomes
    assert bentoml_fixes.RUNNER_CONNECTION["max_requests"] > 10**9
