"""Building the served responses from validated requests and their scores."""

import os
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from models.contract import FEATURES
from models.explain import Reasons
from models.predict import Rejected
from models.predictor import Scores
from models.schema import BatchRequest, ItemError, PredictRequest
from serving.schema import ServedBatchResponse, ServedPrediction


def new_request_ids(n: int) -> list[str]:
    """n random (version 4) UUIDs from one read of the OS's random source, not n reads."""
    pool = os.urandom(16 * n)
    return [str(uuid.UUID(bytes=pool[16 * i : 16 * i + 16], version=4)) for i in range(n)]


def wants_reasons(batch: BatchRequest, request: PredictRequest) -> bool:
    return batch.explain or request.explain


def prediction(
    request: PredictRequest,
    scores: Scores,
    i: int,
    cached: bool,
    model_version: str,
    started: float,
    request_id: str | None = None,
    reasons: Reasons | None = None,
) -> ServedPrediction:
    """The answer for `request`: row `i` of `scores` and, when given, of `reasons`."""
    return ServedPrediction(
        customer_id=request.customer_id,
        **scores.row(i),
        **(reasons.row(i) if reasons is not None else {}),
        model_version=model_version,
        request_id=request.request_id or request_id or str(uuid.uuid4()),
        processing_time=time.perf_counter() - started,
        timestamp=datetime.now(UTC),
        features_used=list(FEATURES),
        cached=cached,
    )


def batch_response(
    batch: BatchRequest,
    valid: Sequence[tuple[int, PredictRequest]],
    rejected: Sequence[Rejected],
    scores: Scores,
    cached: np.ndarray,
    model_version: str,
    started: float,
    reasons: Reasons | None = None,
) -> ServedBatchResponse:
    """`reasons`: of every valid item; given to those that asked (`wants_reasons`)."""
    ids = new_request_ids(len(valid))
    return ServedBatchResponse(
        batch_id=batch.batch_id or str(uuid.uuid4()),
        predictions=[
            prediction(
                r,
                scores,
                i,
                bool(cached[i]),
                model_version,
                started,
                ids[i],
                reasons if wants_reasons(batch, r) else None,
            )
            for i, (_, r) in enumerate(valid)
        ],
        errors=[
            ItemError(
                index=r.index,
                customer_id=r.customer_id,
                error=r.first.reason,
                field=r.first.field,
                code=r.first.code,
            )
            for r in rejected
        ],
        total_processed=len(batch.requests),
        success_count=len(valid),
        error_count=len(rejected),
        processing_time=time.perf_counter() - started,
    )
