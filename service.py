"""The churn model served by BentoML: JSON, batch and DataFrame prediction endpoints.

bentoml serve                              # ChurnService on http://127.0.0.1:3000, docs at /
bentoml serve service:BatchedChurnService  # the same API; /predict scored with adaptive batching

Each API method is a few lines: validation and scoring come from `models/`, the cache, metrics,
auth and GET routes from `serving/`. The bodies are taken as any JSON and validated by the
method, so every 400 is the service's own (docs/api.md).
"""

import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio.to_thread
import bentoml
import numpy as np
import pandas as pd
import sklearn
from pydantic import WithJsonSchema

from models.contract import ERROR_COLUMN
from models.explain import explain
from models.features import matrix_from_records
from models.predict import (
    frame_from_records,
    parse_batch,
    parse_request,
    score_frame,
    split_requests,
)
from models.prediction import Predictions
from models.predictor import ChurnPredictor
from monitoring.log import PredictionLog
from monitoring.records import Served, dated, frame_served
from serving import bentoml_fixes, heap, metrics, responses
from serving.app import routes
from serving.bentoml_fixes import renders_errors
from serving.cache import PredictionCache
from serving.docs import DocsRoutes
from serving.middleware import ServingMiddleware
from serving.rollout import Rollout
from serving.schema import ServedBatchResponse, ServedPrediction
from serving.scoring import ProbabilityFn, Scorer
from serving.settings import ServiceSettings

logger = logging.getLogger(__name__)
# BentoML shows its own loggers' INFO lines, and only WARNING and above of others: ours too,
# for the start-up line and the one line per client error (serving/bentoml_fixes.py).
for _name in (__name__, "serving"):
    logging.getLogger(_name).setLevel(logging.INFO)

# The service's settings, read once: BentoML needs the model tag and the workers when it reads
# the classes below, and the instances take the same object.
SETTINGS = ServiceSettings()
bentoml_fixes.install()  # before BentoML builds the worker's app (serving/bentoml_fixes.py)

# Why these settings: docs/performance.md. Tracing is off by default (sample rate 0), yet
# BentoML's OpenTelemetry middleware still builds a span per request (a large share of the CPU
# under load) unless the path is excluded; set `tracing.excluded_urls` to [] to trace.
SERVICE_CONFIG = {
    "traffic": {"timeout": 30},
    # A log line per request costs a large share of a /predict call's CPU; request counts and
    # latencies are in /metrics, errors are logged anyway. Turn it on with BENTOML_CONFIG_OVERRIDES=
    # '{"services": {"churn_service": {"logging": {"access": {"enabled": true}}}}}' (nested JSON).
    "logging": {"access": {"enabled": False}},
    "tracing": {"excluded_urls": ["/predict", "/health", "/livez", "/readyz", "/metrics"]},
    "runner_connection": bentoml_fixes.RUNNER_CONNECTION,
}
# Any JSON value: the API method validates it (the docs show the real schema: serving/docs.py).
Body = Annotated[Any, WithJsonSchema({"description": "a JSON body; see the API docs"})]


@bentoml.service(name="churn_model", **SERVICE_CONFIG)
class ChurnModel:
    """The model alone: concurrent calls are merged into one `predict_proba` (adaptive batching)."""

    bento_model = bentoml.models.BentoModel(SETTINGS.tag())

    def __init__(self) -> None:
        self.predictor = ChurnPredictor.from_stored(self.bento_model, SETTINGS.model_threads)
        heap.freeze_startup_objects()  # see serving/heap.py

    @bentoml.api(batchable=True, max_batch_size=128, max_latency_ms=1000)
    def churn_probability(self, matrix: np.ndarray) -> np.ndarray:
        return self.predictor.churn_probability(matrix)


class ChurnEndpoints:
    """The API, shared by both designs; `_churn_probability` is where they differ."""

    # Resolved from the store when the service starts; `bentoml build` pins the exact version.
    bento_model = bentoml.models.BentoModel(SETTINGS.tag())
    # Only with CHURN_CANDIDATE_TAG (docs/rollout.md): then `bentoml build` pins it as well.
    candidate_model = (
        bentoml.models.BentoModel(SETTINGS.candidate_tag) if SETTINGS.candidate_tag else None
    )

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.settings = s = SETTINGS
        self.predictor = ChurnPredictor.from_stored(self.bento_model, s.model_threads)
        # For /health's `last_updated`: when the served model was saved to the store.
        self.model_created_at = self.bento_model.info.creation_time
        self.cache = (
            PredictionCache(
                s.redis_url, s.cache_ttl_seconds, s.redis_timeout_seconds, s.redis_retry_seconds
            )
            if s.redis_url
            else None
        )
        self.scorer = Scorer(self.predictor, self.cache)
        self.prediction_log = PredictionLog.open(s.prediction_log)  # docs/monitoring.md
        # A candidate model beside the served one, when CHURN_CANDIDATE_TAG is set: its records
        # reach the log through the shadow runner (docs/rollout.md).
        self.rollout = Rollout.start(
            s, self.predictor, self.cache, self.prediction_log, self.candidate_model
        )
        self.hand_over = self.rollout.after if self.rollout else self.prediction_log.hand_over
        # /predict scores on this (the event-loop) thread, for which sklearn keeps its own config.
        # Inputs are already checked finite by the contract; sklearn's second check of every
        # one-row call is a large share of its cost there.
        sklearn.set_config(assume_finite=True)
        logger.info("serving %s, cache %s", self.predictor.tag, "on" if self.cache else "off")
        if not s.tokens:
            logger.warning(
                "CHURN_API_TOKENS is not set: the prediction and model endpoints accept requests "
                "without authentication"
            )
        heap.freeze_startup_objects()  # the last step: see serving/heap.py

    @bentoml.on_shutdown
    async def close_cache(self) -> None:
        if self.cache is not None:
            await self.cache.close()

    @bentoml.on_shutdown
    async def close_prediction_log(self) -> None:
        if self.rollout is not None:  # first: its thread hands the last records to the log
            await anyio.to_thread.run_sync(self.rollout.close)
        await anyio.to_thread.run_sync(self.prediction_log.close)  # writes what is queued

    @property
    def tag(self) -> str:
        return self.predictor.tag

    def __is_ready__(self) -> bool:
        return self.predictor.churn_probability(np.zeros((1, 4))).shape == (1,)

    # How /predict gets probabilities: None scores in this worker (`Scorer.inline`).
    _churn_probability: ProbabilityFn | None = None

    @bentoml.api(route="/predict")
    @renders_errors("predict", "/predict")
    async def predict(self, body: Body, /) -> ServedPrediction:
        """Churn prediction for one customer; `"explain": true` adds reason codes."""
        started, as_of = time.perf_counter(), self.settings.as_of_or_today()
        request = parse_request(body, as_of)
        if request.ignored_fields:
            metrics.record_ignored("predict", request.ignored_fields)
        matrix = matrix_from_records([request.features], as_of)
        scorer, predictor, routed_id = self.scorer, self.predictor, None
        if self.rollout is not None:  # a canary may route this customer to the candidate
            scorer, predictor, routed_id = self.rollout.choose(request, self.scorer)
        own = self._churn_probability if scorer is self.scorer else None
        scores = await scorer.score(matrix, as_of, own)
        reasons = explain(predictor, matrix) if request.explain else None
        ids = [request.customer_id]
        predictions = Predictions(ids, matrix, scores, predictor.tag, as_of, reasons)
        now = datetime.now(UTC)
        response = responses.prediction(predictions, 0, request, started, now, routed_id)
        served = Served("predict", predictions, [response.request_id], dated([request]), now)
        self.hand_over(served)
        return response

    @bentoml.api(route="/predict/batch")
    @renders_errors("batch", "/predict/batch")
    def predict_batch(self, body: Body, /) -> ServedBatchResponse:
        """Up to 1000 customers: invalid items are reported in `errors`, the rest scored at once.

        `"explain": true` (for the batch or an item) adds reason codes."""
        started, as_of = time.perf_counter(), self.settings.as_of_or_today()
        batch = parse_batch(body)
        valid, rejected = split_requests(batch.requests, as_of)
        metrics.record_batch_size("batch", len(batch.requests))
        metrics.record_validation_failures("batch", (r.first.field for r in rejected))
        metrics.record_batch_ignored(batch.requests, valid, rejected)
        requests = [r for _, r in valid]
        matrix = matrix_from_records([r.features for r in requests], as_of)
        ids = [r.customer_id for r in requests]
        scorer, versions = self.scorer.in_thread(as_of), None
        if self.rollout is None:
            scores = scorer.score(matrix)
        else:  # a canary routes each customer (by id, else request id) to one model
            keys = [r.customer_id or r.request_id for r in requests]
            scores, versions = self.rollout.score_rows(scorer, keys, matrix, as_of)
        wanted = any(responses.wants_reasons(batch, r) for r in requests)
        reasons = None
        if wanted:
            explained = self.rollout.explain_rows if self.rollout else None
            reasons = explained(matrix, versions) if explained else explain(self.predictor, matrix)
        predictions = Predictions(ids, matrix, scores, self.tag, as_of, reasons, versions)
        now = datetime.now(UTC)
        response = responses.batch_response(batch, requests, rejected, predictions, started, now)
        request_ids = [p.request_id for p in response.predictions]
        served = Served("batch", predictions, request_ids, dated(requests), now, response.batch_id)
        self.hand_over(served)
        return response

    @bentoml.api(route="/predict/dataframe")
    @renders_errors("dataframe", "/predict/dataframe")
    def predict_dataframe(self, body: Body, /) -> pd.DataFrame:
        """Customers in (JSON records, flat columns), predictions out, with an `error` column per
        row; rows with a true `explain` column also get `reason_1..3` and `contribution_1..3`."""
        frame = frame_from_records(body)
        scorer = self.scorer.in_thread(self.settings.as_of_or_today())
        if self.rollout is None:
            out, predictions = score_frame(scorer, frame, scorer.as_of, self.predictor)
            records = [frame_served(frame, out, predictions)]
        else:  # a canary routes each row by its customer id (serving/rollout.py)
            out, records = self.rollout.score_frame(scorer, frame)
        metrics.record_batch_size("dataframe", len(frame))
        metrics.record_ignored_columns(frame.columns)
        # A row's reason reads "field: message" (models.errors.FieldError.reason).
        reasons = out[ERROR_COLUMN].dropna()
        metrics.record_validation_failures("dataframe", (r.split(":", 1)[0] for r in reasons))
        for record in records:
            self.hand_over(record)
        return out


@bentoml.service(name="churn_service", workers=SETTINGS.workers, **SERVICE_CONFIG)
@bentoml.asgi_app(routes)
class ChurnService(ChurnEndpoints):
    """The default design: /predict scored in the API worker (the faster one here)."""


@bentoml.service(name="churn_service_batched", workers=SETTINGS.workers, **SERVICE_CONFIG)
@bentoml.asgi_app(routes)
class BatchedChurnService(ChurnEndpoints):
    """/predict scored by `ChurnModel` in its own process, with adaptive batching."""

    model = bentoml.depends(ChurnModel)

    async def _churn_probability(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(await self.model.to_async.churn_probability(matrix))


for _service in (ChurnService, BatchedChurnService):
    # `bentoml.service` made each class a `Service`; mypy types a decorated class as the class
    # (python/mypy#3135), so the type is checked here, at import.
    assert isinstance(_service, bentoml.Service)
    _service.add_asgi_middleware(ServingMiddleware)
    _service.add_asgi_middleware(DocsRoutes, service=_service)
