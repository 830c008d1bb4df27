"""The bridge's Kubernetes probes (`streaming.health`): /livez and /readyz.

The rules with a fake clock first; then a bridge running in this process (a thread) on the real
broker, calling a real bento, probed over HTTP: ready once it holds partitions, not ready while
the service is down, and not live while its loop is stuck, the liveness clock stepped by the
test instead of waited for.
"""

import threading
from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

import httpx
import pytest

from models.samples import event
from streaming.bridge import MAX_SUBMITTED, Bridge
from streaming.clients import make_consumer, make_producer
from streaming.health import LIVE_PATH, READY_PATH, Health, start_health_server
from streaming.messages import Message
from streaming.metrics import BridgeMetrics
from streaming.scorer import HttpScorer, Outcome
from streaming.settings import StreamSettings
from tests.conftest import AS_OF
from tests.streaming.fakes import FakeClock
from tests.streaming.support import PARTITIONS, read_until, unique
from tests.support import wait_until

TIMEOUT_S = 180.0
MAX_BATCH = 5


def test_live_until_the_loop_has_not_polled_for_the_timeout():
    clock = FakeClock()
    health = Health(TIMEOUT_S, clock.monotonic)
    assert health.live()[0]  # starting up
    clock.advance(TIMEOUT_S + 1)
    assert health.live() == (False, "no poll for 181s (limit 180s)")
    health.polled(assigned=False)
    assert health.live()[0]
    clock.advance(TIMEOUT_S)
    assert health.live()[0]


def test_ready_needs_partitions_and_an_answering_service():
    answers = [True]
    health = Health(TIMEOUT_S, service_probe=lambda: answers[-1])
    assert health.ready() == (False, "no partition assigned")
    health.polled(assigned=True)
    assert health.ready()[0]  # no call yet: the service's own probe answered
    answers.append(False)
    assert health.ready() == (False, "the service did not answer")
    health.service_answered(True)  # the last call's outcome wins over the probe
    assert health.ready()[0]
    health.service_answered(False)
    assert not health.ready()[0]
    health.polled(assigned=False)
    assert health.ready() == (False, "no partition assigned")


class GatedScorer(HttpScorer):
    """The real HTTP scorer, whose calls can be held (a stuck call) until released."""

    def __init__(self, url: str) -> None:
        super().__init__(url, timeout=30)
        self.open = threading.Event()
        self.open.set()
        self.held = threading.Event()

    def score(self, messages: Sequence[Message], as_of: date) -> list[Outcome]:
        if not self.open.is_set():
            self.held.set()
            self.open.wait(120)
        return super().score(messages, as_of)


@pytest.fixture
def rig(kafka, private_bento) -> Iterator[dict[str, Any]]:
    service = private_bento()
    topic = kafka.topic("health")
    settings = StreamSettings(
        bootstrap_servers=kafka.servers, input_topic=topic, output_topic=f"{topic}-out",
        error_topic=f"{topic}-err", group=unique("g"), service_url=service.url, as_of=AS_OF,
        max_batch=MAX_BATCH, session_timeout_ms=6000, heartbeat_interval_ms=1000,
        retry_backoff_ms=100, retry_max_backoff_ms=500, metrics_port=0, health_port=0,
    )  # fmt: skip
    clock = FakeClock()
    health = Health(TIMEOUT_S, clock.monotonic)
    scorer = GatedScorer(service.url)
    bridge = Bridge(settings, make_consumer(settings), make_producer(settings), scorer,
                    BridgeMetrics(), health=health)  # fmt: skip
    server = start_health_server(health, 0, "127.0.0.1")
    loop = threading.Thread(target=bridge.run, name="bridge", daemon=True)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield {"bridge": bridge, "loop": loop, "url": url, "clock": clock, "topic": topic,
               "scorer": scorer, "service": service}  # fmt: skip
    finally:
        scorer.open.set()
        bridge.stop()
        if loop.is_alive():
            loop.join(60)
        bridge.close()
        server.shutdown()
        server.server_close()


def probe(url: str, path: str) -> int:
    return httpx.get(f"{url}{path}", timeout=5).status_code


def test_a_running_bridge_is_ready_with_partitions_and_a_service_and_live_while_polling(
    rig, kafka, readers, private_bento
):
    url, loop, clock, topic = rig["url"], rig["loop"], rig["clock"], rig["topic"]
    assert probe(url, READY_PATH) == 503  # no assignment before the loop runs
    assert probe(url, "/metrics") == 404
    loop.start()
    wait_until(lambda: probe(url, READY_PATH) == 200, 60, "ready")
    assert len(rig["bridge"].consumer.assignment()) == PARTITIONS
    out, _ = readers(topic)
    kafka.send(topic, [event(i) for i in range(10)])
    read_until([out], 10, 60, None)
    assert probe(url, READY_PATH) == 200

    # The service goes away: the next call fails, the bridge is not ready, but still live
    # (it keeps polling, paused, while it retries).
    service = rig["service"]
    service.stop()
    kafka.send(topic, [event(i) for i in range(10, 20)])
    wait_until(lambda: probe(url, READY_PATH) == 503, 60, "not ready")
    assert "the service did not answer" in httpx.get(f"{url}{READY_PATH}").text
    clock.advance(TIMEOUT_S + 1)
    wait_until(lambda: probe(url, LIVE_PATH) == 200, 10, "a poll at the new time")

    private_bento(port=service.port)
    read_until([out], 20, 120, None)
    wait_until(lambda: probe(url, READY_PATH) == 200, 30, "ready again")
    assert loop.is_alive()


def test_a_bridge_whose_loop_is_stuck_is_not_live_until_it_polls_again(rig, kafka, readers):
    url, loop, clock, topic = rig["url"], rig["loop"], rig["clock"], rig["topic"]
    bridge, scorer = rig["bridge"], rig["scorer"]
    loop.start()
    wait_until(lambda: probe(url, READY_PATH) == 200, 60, "ready")
    # A held scoring call: the loop scores ahead MAX_SUBMITTED batches and, with the next one
    # full, waits for the head's call without polling.
    scorer.open.clear()
    out, _ = readers(topic)
    total = MAX_BATCH * (MAX_SUBMITTED + 1)
    kafka.send(topic, [event(i) for i in range(total)])
    scorer.held.wait(60)

    def waiting_without_polling() -> bool:
        full = bridge.inflight.collected() >= MAX_BATCH
        return full and len(bridge.inflight.pending) == MAX_SUBMITTED

    wait_until(waiting_without_polling, 60, "the loop waiting on the held call")
    assert probe(url, LIVE_PATH) == 200
    clock.advance(TIMEOUT_S + 1)
    assert probe(url, LIVE_PATH) == 503
    assert "no poll for 181s" in httpx.get(f"{url}{LIVE_PATH}").text

    scorer.open.set()
    read_until([out], total, 60, None)
    wait_until(lambda: probe(url, LIVE_PATH) == 200, 10, "live again")
