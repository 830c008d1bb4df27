"""A candidate model beside the served one (`CHURN_CANDIDATE_TAG`): shadow scoring, a canary,
and the comparison `GET /models/candidate` reports (docs/rollout.md).

Shadow: after an endpoint has built its answer it hands what it served to `Rollout.after`
instead of the prediction log. For a sampled request (`CHURN_SHADOW_SAMPLE`) that is one put
on a bounded queue; one thread scores the request's customers with both models there, adds the
pairs to the comparison and hands the record, with the other model's score, to the log. A full
queue drops the shadow scoring (counted), never the answer; a candidate that fails or is slow
is counted, or fills the queue, and never reaches a request.

Canary (`CHURN_CANARY_PERCENT` > 0): `Rollout.routes` sends each customer to the candidate or
the served model by a stable hash of its id (`models.rollout`); the candidate's answers come
from its own `Scorer`, whose cache keys hold its version. The shadow thread then scores each
customer with the model that did not answer, so the comparison covers both groups.

Each worker compares the traffic it served; `/models/candidate` reports the worker that
answered, the `churn_candidate_*` metrics the sum over workers.
"""

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from datetime import date
from typing import Any

import bentoml
import numpy as np
import pandas as pd
from fastapi.responses import JSONResponse

from models.comparison import ComparisonState, Thresholds, verdict
from models.explain import Reasons, explain
from models.frames import customer_ids
from models.predict import score_frame
from models.prediction import MODEL_VERSION
from models.predictor import ChurnPredictor, Scores, scores_from_probability
from models.rollout import sampled, to_candidate
from models.schema import PredictRequest
from monitoring.log import NoPredictionLog
from monitoring.records import Served, frame_served
from serving.app import INFRASTRUCTURE, ServiceError, routes, running_service
from serving.cache import PredictionCache
from serving.scoring import Scorer, ThreadScorer
from serving.settings import ServiceSettings
from serving.shadow import ShadowRunner

logger = logging.getLogger(__name__)


class Rollout:
    """The candidate, its scorer, the routing and the shadow runner of one worker."""

    def __init__(
        self,
        served: ChurnPredictor,
        candidate: ChurnPredictor,
        cache: PredictionCache | None,
        log: NoPredictionLog,
        settings: ServiceSettings,
    ) -> None:
        self.served, self.candidate = served, candidate
        self.candidate_scorer = Scorer(candidate, cache)
        self.log = log
        self.shadow_sample = settings.shadow_sample
        self.canary_percent = settings.canary_percent
        self.thresholds = Thresholds(
            settings.candidate_min_pairs,
            settings.promote_min_agreement,
            settings.promote_max_p95_delta,
            settings.promote_max_psi,
        )
        self.runner = ShadowRunner(
            (served.tag, served.churn_probability),
            (candidate.tag, candidate.churn_probability),
            log,
            settings.shadow_queue_size,
            ComparisonState().threshold,
        )

    @classmethod
    def start(
        cls,
        settings: ServiceSettings,
        served: ChurnPredictor,
        cache: PredictionCache | None,
        log: NoPredictionLog,
        stored: bentoml.Model | None,
    ) -> "Rollout | None":
        """The rollout of `stored` (the service's `candidate_model`), or None without one."""
        if stored is None:
            return None
        candidate = ChurnPredictor.from_stored(stored, settings.model_threads)
        logger.info("candidate %s: %s", candidate.tag, cls.describe(settings))
        return cls(served, candidate, cache, log, settings)

    @staticmethod
    def describe(settings: ServiceSettings) -> str:
        if settings.canary_percent > 0:
            return f"canary, {settings.canary_percent}% of customers"
        return f"shadow, {settings.shadow_sample:.0%} of requests"

    @property
    def mode(self) -> str:
        return "canary" if self.canary_percent > 0 else "shadow"

    def routes(self, keys: Sequence[str]) -> np.ndarray:
        """Per routing key (customer id, else request id), whether the candidate answers."""
        if self.canary_percent <= 0:
            return np.zeros(len(keys), bool)
        return to_candidate(keys, self.canary_percent)

    def choose(
        self, request: PredictRequest, scorer: Scorer
    ) -> tuple[Scorer, ChurnPredictor, str | None]:
        """The scorer and model that answer one /predict request, and the request id the
        answer gets when it was routed by one (a request without a customer id)."""
        if self.canary_percent <= 0:
            return scorer, scorer.predictor, None
        key = request.customer_id or request.request_id or str(uuid.uuid4())
        chosen = self.candidate_scorer if self.routes([key])[0] else scorer
        return chosen, chosen.predictor, None if request.customer_id else key

    def score_rows(
        self, served: ThreadScorer, keys: Sequence[str | None], matrix: np.ndarray, as_of: date
    ) -> tuple[Scores, list[str] | None]:
        """Scores of a batch's rows, each by the model its key routes it to, and the rows'
        model versions (None: all by the served model). A row without a key goes by a fresh
        random id."""
        picked = self.routes([k or str(uuid.uuid4()) for k in keys])
        if not picked.any():
            return served.score(matrix), None
        churn = np.empty(len(matrix), np.float64)
        cached = np.zeros(len(matrix), bool)
        for scorer, rows in ((served, ~picked), (self.candidate_scorer.in_thread(as_of), picked)):
            if rows.any():
                part = scorer.score(matrix[rows])
                churn[rows] = part.churn_probability
                cached[rows] = False if part.cached is None else part.cached
        tags = [self.candidate.tag if p else self.served.tag for p in picked.tolist()]
        return scores_from_probability(churn, cached), tags

    def explain_rows(self, matrix: np.ndarray, versions: list[str] | None) -> Reasons:
        """Reason codes of each row from the model that scored it."""
        reasons = explain(self.served, matrix)
        if versions is None:
            return reasons
        picked = np.array([v == self.candidate.tag for v in versions], bool)
        other = explain(self.candidate, matrix)
        return Reasons(
            np.where(picked, other.base_log_odds, reasons.base_log_odds),
            np.where(picked[:, None], other.contributions, reasons.contributions),
            matrix,
            reasons.exact and other.exact,
        )

    def score_frame(
        self, served: ThreadScorer, frame: pd.DataFrame
    ) -> tuple[pd.DataFrame, list[Served]]:
        """`models.predict.score_frame` of a DataFrame request, each row by the model its
        customer id routes it to; under a canary the answer gets a `model_version` column.
        Returns the answer and what each model served, for the log."""
        candidate = self.candidate_scorer.in_thread(served.as_of)
        picked = self.routes([k or str(uuid.uuid4()) for k in customer_ids(frame).tolist()])
        groups: list[tuple[ThreadScorer, np.ndarray | None]] = [
            (served, ~picked),
            (candidate, picked),
        ]
        if not picked.any() or picked.all():  # one model: the frame as it is
            groups = [(candidate if len(picked) and picked.all() else served, None)]
        outs, records = [], []
        for scorer, rows in groups:
            part = frame if rows is None else frame[rows].reset_index(drop=True)
            out, predictions = score_frame(scorer, part, served.as_of, scorer.scorer.predictor)
            records.append(frame_served(part, out, predictions))
            if self.canary_percent > 0:
                out[MODEL_VERSION] = scorer.tag
            if rows is not None:
                out.index = pd.Index(np.flatnonzero(rows))
            outs.append(out)
        if len(outs) == 1:
            return outs[0], records
        return pd.concat(outs).sort_index().reset_index(drop=True), records

    def after(self, served: Served) -> None:
        """What an endpoint served, once its answer is built: shadow-scored or logged."""
        if served.rows and sampled(self.shadow_sample):
            self.runner.submit(served)
        else:
            self.log.hand_over(served)

    def report(self) -> dict[str, Any]:
        shadow = self.runner.report()
        comparison = shadow.pop("comparison")
        judged = verdict(comparison, shadow["candidate_errors"], self.thresholds)
        return {
            "served": self.served.tag,
            "candidate": self.candidate.tag,
            "mode": self.mode,
            "shadow_sample": self.shadow_sample,
            "canary_percent": self.canary_percent,
            "comparison": comparison.as_dict(),
            **shadow,
            "verdict": judged.decision.value,
            "reasons": judged.reasons,
            "thresholds": dataclasses.asdict(self.thresholds),
        }

    def close(self) -> None:
        self.runner.close()


@routes.get(
    "/models/candidate",
    tags=INFRASTRUCTURE,
    summary="The candidate model against the served one",
    description="Over the traffic this worker has shadow-scored: pairs compared, decision "
    "agreement and the 2x2 table, mean and p95 of |Δp|, PSI, the candidate's errors and CPU "
    "per call against the served model's, and the verdict (promote | hold | reject). 404 "
    "without `CHURN_CANDIDATE_TAG`. Promote and roll back: docs/rollout.md.",
    responses={404: {"model": ServiceError, "description": "No candidate configured"}},
)
def candidate_report() -> Any:
    service = running_service()
    rollout = getattr(service, "rollout", None)
    if rollout is None:
        status = 503 if service is None else 404
        message = "service is starting" if service is None else "no candidate configured"
        return JSONResponse({"error": message}, status_code=status)
    return rollout.report()
