"""A reproducible synthetic customer population with a documented churn process.

Generating process (all draws from one `numpy.random.Generator` seeded by `seed`):
- age ~ Normal(42, 14) clipped to [18, 90]; income ~ LogNormal(ln 50,000, 0.5);
- purchase_history ~ Poisson(2 + 8 * tenure) with tenure ~ Beta(2, 2), so frequency varies;
- days_since_purchase ~ Exponential(mean 45) rounded down, capped at 1,500 (recency);
- churn ~ Bernoulli(sigmoid(z)) with
  z = b0 + 0.025 * (days - 45) - 0.18 * (purchases - 6) - 0.6 * ln(income / 50,000)
        - 0.02 * (age - 42)
  i.e. churn rises with time since the last purchase and falls with frequency, income and
  age; b0 is solved so that about 20% of customers churn.
"""

from datetime import date

import numpy as np
import pandas as pd

from models.contract import DATE_COLUMN, ID_COLUMN

TARGET_CHURN_RATE = 0.20
REFERENCE_AS_OF = date(2026, 1, 1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _intercept_for_rate(z: np.ndarray, rate: float) -> float:
    low, high = -20.0, 20.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if _sigmoid(z + mid).mean() < rate else (low, mid)
    return (low + high) / 2


def synthetic_customers(n: int, seed: int = 42, as_of: date = REFERENCE_AS_OF) -> pd.DataFrame:
    """n customers with the raw input columns, the derived recency and the `churned` label."""
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(42, 14, n), 18, 90).round(0)
    income = rng.lognormal(np.log(50_000), 0.5, n).round(2)
    purchases = rng.poisson(2 + 8 * rng.beta(2, 2, n))
    days = np.minimum(np.floor(rng.exponential(45, n)), 1500).astype(np.int64)
    z = (
        0.025 * (days - 45)
        - 0.18 * (purchases - 6)
        - 0.6 * np.log(income / 50_000)
        - 0.02 * (age - 42)
    )
    churned = rng.random(n) < _sigmoid(z + _intercept_for_rate(z, TARGET_CHURN_RATE))
    base = np.datetime64(as_of, "D")
    return pd.DataFrame(
        {
            ID_COLUMN: [f"c-{i:07d}" for i in range(n)],
            "age": age,
            "income": income,
            "purchase_history": purchases.astype(np.int64),
            DATE_COLUMN: (base - days.astype("timedelta64[D]")).astype(str),
            "days_since_purchase": days,
            "churned": churned.astype(np.int64),
        }
    )
