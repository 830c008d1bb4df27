"""The request timeout: its timer is cancelled once the answer starts (BentoML's is not), a slow
request still gets BentoML's 504, and BentoML builds our class once it is installed."""

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

from bentoml._internal.server.http import traffic as bento_traffic
from starlette.types import Message, Receive, Scope, Send

from serving import traffic
from tests.support import ROOT

SCOPE = {"type": "http", "method": "POST", "path": "/predict", "headers": []}


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
    timers, sent = asyncio.run(run(traffic.TimeoutMiddleware, answer))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert len(timers) == 1
    assert timers[0].cancelled()


def test_bentomls_own_middleware_still_leaves_its_timer_running():
    # The defect serving/traffic.py works around. When this fails, BentoML cancels its timer
    # itself: drop serving/traffic.py and this test.
    timers, _ = asyncio.run(run(bento_traffic.TimeoutMiddleware, answer))
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

        await traffic.TimeoutMiddleware(stuck, 0.05)(dict(SCOPE), receive, send)
        return sent

    sent = asyncio.run(main())
    assert sent[0]["status"] == 504
    body = json.loads(sent[1]["body"])
    assert body == {"error": "Not able to process the request in 0.05 seconds"}


def test_bentoml_builds_the_installed_class():
    from bentoml._internal.server.base_app import BaseAppFactory

    traffic.install()

    class App(BaseAppFactory):  # what BentoML's service app extends
        name = "t"

    built = [m.cls for m in App(timeout=30).middlewares]
    assert built == [traffic.TimeoutMiddleware]


def test_importing_the_service_installs_it_before_bentoml_builds_the_app(model_tag):
    # In a fresh interpreter, as a BentoML worker imports service.py.
    code = (
        "import service\n"
        "from bentoml._internal.server.http import traffic\n"
        "from serving.traffic import TimeoutMiddleware\n"
        "print(traffic.TimeoutMiddleware is TimeoutMiddleware)\n"
    )
    env = {**os.environ, "CHURN_MODEL_TAG": model_tag}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "True"
