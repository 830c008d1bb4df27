"""The prediction record: what every path says about the customers it scored, built once.

`Predictions` holds n scored customers column-wise (who, what the model saw, the scores, the
model, the as-of date, and reason codes when asked for). Each path renders it in its own form:
the HTTP answers and the Kafka bridge's in-process results take `row(i)`, the DataFrame endpoint
and the batch script columns (`reason_columns` for the reason codes), the prediction log all of
it (`monitoring/records.py`).
"""

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from models.contract import CONFIDENCE_LEVELS, FEATURES, ID_COLUMN
from models.explain import CONTRIBUTION_COLUMNS, REASON_COLUMNS, TOP_REASONS, Reasons
from models.predictor import Scores

MODEL_VERSION = "model_version"
# The fields of one prediction on every path, in order (reason codes come after, when asked).
PREDICTION_FIELDS = (
    ID_COLUMN,
    "prediction",
    "churn_probability",
    "probability",
    "confidence_level",
    MODEL_VERSION,
)
FEATURE_NAMES = np.array(FEATURES, object)


@dataclass(frozen=True, slots=True)
class Predictions:
    """n scored customers; every array is aligned with the rows of `matrix`."""

    customer_ids: Sequence[str | None]
    matrix: np.ndarray  # (n, len(FEATURES)): the model's input
    scores: Scores
    model_version: str
    as_of: date
    reasons: Reasons | None = None
    # Each row's model version where the rows' models differ (a canary: serving/rollout.py).
    versions: Sequence[str] | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def row(self, i: int, with_reasons: bool = True) -> dict[str, Any]:
        """Customer i's prediction (`PREDICTION_FIELDS`, then its reasons when there are any
        and they are asked for)."""
        s = self.scores
        out = {
            ID_COLUMN: self.customer_ids[i],
            "prediction": int(s.prediction[i]),
            "churn_probability": float(s.churn_probability[i]),
            "probability": float(s.probability[i]),
            "confidence_level": CONFIDENCE_LEVELS[s.band[i]],
            MODEL_VERSION: self.model_version if self.versions is None else self.versions[i],
        }
        if self.reasons is not None and with_reasons:
            out.update(self.reasons.row(i))
        return out

    def row_versions(self) -> list[str]:
        return [self.model_version] * len(self) if self.versions is None else list(self.versions)

    @property
    def cached(self) -> np.ndarray:
        """Which rows came from the prediction cache (none without one)."""
        if self.scores.cached is None:
            return np.zeros(len(self), bool)
        return self.scores.cached


def reason_columns(reasons: Reasons) -> dict[str, np.ndarray]:
    """The tabular form of reason codes: `reason_k` (the feature's index into FEATURES, int8)
    and `contribution_k` (log-odds) for the k = 1..TOP_REASONS largest, per row."""
    features, contributions = reasons.top(TOP_REASONS)
    out: dict[str, np.ndarray] = {}
    for k, (name, value) in enumerate(zip(REASON_COLUMNS, CONTRIBUTION_COLUMNS, strict=True)):
        out[name], out[value] = features[k], contributions[k]
    return out


def new_request_ids(n: int) -> list[str]:
    """n random (version 4) UUIDs from one read of the OS's random source, not n reads."""
    pool = os.urandom(16 * n)
    return [str(uuid.UUID(bytes=pool[16 * i : 16 * i + 16], version=4)) for i in range(n)]
