"""The service's Prometheus metrics on /metrics, summed over the two workers of `production`."""

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.serving.conftest import AUTH, customer, metric

N = 60


def test_prediction_counts_are_merged_across_workers(production, model_tag):
    def total() -> float:
        return sum(
            metric(production.url, "churn_predictions_total", model_version=model_tag, prediction=c)
            for c in "01"
        )

    before = total()
    count_before = metric(production.url, "churn_probability_count", model_version=model_tag)

    with httpx.Client(base_url=production.url, headers=AUTH, timeout=30) as http:

        def one(i: int) -> int:
            return http.post("/predict", json=customer(5000 + i)).status_code

        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(one, range(N))) == {200}
    # Each read is answered by whichever worker accepts it; every one must see all N.
    for _ in range(6):
        assert total() == before + N
    after = metric(production.url, "churn_probability_count", model_version=model_tag)
    assert after == count_before + N


def test_validation_failures_are_counted_by_field(authed, production):
    def failures(endpoint: str, field: str) -> float:
        return metric(
            production.url, "churn_validation_failures_total", endpoint=endpoint, field=field
        )

    age, other = failures("predict", "age"), failures("predict", "other")
    batch_income = failures("batch", "income")
    bad_age = {**customer(1), "features": {**customer(1)["features"], "age": -4}}
    assert authed.post("/predict", json=bad_age).status_code == 400
    # An unknown field is ignored (models.policy), not a validation failure.
    assert authed.post("/predict", json={**customer(1), "made_up_name": 1}).status_code == 200
    bad_income = {**customer(2), "features": {**customer(2)["features"], "income": "lots"}}
    assert authed.post("/predict/batch", json={"requests": [bad_income]}).status_code == 200
    assert failures("predict", "age") == age + 1
    assert failures("predict", "other") == other
    assert failures("batch", "income") == batch_income + 1


def test_batch_sizes_are_observed(authed, production):
    count = metric(production.url, "churn_batch_size_count", endpoint="batch")
    total = metric(production.url, "churn_batch_size_sum", endpoint="batch")
    assert authed.post("/predict/batch", json={"requests": [customer(1)] * 7}).status_code == 200
    assert metric(production.url, "churn_batch_size_count", endpoint="batch") == count + 1
    assert metric(production.url, "churn_batch_size_sum", endpoint="batch") == total + 7


def test_cache_results_are_counted(authed, production):
    hits = metric(production.url, "churn_cache_lookups_total", result="hit")
    misses = metric(production.url, "churn_cache_lookups_total", result="miss")
    for _ in range(3):
        authed.post("/predict", json=customer(6001))
    assert metric(production.url, "churn_cache_lookups_total", result="miss") == misses + 1
    assert metric(production.url, "churn_cache_lookups_total", result="hit") == hits + 2


def test_every_metric_is_documented_in_the_monitoring_docs():
    from pathlib import Path

    from monitoring import log
    from serving import metrics, shadow

    readme = (Path(__file__).resolve().parents[2] / "docs" / "monitoring.md").read_text()
    names = [
        m._name
        for module in (metrics, log, shadow)
        for m in vars(module).values()
        if hasattr(m, "_name") and hasattr(m, "_documentation")
    ]
    assert names
    for name in names:
        assert f"`{name}" in readme, name


def test_the_event_loop_lag_is_probed_once_requests_arrive(authed, production):
    assert authed.post("/predict", json=customer(7001)).status_code == 200
    # The probe starts with a worker's first request and observes every 100 ms: wait for its
    # observations to appear (a count that grows), not for a fixed time.
    deadline = time.monotonic() + 30
    counts = []
    while time.monotonic() < deadline and len(set(counts)) < 3:
        counts.append(metric(production.url, "churn_event_loop_lag_seconds_count"))
    assert len(set(counts)) >= 3, counts
