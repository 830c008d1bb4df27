"""The service's own Prometheus metrics, served by BentoML's `/metrics` next to its own.

Defined with plain `prometheus_client` at import time: BentoML points `PROMETHEUS_MULTIPROC_DIR`
at a shared directory before it imports the service in each worker, so every value here is
written to that directory and `/metrics` on any worker reports the sum over all workers.
Label values are bounded: model versions, two classes, a fixed set of field names, and at most
`models.policy.MAX_IGNORED_LABELS` names of ignored fields per process (then `other`).
"""

from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import Counter, Histogram

from models.contract import INPUT_COLUMNS
from models.policy import (
    MAX_IGNORED_LABELS,
    OPTIONS,
    ignored_columns,
    ignored_fields,
    ignored_label,
)
from models.predictor import Scores

if TYPE_CHECKING:
    from models.predict import Rejected
    from models.schema import PredictRequest

EVENT_LOOP_LAG = Histogram(
    "churn_event_loop_lag_seconds",
    "How late the worker's event loop ran a 100 ms timer: how long it was blocked",
    buckets=[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
)
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
# One per refused request, where VALIDATION_FAILURES counts fields, batch items and rows (a
# batch answered 200 with bad items counts there, not here) and knows no status.
CLIENT_ERRORS = Counter(
    "churn_client_errors",
    "Requests answered with a 4xx because of the request (unreadable or invalid body, missing "
    "or wrong token, body too large), by endpoint (predict | batch | dataframe | infer, other "
    "for the other paths the token and size checks refuse) and status",
    ["endpoint", "status"],
)
IGNORED_FIELDS = Counter(
    "churn_ignored_fields",
    "Fields no path reads, ignored without changing any answer, by path (predict | batch | "
    f"dataframe) and field (`features.NAME` inside features; `other` past {MAX_IGNORED_LABELS} "
    "names per worker). predict: once per request that passes schema validation; batch: once "
    "per item, valid or not; dataframe: once per request per ignored column, not once per row",
    ["path", "field"],
)
BATCH_SIZE = Histogram(
    "churn_batch_size",
    "Customers per request of the batch, DataFrame and protocol inference endpoints",
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


def record_client_error(endpoint: str, status: int) -> None:
    CLIENT_ERRORS.labels(endpoint, str(status)).inc()


def record_batch_size(endpoint: str, size: int) -> None:
    BATCH_SIZE.labels(endpoint).observe(size)


def record_ignored(path: str, fields: Iterable[str]) -> None:
    """Count ignored field names (each label bounded by `ignored_label`)."""
    for field, count in Tally(ignored_label(str(f)) for f in fields).items():
        IGNORED_FIELDS.labels(path, field).inc(count)


def record_batch_ignored(
    items: Sequence[Any],
    valid: Iterable[tuple[int, "PredictRequest"]],
    rejected: Iterable["Rejected"],
) -> None:
    """The ignored fields of every batch item: valid ones list theirs, rejected ones are read
    again from the raw item (`items[index]`)."""
    names = [f for _, request in valid for f in request.ignored_fields]
    names += [f for r in rejected for f in ignored_fields(items[r.index])]
    if names:
        record_ignored("batch", names)


def record_ignored_columns(columns: Iterable[Any]) -> None:
    """The ignored columns of one DataFrame request, once each whatever its number of rows.
    The endpoint reads the per-row options (an `explain` column) that files do not."""
    names = ignored_columns((str(c) for c in columns), OPTIONS)
    if names:
        record_ignored("dataframe", names)
