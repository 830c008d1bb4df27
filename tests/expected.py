"""Expected answers worked out here, not by the code under test: the contract's rules written
out with their numbers, for checking what the service, the batch script and the bridge say."""

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import numpy as np


def confidence_level(p: float) -> str:
    """The level of P(churn) `p`: the predicted class's probability (`p` from 0.5 up, 1 - `p`
    below) is "high" from 0.9, "medium" from 0.7, "low" below."""
    predicted = p if p >= 0.5 else 1 - p
    return "high" if predicted >= 0.9 else "medium" if predicted >= 0.7 else "low"


def feature_matrix(flat: Iterable[Mapping[str, Any]], as_of: date) -> np.ndarray:
    """The model's input for valid flat records whose purchase dates are ISO dates: age, income,
    purchase_history and the days from last_purchase_date to `as_of`, one row each."""
    rows = [
        [r["age"], r["income"], r["purchase_history"],
         (as_of - date.fromisoformat(r["last_purchase_date"])).days]
        for r in flat
    ]  # fmt: skip
    return np.array(rows, np.float64).reshape(-1, 4)
