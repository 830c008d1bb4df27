"""The churn model served by BentoML: JSON, batch and DataFrame prediction endpoints.

bentoml serve            # http://127.0.0.1:3000, OpenAPI UI at /
"""

import time
import uuid
from datetime import UTC, datetime

import bentoml
import pandas as pd

from models.contract import FEATURES
from models.errors import InvalidInputError
from models.features import future_date_error
from models.predict import score_frame, score_requests, split_requests
from models.predictor import ChurnPredictor, Scores, resolve_tag
from models.schema import BatchRequest, BatchResponse, ItemError, Prediction, PredictRequest
from serving.http import http_errors
from serving.settings import ServiceSettings


@bentoml.service(name="churn_service", traffic={"timeout": 30})
class ChurnService:
    # Resolved from the store when the service starts; `bentoml build` pins the exact version.
    bento_model = bentoml.models.BentoModel(resolve_tag())

    def __init__(self) -> None:
        self.settings = ServiceSettings()
        self.predictor = ChurnPredictor.from_stored(self.bento_model)

    @bentoml.api(route="/predict")
    @http_errors
    async def predict(self, request: PredictRequest, /) -> Prediction:
        """Churn prediction for one customer."""
        started, as_of = time.perf_counter(), self.settings.as_of()
        if err := future_date_error(request.features, as_of):
            raise InvalidInputError([err], loc_prefix=("features",))
        scores = score_requests(self.predictor, [request], as_of)
        return self._prediction(request, scores, 0, started)

    @bentoml.api(route="/predict/batch")
    @http_errors
    def predict_batch(self, batch: BatchRequest, /) -> BatchResponse:
        """Up to 1000 customers: invalid items are reported in `errors`, the rest scored at once."""
        started, as_of = time.perf_counter(), self.settings.as_of()
        valid, rejected = split_requests(batch.requests, as_of)
        scores = score_requests(self.predictor, [r for _, r in valid], as_of)
        return BatchResponse(
            batch_id=batch.batch_id or str(uuid.uuid4()),
            predictions=[self._prediction(r, scores, i, started) for i, (_, r) in enumerate(valid)],
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

    @bentoml.api(route="/predict/dataframe")
    def predict_dataframe(self, frame: pd.DataFrame, /) -> pd.DataFrame:
        """Customers in (flat columns), predictions out, with an `error` column per row."""
        return score_frame(self.predictor, frame, self.settings.as_of())

    def _prediction(
        self, request: PredictRequest, scores: Scores, i: int, started: float
    ) -> Prediction:
        return Prediction(
            customer_id=request.customer_id,
            **scores.row(i),
            model_version=self.predictor.tag,
            request_id=request.request_id or str(uuid.uuid4()),
            processing_time=time.perf_counter() - started,
            timestamp=datetime.now(UTC),
            features_used=list(FEATURES),
        )
