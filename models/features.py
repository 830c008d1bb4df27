"""Feature engineering, written once: raw customer fields to the model's matrix (`FEATURES`)."""

from collections.abc import Sequence
from datetime import date

import numpy as np

from models.contract import DATE_COLUMN
from models.errors import FieldError
from models.frames import ValidatedFrame
from models.schema import CustomerFeatures
from models.validation import describe


def feature_matrix(
    age: np.ndarray,
    income: np.ndarray,
    purchase_history: np.ndarray,
    days_since_purchase: np.ndarray,
) -> np.ndarray:
    """The (n, 4) float64 matrix the scaler and model were fitted on (order: `FEATURES`)."""
    matrix = np.empty((len(age), 4), np.float64)
    for j, column in enumerate((age, income, purchase_history, days_since_purchase)):
        matrix[:, j] = column
    return matrix


def days_since_purchase(last_purchase: date, as_of: date) -> int:
    """Whole days from the last purchase to the as-of date (both calendar dates in UTC)."""
    return as_of.toordinal() - last_purchase.toordinal()


def future_date_error(features: CustomerFeatures, as_of: date) -> FieldError | None:
    """The one contract rule pydantic cannot check alone, because it depends on the as-of date."""
    given = features.last_purchase_date
    if given is not None and given > as_of:
        return describe(DATE_COLUMN, "future_date", as_of)
    return None


def recency(features: CustomerFeatures, as_of: date) -> int:
    """Days since the last purchase: from the date where given, else the days as sent."""
    if features.last_purchase_date is not None:
        return days_since_purchase(features.last_purchase_date, as_of)
    if features.days_since_purchase is None:  # the schema lets no record through without one
        raise ValueError("a record with neither last_purchase_date nor days_since_purchase")
    return features.days_since_purchase


def matrix_from_records(records: Sequence[CustomerFeatures], as_of: date) -> np.ndarray:
    """The feature matrix of already-validated records (the JSON and Kafka paths)."""
    return feature_matrix(
        np.array([r.age for r in records], np.float64),
        np.array([r.income for r in records], np.float64),
        np.array([r.purchase_history for r in records], np.float64),
        np.array([recency(r, as_of) for r in records], np.float64),
    )


def matrix_from_frame(checked: ValidatedFrame) -> np.ndarray:
    """The feature matrix of the valid rows of a validated frame (the DataFrame and batch paths)."""
    ok = checked.valid
    return feature_matrix(
        checked.numeric["age"][ok],
        checked.numeric["income"][ok],
        checked.numeric["purchase_history"][ok],
        checked.days_since_purchase[ok],
    )
