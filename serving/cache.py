"""The prediction cache in Redis: optional, shared round trips, never in the way.

A cached value is P(churn) of one customer, written as `repr(float)`, which reads back as the
same float to the last bit; every other score field follows from it (`scores_from_probability`).
The key is a SHA-256 digest of the served model version, the as-of date and the customer's
feature vector (canonical JSON), so a new model version or a new day never finds an old entry.

Concurrent requests share their round trips (`serving.coalesce`): one MGET carries the keys of
every request waiting for a lookup, one pipeline the writes of every request waiting to write.

When Redis fails or is slow (short socket timeouts), the caller gets "not cached" answers, the
failure is counted, and for `retry_seconds` no request waits on Redis at all; after that the
next request tries again, so the cache comes back by itself when Redis does.
"""

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import date

import numpy as np
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from models.contract import FEATURES
from serving import metrics
from serving.coalesce import Coalescer

logger = logging.getLogger(__name__)

KEY_PREFIX = "churn:p:"


_SORTED = sorted(FEATURES)
_ORDER = [FEATURES.index(name) for name in _SORTED]
# The canonical JSON (sorted keys, no spaces) of {"as_of", "features", "model_version"}, spelled
# out as a template: json.dumps(..., sort_keys=True) per row costs more for the same text
# (a unit test checks that the two agree). `%r` of a float is its JSON form.
_CANONICAL = (
    '{"as_of":"%s","features":{'
    + ",".join(f'"{name}":%r' for name in _SORTED)
    + '},"model_version":%s}'
)


def cache_keys(model_version: str, as_of: date, matrix: np.ndarray) -> list[str]:
    """One key per row of the feature matrix (columns in `FEATURES` order)."""
    version = json.dumps(model_version)
    day = as_of.isoformat()
    keys = []
    for row in matrix.tolist():
        canonical = _CANONICAL % (day, *[row[i] for i in _ORDER], version)
        keys.append(KEY_PREFIX + hashlib.sha256(canonical.encode()).hexdigest())
    return keys


def _probability(value: bytes | str | None) -> float | None:
    """A stored P(churn); anything else under our key (not ours to trust) is a miss."""
    if value is None:
        return None
    try:
        p = float(value)
    except ValueError:
        return None
    return p if 0.0 <= p <= 1.0 else None


class PredictionCache:
    def __init__(
        self,
        url: str,
        ttl_seconds: int,
        timeout: float,
        retry_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.retry_seconds = retry_seconds
        self.clock = clock  # when the failure window ends is read off it
        self._redis = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._skip_until = 0.0
        self._failing = False
        self._lookups: Coalescer[str, float | None] = Coalescer(self._mget)
        self._writes: Coalescer[tuple[str, float], None] = Coalescer(self._pipelined_set)

    @property
    def available(self) -> bool:
        return self.clock() >= self._skip_until

    async def get_many(self, keys: Sequence[str]) -> list[float | None]:
        """Cached P(churn) per key, None where absent; all None when Redis is unavailable."""
        if not keys:
            return []
        if not self.available:
            metrics.record_cache_lookups(0, 0, len(keys))
            return [None] * len(keys)
        return await self._lookups.submit(keys)

    async def set_many(self, keys: Sequence[str], probabilities: np.ndarray) -> None:
        """Store P(churn) under each key with the TTL (a pipelined round trip, shared)."""
        if not keys or not self.available:
            return
        await self._writes.submit(list(zip(keys, probabilities.tolist(), strict=True)))

    async def _mget(self, keys: list[str]) -> list[float | None]:
        if not self.available:  # Redis failed while these keys waited their turn
            metrics.record_cache_lookups(0, 0, len(keys))
            return [None] * len(keys)
        try:
            values = await self._redis.mget(keys)
        except (RedisError, OSError) as exc:
            await self._failed("get", exc)
            metrics.record_cache_lookups(0, 0, len(keys))
            return [None] * len(keys)
        if self._failing:
            self._failing = False
            logger.warning("Redis answers again; the prediction cache is back on")
        found = [_probability(v) for v in values]
        hits = sum(v is not None for v in found)
        metrics.record_cache_lookups(hits, len(keys) - hits, 0)
        return found

    async def _pipelined_set(self, entries: list[tuple[str, float]]) -> list[None]:
        if self.available:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key, p in entries:
                        pipe.set(key, repr(p), ex=self.ttl_seconds)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                await self._failed("set", exc)
        return [None] * len(entries)

    async def ping(self) -> bool:
        """Whether Redis answers now (for /health); does not wait out a failure window."""
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()

    async def _failed(self, operation: str, exc: Exception) -> None:
        metrics.record_cache_error(operation)
        self._failing = True
        if self.available:
            logger.warning(
                "Redis %s failed (%s: %s); scoring without the cache for %.1fs",
                operation,
                type(exc).__name__,
                exc,
                self.retry_seconds,
            )
        self._skip_until = self.clock() + self.retry_seconds
        # Drop every pooled connection: after a Redis restart each old one would fail once more,
        # and each failure would start another window without the cache.
        try:
            await self._redis.connection_pool.disconnect()
        except (RedisError, OSError):
            logger.debug("closing Redis connections after a failure", exc_info=True)
