"""Putting a scaler and a classifier into the BentoML model store, in the one layout we serve."""

import platform
from typing import Any

import bentoml
import joblib
import numpy as np
import pandas as pd
import sklearn

from models.contract import FEATURES, MODEL_FILE, MODEL_NAME, SCALER_FILE

DRIFT_BINS = 10


def feature_profile(matrix: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per-feature summary of the training data, kept in the model's metadata for drift checks.

    `bin_edges` are the inner decile edges and `bin_fractions` the share of training rows in
    each of the bins they make, which is what a population stability index compares against.
    """
    profile = {}
    for j, name in enumerate(FEATURES):
        col = matrix[:, j]
        edges = np.unique(np.quantile(col, np.linspace(0, 1, DRIFT_BINS + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, col, side="right"), minlength=len(edges) + 1)
        profile[name] = {
            "mean": float(col.mean()),
            "std": float(col.std()),
            "min": float(col.min()),
            "max": float(col.max()),
            "bin_edges": [float(e) for e in edges],
            "bin_fractions": [float(c) for c in counts / len(col)],
        }
    return profile


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "joblib": joblib.__version__,
        "bentoml": bentoml.__version__,
    }


def save_to_store(
    model: Any, scaler: Any, metadata: dict[str, Any], labels: dict[str, str]
) -> bentoml.Model:
    """Save model and scaler as joblib files under `churn_model:<new version>`."""
    full = {"features": list(FEATURES), "library_versions": library_versions(), **metadata}
    with bentoml.models.create(MODEL_NAME, labels=labels, metadata=full) as stored:
        joblib.dump(model, stored.path_of(MODEL_FILE))
        joblib.dump(scaler, stored.path_of(SCALER_FILE))
    return stored
