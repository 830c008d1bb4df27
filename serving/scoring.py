"""Scoring as the service does it: through the prediction cache when there is one, with metrics.

`Scorer.score` is the one place a feature matrix becomes `Scores` on the served paths; the
probabilities come from the predictor (or, in the batched design, from the model service) and
are the same bits whether cached or not.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date

import anyio.from_thread
import numpy as np

from models.predictor import ChurnPredictor, Scores, scores_from_probability
from serving import metrics
from serving.cache import PredictionCache, cache_keys

ProbabilityFn = Callable[[np.ndarray], Awaitable[np.ndarray]]


@dataclass(frozen=True)
class Scorer:
    predictor: ChurnPredictor
    cache: PredictionCache | None

    async def inline(self, matrix: np.ndarray) -> np.ndarray:
        return self.predictor.churn_probability(matrix)

    async def score(
        self, matrix: np.ndarray, as_of: date, probability: ProbabilityFn | None = None
    ) -> Scores:
        """Scores of every row, with which rows came from the cache (`Scores.cached`)."""
        probability = probability or self.inline
        cached = np.zeros(len(matrix), bool)
        if self.cache is None or len(matrix) == 0:
            churn = await probability(matrix)
        else:
            keys = cache_keys(self.predictor.tag, as_of, matrix)
            cached, churn = from_cache(await self.cache.get_many(keys))
            if not cached.all():
                missing = ~cached
                churn[missing] = await probability(matrix[missing])
                await self.cache.set_many(missed(keys, missing), churn[missing])
        scores = scores_from_probability(churn, cached)
        metrics.record_scores(self.predictor.tag, scores)
        return scores

    def in_thread(self, as_of: date) -> "ThreadScorer":
        return ThreadScorer(self, as_of)


def from_cache(found: list[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """(which rows were found, P(churn) with the found ones filled in) of a cache lookup."""
    cached = np.array([v is not None for v in found], bool)
    churn = np.empty(len(found), np.float64)
    churn[cached] = [v for v in found if v is not None]
    return cached, churn


def missed(keys: list[str], missing: np.ndarray) -> list[str]:
    return [k for k, miss in zip(keys, missing, strict=True) if miss]


class ThreadScorer:
    """`Scorer` for code in a worker thread that calls `predictor.score(matrix)`.

    `models.predict.score_frame` takes any `MatrixScorer` (a predictor, or this); handing it
    this object puts the cache and the metrics in its path without a second copy of its logic.
    """

    def __init__(self, scorer: Scorer, as_of: date) -> None:
        self.scorer = scorer
        self.as_of = as_of

    @property
    def tag(self) -> str:
        return self.scorer.predictor.tag

    def score(self, matrix: np.ndarray) -> Scores:
        """As `Scorer.score`, with every per-row step (hashing the keys, the model, the
        metrics) here in the worker thread: only the Redis round trips run on the event loop,
        so a 1,000-row request does not stall the /predict calls sharing it."""
        predictor, cache = self.scorer.predictor, self.scorer.cache
        cached = np.zeros(len(matrix), bool)
        if cache is None or len(matrix) == 0:
            churn = predictor.churn_probability(matrix)
        else:
            keys = cache_keys(predictor.tag, self.as_of, matrix)
            cached, churn = from_cache(anyio.from_thread.run(cache.get_many, keys))
            if not cached.all():
                missing = ~cached
                churn[missing] = predictor.churn_probability(matrix[missing])
                anyio.from_thread.run(cache.set_many, missed(keys, missing), churn[missing])
        scores = scores_from_probability(churn, cached)
        metrics.record_scores(predictor.tag, scores)
        return scores
