"""The prediction cache's failure window, without Redis: a fake client that fails or answers on
demand, and a fake clock handed to the cache.

After a failed Redis call no request waits on Redis for `retry_seconds`; then the next request
tries once, and the cache is back if Redis answers, or closed for another window if not.
"""

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from serving import cache as cache_module
from serving.cache import PredictionCache

RETRY = 5.0
KEYS = ["k1", "k2", "k3"]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeRedis:
    """The calls `PredictionCache` makes, against a dict; `down` makes every call fail."""

    def __init__(self) -> None:
        self.store: dict[str, str] = {}
        self.down: BaseException | None = None
        self.calls: list[str] = []
        self.disconnects = 0
        self.options: dict[str, Any] = {}
        self.connection_pool = SimpleNamespace(disconnect=self._disconnect)

    async def _disconnect(self) -> None:
        self.disconnects += 1

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down is not None:
            raise self.down

    async def mget(self, keys: list[str]) -> list[str | None]:
        await asyncio.sleep(0)  # let concurrent requests reach Redis too
        self._call("mget")
        return [self.store.get(k) for k in keys]

    def pipeline(self, transaction: bool) -> "FakePipeline":
        return FakePipeline(self)

    async def ping(self) -> bool:
        self._call("ping")
        return True


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis, self.queued = redis, []

    async def __aenter__(self) -> "FakePipeline":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def set(self, key: str, value: str, ex: int) -> None:
        self.queued.append((key, value))

    async def execute(self) -> None:
        self.redis._call("pipeline")
        self.redis.store.update(self.queued)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def redis(monkeypatch: pytest.MonkeyPatch) -> FakeRedis:
    fake = FakeRedis()

    def from_url(url: str, **options: Any) -> FakeRedis:
        fake.options = options
        return fake

    monkeypatch.setattr(cache_module, "Redis", SimpleNamespace(from_url=from_url))
    return fake


@pytest.fixture
def cache(clock: FakeClock, redis: FakeRedis) -> PredictionCache:
    return PredictionCache("redis://cache:6379/0", 60, 0.05, RETRY, clock=clock)


def lookups(result: str) -> float:
    return REGISTRY.get_sample_value("churn_cache_lookups_total", {"result": result}) or 0.0


def errors(operation: str) -> float:
    return REGISTRY.get_sample_value("churn_cache_errors_total", {"operation": operation}) or 0.0


def get(cache: PredictionCache, keys: list[str] = KEYS) -> list[float | None]:
    return asyncio.run(cache.get_many(keys))


def put(cache: PredictionCache, probabilities: list[float], keys: list[str] = KEYS) -> None:
    asyncio.run(cache.set_many(keys, np.array(probabilities)))


def test_the_client_never_retries_and_times_out_fast(cache, redis):
    assert redis.options["socket_timeout"] == redis.options["socket_connect_timeout"] == 0.05
    assert redis.options["retry"].get_retries() == 0


def test_a_healthy_cache_answers_what_was_stored(cache, redis):
    hits, misses = lookups("hit"), lookups("miss")
    put(cache, [0.25, 0.5], ["k1", "k2"])
    assert get(cache) == [0.25, 0.5, None]
    assert (lookups("hit"), lookups("miss")) == (hits + 2, misses + 1)
    assert redis.calls == ["pipeline", "mget"]


def test_after_a_failure_no_call_for_retry_seconds_then_one_try(cache, redis, clock, caplog):
    redis.store = {"k1": repr(0.125)}
    redis.down = RedisTimeoutError("Timeout reading from socket")
    skipped, failed = lookups("skipped"), errors("get")
    caplog.set_level(logging.WARNING, logger="serving.cache")

    assert get(cache) == [None, None, None]
    assert redis.calls == ["mget"]
    assert errors("get") == failed + 1
    assert redis.disconnects == 1  # pooled connections dropped
    assert [r.getMessage() for r in caplog.records] == [
        "Redis get failed (TimeoutError: Timeout reading from socket); "
        "scoring without the cache for 5.0s"
    ]

    # Inside the window: answers "not cached" without a call, reads and writes alike.
    redis.down = None
    for elapsed in (0.0, 1.0, RETRY - 0.001):
        clock.now = 1000.0 + elapsed
        assert not cache.available
        assert get(cache) == [None, None, None]
        put(cache, [0.9, 0.9, 0.9])
    assert redis.calls == ["mget"]
    assert lookups("skipped") == skipped + 3 + 3 * 3
    assert errors("get") == failed + 1

    # The window is over: the next request tries once, and Redis answers again.
    clock.now = 1000.0 + RETRY
    assert cache.available
    assert get(cache) == [0.125, None, None]
    assert redis.calls == ["mget", "mget"]
    assert caplog.records[-1].getMessage() == "Redis answers again; the prediction cache is back on"
    put(cache, [0.75], ["k2"])
    assert get(cache) == [0.125, 0.75, None]
    assert len(caplog.records) == 2  # "back on" is said once


def test_a_failed_retry_opens_a_new_window_from_then(cache, redis, clock):
    redis.down = RedisConnectionError("Connection refused")
    get(cache)
    clock.now = 1000.0 + RETRY
    get(cache)  # the one try, failing again
    assert redis.calls == ["mget", "mget"]
    clock.now = 1000.0 + 2 * RETRY - 0.001
    get(cache)
    assert redis.calls == ["mget", "mget"]
    clock.now = 1000.0 + 2 * RETRY
    get(cache)
    assert redis.calls == ["mget", "mget", "mget"]


def test_a_failed_write_opens_the_window_too(cache, redis, clock):
    redis.down = OSError("Network is unreachable")
    failed = errors("set")
    put(cache, [0.5, 0.5, 0.5])
    assert errors("set") == failed + 1
    redis.down = None
    assert get(cache) == [None, None, None]
    assert redis.calls == ["pipeline"]
    clock.now = 1000.0 + RETRY
    put(cache, [0.5, 0.5, 0.5])
    assert redis.calls == ["pipeline", "pipeline"]


def test_requests_failing_together_share_one_call_and_say_so_once(cache, redis, caplog):
    redis.down = RedisConnectionError("Connection refused")
    failed = errors("get")
    caplog.set_level(logging.WARNING, logger="serving.cache")

    async def together() -> list[list[float | None]]:
        return await asyncio.gather(*(cache.get_many(KEYS) for _ in range(4)))

    assert asyncio.run(together()) == [[None, None, None]] * 4
    assert redis.calls == ["mget"]  # the four lookups were one round trip
    assert errors("get") == failed + 1
    assert len(caplog.records) == 1


def test_health_asks_redis_even_inside_the_window(cache, redis):
    redis.down = RedisConnectionError("Connection refused")
    get(cache)
    assert asyncio.run(cache.ping()) is False
    redis.down = None
    assert not cache.available
    assert asyncio.run(cache.ping()) is True
    assert redis.calls == ["mget", "ping", "ping"]
