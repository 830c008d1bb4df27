"""Redis killed, restarted and frozen under concurrent load: not one request may fail.

A real redis-server of its own is SIGKILLed and restarted on the same port, then SIGSTOPped
(it accepts connections but never answers: the slow-Redis case, bounded by the socket timeout)
and resumed, while client threads keep posting /predict for a small set of customers.
"""

import signal
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import customer, metric
from tests.support import Process, start_bento, start_redis, wait_until

CLIENTS = 12


@pytest.fixture(scope="module")
def own_redis(logs_dir: Path) -> Iterator[list[Process]]:
    # A list, so the test can replace the process it kills with the restarted one.
    procs = [start_redis(logs_dir)]
    yield procs
    procs[-1].stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def cached_bento(logs_dir, service_env, own_redis) -> Iterator[Process]:
    env = {
        **service_env,
        "CHURN_REDIS_URL": f"redis://127.0.0.1:{own_redis[0].port}/0",
        "REDIS_TIMEOUT_SECONDS": "0.1",
        "REDIS_RETRY_SECONDS": "0.5",
    }
    proc = start_bento(logs_dir, env)
    yield proc
    proc.stop()


class Load:
    """Client threads posting /predict until stopped; remembers every status and `cached`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.statuses: Counter[int | str] = Counter()
        self.cached: Counter[bool] = Counter()
        self.lock = threading.Lock()

    def client(self, n: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            i = 0
            while not self.stop.is_set():
                i += 1
                try:
                    resp = http.post("/predict", json=customer(7000 + (n * 7 + i) % 40))
                    status: int | str = resp.status_code
                    cached = resp.json().get("cached") if status == 200 else None
                except httpx.HTTPError as exc:
                    status, cached = type(exc).__name__, None
                with self.lock:
                    self.statuses[status] += 1
                    if cached is not None:
                        self.cached[cached] += 1

    def hits(self) -> int:
        with self.lock:
            return self.cached[True]


def health(url: str) -> str:
    return httpx.get(f"{url}/health", timeout=10).json()["cache"]


def test_predictions_survive_redis_dying_restarting_and_freezing(cached_bento, own_redis, logs_dir):
    url = cached_bento.url
    load = Load(url)
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(load.client, n) for n in range(CLIENTS)]
        try:
            wait_until(lambda: load.hits() > 50, 60, "cache hits before the outage")
            port = own_redis[0].port
            own_redis[0].stop(signal.SIGKILL)
            wait_until(lambda: health(url) == "unreachable", 20, "/health to see Redis down")
            errors = metric(url, "churn_cache_errors_total", operation="get")
            assert errors > 0
            served_while_down = load.statuses[200]
            wait_until(lambda: load.statuses[200] > served_while_down + 200, 60, "load, no Redis")

            own_redis.append(start_redis(logs_dir, port=port))
            wait_until(lambda: health(url) == "ok", 20, "/health to see Redis back")
            hits_after_restart = load.hits()
            wait_until(lambda: load.hits() > hits_after_restart + 50, 60, "hits after restart")

            own_redis[-1].proc.send_signal(signal.SIGSTOP)
            try:
                frozen_from = load.statuses[200]
                wait_until(lambda: load.statuses[200] > frozen_from + 200, 60, "load, frozen")
                assert health(url) == "unreachable"
            finally:
                own_redis[-1].proc.send_signal(signal.SIGCONT)
            hits_after_thaw = load.hits()
            wait_until(lambda: load.hits() > hits_after_thaw + 50, 60, "hits after the freeze")
        finally:
            load.stop.set()
            for future in futures:
                future.result()
    assert set(load.statuses) == {200}, load.statuses
    assert metric(url, "churn_cache_lookups_total", result="skipped") > 0
