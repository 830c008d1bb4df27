"""The prediction log's rows: what one endpoint served, as the columns of its JSON lines.

BentoML's monitor knows the roles feature, prediction and target, and warns once per logged value
for any other, so what is not a model input is logged as `prediction` (what, when, for whom and
how it was scored). BentoML's default monitor overwrites `request_id` and `timestamp` with its
own trace id and local time: hence `prediction_request_id` and `scored_at`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

from models.contract import DATE_COLUMN, ERROR_COLUMN, FEATURES
from models.prediction import Predictions, new_request_ids
from models.schema import PredictRequest

# (name, BentoML role, BentoML data type) of each logged column, in file order.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("prediction_request_id", "prediction", "categorical"),
    ("endpoint", "prediction", "categorical"),
    ("batch_id", "prediction", "categorical"),
    ("customer_id", "prediction", "categorical"),
    ("model_version", "prediction", "categorical"),
    ("as_of", "prediction", "categorical"),
    ("age", "feature", "numerical"),
    ("income", "feature", "numerical"),
    ("purchase_history", "feature", "numerical"),
    ("last_purchase_date", "feature", "categorical"),
    ("days_since_purchase", "feature", "numerical"),
    ("churn_probability", "prediction", "numerical"),
    ("prediction", "prediction", "categorical"),
    ("confidence_level", "prediction", "categorical"),
    ("cached", "prediction", "categorical"),
    ("scored_at", "prediction", "categorical"),
    # The model that did not answer, scored beside it (serving/rollout.py); null without one.
    ("shadow_version", "prediction", "categorical"),
    ("shadow_probability", "prediction", "numerical"),
)
NAMES = tuple(name for name, _, _ in COLUMNS)
Columns = dict[str, list[Any]]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Shadow:
    """Per row, the model that did not answer and its P(churn) of the same customer."""

    versions: Sequence[str]
    probability: np.ndarray


@dataclass(frozen=True, slots=True)
class Served:
    """The predictions one request got: `request_ids` one per prediction, `dated` whether each
    customer gave a purchase date (else its days since the last purchase were used)."""

    endpoint: str
    predictions: Predictions
    request_ids: Sequence[str]
    dated: np.ndarray
    scored_at: datetime
    batch_id: str | None = None
    shadow: Shadow | None = None

    @property
    def rows(self) -> int:
        return len(self.predictions)

    def columns(self) -> Columns:
        p, n, s = self.predictions, len(self.predictions), self.shadow
        if len(self.request_ids) != n or len(self.dated) != n:
            raise ValueError(f"{self.endpoint}: {n} predictions, {len(self.request_ids)} ids")
        days = p.matrix[:, FEATURES.index("days_since_purchase")].tolist()
        day = p.as_of.toordinal()
        return {
            "prediction_request_id": list(self.request_ids),
            "endpoint": [self.endpoint] * n,
            "batch_id": [self.batch_id] * n,
            "customer_id": list(p.customer_ids),
            "model_version": p.row_versions(),
            "as_of": [p.as_of.isoformat()] * n,
            **{name: p.matrix[:, j].tolist() for j, name in enumerate(FEATURES)},
            # The date the customer gave is the one its days were counted from.
            "last_purchase_date": [
                date.fromordinal(day - int(d)).isoformat() if given else None
                for d, given in zip(days, self.dated.tolist(), strict=True)
            ],
            "churn_probability": p.scores.churn_probability.tolist(),
            "prediction": p.scores.prediction.tolist(),
            "confidence_level": p.scores.confidence_level.tolist(),
            "cached": p.cached.tolist(),
            "scored_at": [iso(self.scored_at)] * n,
            "shadow_version": [None] * n if s is None else list(s.versions),
            "shadow_probability": [None] * n if s is None else s.probability.tolist(),
        }


def dated(requests: Sequence[PredictRequest]) -> np.ndarray:
    """Which of `requests` gave a purchase date (the others gave their days since)."""
    return np.array([r.features.last_purchase_date is not None for r in requests], bool)


def frame_served(frame: pd.DataFrame, out: pd.DataFrame, predictions: Predictions) -> Served:
    """What one DataFrame request served: its answer `out` has no ids or times, so each row
    gets a `prediction_request_id` and the request a `batch_id` here."""
    valid = out[ERROR_COLUMN].isna().to_numpy()
    given = frame[DATE_COLUMN].notna().to_numpy() if DATE_COLUMN in frame.columns else valid
    n = len(predictions)
    now = datetime.now(UTC)
    return Served(
        "dataframe", predictions, new_request_ids(n), given[valid], now, new_request_ids(1)[0]
    )
