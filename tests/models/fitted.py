"""Feature rows and a fitted non-linear model for the unit tests that need more than the packaged
logistic model: reason codes' model-agnostic method and the cap on native threads."""

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.preprocessing import StandardScaler

from models.predictor import ChurnPredictor


def customers(n: int, seed: int = 7) -> np.ndarray:
    """n synthetic feature rows, columns in FEATURES order."""
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [
            rng.uniform(18, 90, n),
            rng.lognormal(np.log(50_000), 0.6, n),
            rng.poisson(6, n).astype(float),
            rng.exponential(60, n).round(),
        ]
    )


def boosted(native_threads: int | None = None) -> ChurnPredictor:
    """A hist-gradient-boosting predictor (OpenMP inside) fitted on `customers`."""
    x = customers(3000, seed=1)
    y = x[:, 3] / 60 - x[:, 2] / 6 + np.random.default_rng(2).normal(0, 1, len(x)) > 0
    scaler = StandardScaler().fit(x)
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0)
    model.fit(scaler.transform(x), y.astype(int))
    return ChurnPredictor(model, scaler, "boosted:test", {}, native_threads=native_threads)
