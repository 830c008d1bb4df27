"""The service's own Prometheus metrics, served by BentoML's `/metrics` next to its own.

Defined with plain `prometheus_client` at import time: BentoML points `PROMETHEUS_MULTIPROC_DIR`
at a shared directory before it imports the service in each worker, so every value here is
written to that directory and `/metrics` on any worker reports the sum over all workers.
Label values are bounded: model versions, two classes, a fixed set of field names.
"""

from collections.abc import Iterable

import numpy as np
from prometheus_client import Counter, Histogram

from models.contract import INPUT_COLUMNS
from models.predictor import Scores

PREDICTIONS = Counter(
    "churn_predictions",
    "Customers scored (cache hits included), by served model version and predicted class",
    ["model_version", "prediction"],
)
CHURN_PROBABILITY = Histogram(
    "churn_probability",
    "P(churn) of each customer scored, by served model version",
    ["model_version"],
    buckets=[round(0.1 * i, 1) for i in range(1, 11)],
)
CACHE_LOOKUPS = Counter(
    "churn_cache_lookups",
    "Customers looked up in the prediction cache: hit, miss, or skipped (Redis unavailable)",
    ["result"],
)
CACHE_ERRORS = Counter(
    "churn_cache_errors",
    "Redis calls of the prediction cache that failed or timed out, by operation",
    ["operation"],
)
VALIDATION_FAILURES = Counter(
    "churn_validation_failures",
    "Rejected requests, batch items and DataFrame rows, by endpoint and first failing field",
    ["endpoint", "field"],
)
BATCH_SIZE = Histogram(
    "churn_batch_size",
    "Customers per request of the batch and DataFrame endpoints",
    ["endpoint"],
    buckets=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
)

# Anything else a client sends as a field name is counted as "other", so that a client
# inventing names cannot create new time series.
KNOWN_FIELDS = frozenset(
    [*INPUT_COLUMNS, "features", "request", "request_id", "priority", "requests", "batch_id"]
)


def record_scores(model_version: str, scores: Scores) -> None:
    n = len(scores)
    if n == 0:
        return
    churners = int(np.count_nonzero(scores.prediction))
    if churners:
        PREDICTIONS.labels(model_version, "1").inc(churners)
    if n - churners:
        PREDICTIONS.labels(model_version, "0").inc(n - churners)
    histogram = CHURN_PROBABILITY.labels(model_version)
    for p in scores.churn_probability:
        histogram.observe(float(p))


def record_cache_lookups(hits: int, misses: int, skipped: int) -> None:
    for result, count in (("hit", hits), ("miss", misses), ("skipped", skipped)):
        if count:
            CACHE_LOOKUPS.labels(result).inc(count)


def record_cache_error(operation: str) -> None:
    CACHE_ERRORS.labels(operation).inc()


def record_validation_failures(endpoint: str, fields: Iterable[str]) -> None:
    for field in fields:
        VALIDATION_FAILURES.labels(endpoint, field if field in KNOWN_FIELDS else "other").inc()


def record_batch_size(endpoint: str, size: int) -> None:
    BATCH_SIZE.labels(endpoint).observe(size)
