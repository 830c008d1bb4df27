"""The Redis prediction cache, against a real redis-server: hits, misses, TTL and expiry, a new
model version, a new as-of day, and one round trip for batches and DataFrames."""

import asyncio
import dataclasses
import hashlib
import json
from datetime import date, timedelta

import httpx
import numpy as np
import pytest
import redis

from models.contract import FEATURES
from serving.cache import KEY_PREFIX, PredictionCache, cache_keys
from serving.scoring import Scorer
from tests.conftest import AS_OF
from tests.serving.conftest import CACHE_TTL_SECONDS, customer, metric
from tests.support import wait_until

SAME_FIELDS = (
    "customer_id",
    "prediction",
    "churn_probability",
    "probability",
    "confidence_level",
    "model_version",
    "features_used",
)


@pytest.fixture
def db(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def mget_calls(db: redis.Redis) -> int:
    return int(db.info("commandstats").get("cmdstat_mget", {}).get("calls", 0))


def test_a_repeated_request_is_a_hit_with_its_own_ids(authed: httpx.Client):
    body = customer(1001)
    first = authed.post("/predict", json=body).json()
    second = authed.post("/predict", json={**body, "request_id": "r-2"}).json()
    assert (first["cached"], second["cached"]) == (False, True)
    assert {k: first[k] for k in SAME_FIELDS} == {k: second[k] for k in SAME_FIELDS}
    assert second["request_id"] == "r-2"
    assert first["timestamp"] <= second["timestamp"]


def test_entries_carry_the_configured_ttl(authed: httpx.Client, db: redis.Redis):
    before = set(db.scan_iter(f"{KEY_PREFIX}*"))
    authed.post("/predict", json=customer(1002))
    (new,) = set(db.scan_iter(f"{KEY_PREFIX}*")) - before
    assert 0 < db.ttl(new) <= CACHE_TTL_SECONDS


def test_keys_are_the_canonical_json_digest(predictor):
    row = np.array([[42.0, 55000.0, 12.0, 29.0]])
    features = dict(zip(FEATURES, row[0].tolist(), strict=True))
    document = {"as_of": "2026-06-30", "features": features, "model_version": predictor.tag}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    expected = KEY_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()
    assert cache_keys(predictor.tag, AS_OF, row) == [expected]


def test_batch_reads_all_items_in_one_mget(authed: httpx.Client, db: redis.Redis):
    items = [customer(2000 + i) for i in range(40)]
    authed.post("/predict/batch", json={"requests": items[::2]})  # cache every other one
    calls = mget_calls(db)
    body = authed.post("/predict/batch", json={"requests": [*items, {"bad": 1}]}).json()
    assert mget_calls(db) == calls + 1
    assert [p["cached"] for p in body["predictions"]] == [i % 2 == 0 for i in range(40)]
    again = authed.post("/predict/batch", json={"requests": items}).json()
    assert all(p["cached"] for p in again["predictions"])
    assert [p["churn_probability"] for p in again["predictions"]] == [
        p["churn_probability"] for p in body["predictions"]
    ]


def test_dataframe_rows_use_the_cache_in_one_mget(authed, db, production):
    items = [customer(3000 + i) for i in range(10)]
    singles = [authed.post("/predict", json=item).json() for item in items[:4]]
    rows = [{"customer_id": i["customer_id"], **i["features"]} for i in items]
    hits, calls = metric(production.url, "churn_cache_lookups_total", result="hit"), mget_calls(db)
    out = authed.post("/predict/dataframe", json=rows).json()
    assert mget_calls(db) == calls + 1
    assert metric(production.url, "churn_cache_lookups_total", result="hit") == hits + 4
    assert [r["churn_probability"] for r in out[:4]] == [s["churn_probability"] for s in singles]


def test_another_model_version_does_not_see_these_entries(authed, rolled_back, two_versions):
    body = customer(4001)
    assert authed.post("/predict", json=body).json()["cached"] is False
    assert authed.post("/predict", json=body).json()["cached"] is True
    answers = [httpx.post(f"{rolled_back.url}/predict", json=body, timeout=30).json() for _ in "12"]
    assert answers[0]["model_version"] == two_versions.tags[0]
    assert [a["cached"] for a in answers] == [False, True]
    served = authed.post("/predict", json=body).json()["churn_probability"]
    assert answers[0]["churn_probability"] != served


def cached_score(predictor, redis_url: str, matrix: np.ndarray, as_of: date, ttl: int = 60):
    async def run() -> np.ndarray:
        cache = PredictionCache(redis_url, ttl, timeout=1.0, retry_seconds=0)
        try:
            cached = (await Scorer(predictor, cache).score(matrix, as_of)).cached
        finally:
            await cache.close()
        return cached

    return asyncio.run(run())


def test_a_new_as_of_day_and_a_new_version_miss(predictor, redis_url):
    matrix = np.array([[31.0, 41000.0, 3.0, 11.0], [64.0, 12000.0, 0.0, 300.0]])
    assert not cached_score(predictor, redis_url, matrix, AS_OF).any()
    assert cached_score(predictor, redis_url, matrix, AS_OF).all()
    assert not cached_score(predictor, redis_url, matrix, AS_OF + timedelta(days=1)).any()
    renamed = dataclasses.replace(predictor, tag=f"{predictor.tag}-retrained")
    assert not cached_score(renamed, redis_url, matrix, AS_OF).any()


def test_entries_expire_after_the_ttl(predictor, redis_url, db):
    matrix = np.array([[50.0, 77000.0, 9.0, 5.0]])
    assert not cached_score(predictor, redis_url, matrix, AS_OF, ttl=1).any()
    (key,) = cache_keys(predictor.tag, AS_OF, matrix)
    assert 0 < db.pttl(key) <= 1000
    wait_until(lambda: not db.exists(key), 10, "expiry")
    assert not cached_score(predictor, redis_url, matrix, AS_OF).any()


def test_hits_are_bit_identical_to_fresh_scores(predictor, redis_url):
    rng = np.random.default_rng(7)
    columns = [rng.uniform(18, 90, 50), rng.uniform(0, 2e5, 50), rng.integers(0, 40, 50)]
    matrix = np.column_stack([*columns, rng.integers(0, 400, 50)]).astype(np.float64)

    async def twice() -> tuple[np.ndarray, np.ndarray]:
        cache = PredictionCache(redis_url, 60, timeout=1.0, retry_seconds=0)
        scorer = Scorer(predictor, cache)
        try:
            first = await scorer.score(matrix, AS_OF)
            second = await scorer.score(matrix, AS_OF)
            cached = second.cached
        finally:
            await cache.close()
        assert cached.all()
        return first.churn_probability, second.churn_probability

    first, second = asyncio.run(twice())
    assert first.tobytes() == second.tobytes() == predictor.churn_probability(matrix).tobytes()


def test_cache_is_reported_by_health(production):
    body = httpx.get(f"{production.url}/health", timeout=10).json()
    assert body["cache"] == "ok"
    assert body["status"] == "healthy"


def test_a_foreign_value_under_a_key_is_a_miss(authed: httpx.Client, db: redis.Redis):
    body = customer(9001)
    before = set(db.scan_iter(f"{KEY_PREFIX}*"))
    first = authed.post("/predict", json=body).json()
    (key,) = set(db.scan_iter(f"{KEY_PREFIX}*")) - before
    db.set(key, "not a probability")
    resp = authed.post("/predict", json=body)
    assert resp.status_code == 200
    assert resp.json()["cached"] is False
    assert resp.json()["churn_probability"] == first["churn_probability"]
