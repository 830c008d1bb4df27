"""The served answers: the prediction record (`models.prediction.Predictions`) as the JSON
endpoints give it, with what each answer adds (request id, timing, whether it was cached)."""

import time
import uuid
from collections.abc import Sequence
from datetime import datetime

from models.contract import FEATURES
from models.predict import Rejected
from models.prediction import Predictions, new_request_ids
from models.schema import BatchRequest, ItemError, PredictRequest
from serving.schema import ServedBatchResponse, ServedPrediction


def wants_reasons(batch: BatchRequest, request: PredictRequest) -> bool:
    return batch.explain or request.explain


def prediction(
    predictions: Predictions,
    i: int,
    request: PredictRequest,
    started: float,
    scored_at: datetime,
    request_id: str | None = None,
    with_reasons: bool = True,
) -> ServedPrediction:
    """The answer for `request`, customer `i` of `predictions`."""
    return ServedPrediction(
        **predictions.row(i, with_reasons),
        request_id=request.request_id or request_id or str(uuid.uuid4()),
        processing_time=time.perf_counter() - started,
        timestamp=scored_at,
        features_used=list(FEATURES),
        cached=bool(predictions.cached[i]),
    )


def batch_response(
    batch: BatchRequest,
    requests: Sequence[PredictRequest],
    rejected: Sequence[Rejected],
    predictions: Predictions,
    started: float,
    scored_at: datetime,
) -> ServedBatchResponse:
    """`requests`: the valid items, in the order of `predictions`; each gets its reasons when
    it or the batch asked (`wants_reasons`)."""
    ids = new_request_ids(len(requests))
    return ServedBatchResponse(
        batch_id=batch.batch_id or str(uuid.uuid4()),
        predictions=[
            prediction(predictions, i, r, started, scored_at, ids[i], wants_reasons(batch, r))
            for i, r in enumerate(requests)
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
        total_processed=len(requests) + len(rejected),
        success_count=len(requests),
        error_count=len(rejected),
        processing_time=time.perf_counter() - started,
    )
