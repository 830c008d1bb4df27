"""Loading the packaged model from the BentoML store, and scoring a feature matrix in one call."""

import threading
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import bentoml
import joblib
import numpy as np
from bentoml.exceptions import NotFound
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from models.contract import (
    CONFIDENCE_LEVELS,
    DECISION_THRESHOLD,
    FEATURES,
    HIGH_CONFIDENCE,
    MEDIUM_CONFIDENCE,
    MODEL_FILE,
    SCALER_FILE,
)
from models.errors import ModelUnavailableError

_LEVEL_OBJECTS = np.array(CONFIDENCE_LEVELS, dtype=object)


@dataclass(frozen=True, slots=True)
class Scores:
    """Column-wise scores of n customers, aligned with the rows of the scored matrix."""

    prediction: np.ndarray  # int64, 1 = churn
    churn_probability: np.ndarray  # float64, P(churn)
    probability: np.ndarray  # float64, P(predicted class)
    band: np.ndarray  # int8: index of each row's level in CONFIDENCE_LEVELS
    cached: np.ndarray | None = None  # bool: rows the service's cache answered (None: no cache)

    def __len__(self) -> int:
        return len(self.prediction)

    @property
    def confidence_level(self) -> np.ndarray:
        """Each row's level as text ("high" | "medium" | "low", an object array), built when
        asked for: the batch script writes `band` as a dictionary column and never needs it."""
        return _LEVEL_OBJECTS[self.band]


class MatrixScorer(Protocol):
    """What scores a feature matrix in one call: a `ChurnPredictor`, or the service's
    `serving.scoring.ThreadScorer` (the same predictor behind the cache and the metrics)."""

    @property
    def tag(self) -> str: ...

    def score(self, matrix: np.ndarray, /) -> Scores: ...


def scores_from_probability(
    churn_probability: np.ndarray, cached: np.ndarray | None = None
) -> Scores:
    """Decision, class probability and confidence band from P(churn), per the contract."""
    prediction = (churn_probability >= DECISION_THRESHOLD).astype(np.int64)
    probability = np.where(prediction == 1, churn_probability, 1.0 - churn_probability)
    # Indices into the three levels: building one string per row cost more than predict_proba
    # itself on large batches.
    band = (probability >= MEDIUM_CONFIDENCE).astype(np.int8) + (probability >= HIGH_CONFIDENCE)
    return Scores(prediction, churn_probability, probability, band, cached)


@dataclass(frozen=True, slots=True)
class LinearShortcut:
    """A fitted StandardScaler + binary LogisticRegression, evaluated with the very numpy
    operations sklearn's `transform` and `predict_proba` run (`x -= mean_`, `x /= scale_`,
    `x @ coef_.T + intercept_`, `expit`) but without their per-call input validation, which
    costs more than the arithmetic on one-row requests. tests/models pin it to `predict_proba`
    bit for bit; any other model or scaler goes through `predict_proba` itself.
    """

    mean: np.ndarray
    scale: np.ndarray
    coef_t: np.ndarray
    intercept: np.ndarray

    @classmethod
    def of(cls, model: Any, scaler: Any) -> "LinearShortcut | None":
        if type(model) is not LogisticRegression or type(scaler) is not StandardScaler:
            return None
        if not (scaler.with_mean and scaler.with_std) or model.coef_.shape[0] != 1:
            return None
        if np.asarray(model.classes_).tolist() != [0, 1]:
            return None
        return cls(scaler.mean_, scaler.scale_, model.coef_.T, model.intercept_)

    def churn_probability(self, matrix: np.ndarray) -> np.ndarray:
        x = matrix.astype(np.float64, copy=True)
        x -= self.mean
        x /= self.scale
        return expit((x @ self.coef_t + self.intercept).reshape(-1))


_native_threads = threading.local()


def limit_native_threads(n: int) -> None:
    """At most `n` threads in the model's native code (OpenMP, BLAS) for calls from this
    thread. OpenMP's limit belongs to the calling thread, so it is set once per thread."""
    if getattr(_native_threads, "limit", None) != n:
        threadpool_limits(n)  # kept, not restored: this thread's setting from now on
        _native_threads.limit = n


@dataclass(frozen=True)
class ChurnPredictor:
    """A fitted scaler and classifier with the store tag and metadata they came with.

    `native_threads` caps the threads of the model's own parallel code per call (None: the
    libraries' default, all cores). The service sets it to 1: its parallelism comes from
    concurrent requests, and on a one-row call a second OpenMP thread only spins, taking a core
    from the event loop. The answers are the same bits either way: each row is computed by one
    thread, in the same order.
    """

    model: Any
    scaler: Any
    tag: str
    metadata: dict[str, Any]
    linear: LinearShortcut | None = None
    native_threads: int | None = None

    def churn_probability(self, matrix: np.ndarray) -> np.ndarray:
        """P(churn) for each row: one vectorized call (`predict_proba`) however many rows."""
        n = len(matrix)
        if n == 0:
            return np.empty(0, np.float64)
        if n == 1:
            # BLAS scores a lone row with a matrix-vector kernel whose rounding differs from the
            # matrix-matrix kernel used for n >= 2 (last-bit differences, seen with OpenBLAS).
            # Scoring it as two rows gives the same bits as in any batch, on every path.
            matrix = np.vstack([matrix, matrix])
        if self.linear is not None:
            return self.linear.churn_probability(matrix)[:n]
        if self.native_threads is not None:
            limit_native_threads(self.native_threads)
        proba = self.model.predict_proba(self.scaler.transform(matrix))
        return proba[:n, self._churn_column]

    def score(self, matrix: np.ndarray) -> Scores:
        return scores_from_probability(self.churn_probability(matrix))

    @cached_property
    def _churn_column(self) -> int:
        return int(np.flatnonzero(np.asarray(self.model.classes_) == 1)[0])

    @classmethod
    def from_stored(
        cls, stored: bentoml.Model, native_threads: int | None = None
    ) -> "ChurnPredictor":
        """The predictor held by a model-store entry (as the service's `BentoModel` resolves it)."""
        # Artifacts fitted on a DataFrame warn on every ndarray call; the column order is checked
        # against FEATURES when they are packaged, so the warning carries no information here.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        try:
            model = joblib.load(stored.path_of(MODEL_FILE))
            scaler = joblib.load(stored.path_of(SCALER_FILE))
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(f"model {stored.tag} does not load: {exc}") from exc
        metadata = dict(stored.info.metadata)
        features = metadata.get("features", FEATURES)
        if not isinstance(features, list | tuple) or list(features) != list(FEATURES):
            raise ModelUnavailableError(f"model {stored.tag} was fitted on other features")
        linear = LinearShortcut.of(model, scaler)
        return cls(model, scaler, str(stored.tag), metadata, linear, native_threads)


def load_predictor(tag: str) -> ChurnPredictor:
    """A ready predictor from the BentoML model store (`tag`: e.g. `settings.tag()`)."""
    try:
        stored = bentoml.models.get(tag)
    except NotFound as exc:
        raise ModelUnavailableError(
            f"no model {tag!r} in the BentoML store; run `python -m models.train` first"
        ) from exc
    return ChurnPredictor.from_stored(stored)
