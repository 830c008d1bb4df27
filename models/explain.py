"""Reason codes: how much each feature moves one customer's churn risk, in log-odds.

Every contribution is measured against the same reference customer, the training mean of each
feature (from the model's metadata profile, else the scaler's `mean_`), so both methods answer
the same question: "what does this feature's value, as opposed to an average one, do to the
risk?"

- Scaler + logistic regression (the packaged model): exact. The logit is
  `intercept + sum_j coef_j * z_j` with `z_j = (x_j - mean_j) / scale_j`, so contribution_j =
  `coef_j * z_j` and `base_log_odds + sum(contributions) = logit(churn_probability)` to rounding.
- Any other classifier: each feature in turn is set to its reference value and the change in
  the logit is its contribution; `base_log_odds` is the logit at the reference customer. The
  parts need not add up exactly (interactions). Cost: one extra scoring call over 4n+1 rows for
  n customers, vectorized.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import logit

from models.contract import FEATURES
from models.predictor import ChurnPredictor

# The tabular paths (batch files, the DataFrame endpoint) carry each row's largest few.
TOP_REASONS = 3
REASON_COLUMNS = tuple(f"reason_{k}" for k in range(1, TOP_REASONS + 1))
CONTRIBUTION_COLUMNS = tuple(f"contribution_{k}" for k in range(1, TOP_REASONS + 1))

# Probabilities are clipped this far from 0 and 1 before the logit, so that a saturated model
# gives large finite contributions instead of infinities.
_EPS = 1e-15


@dataclass(frozen=True, slots=True)
class Reasons:
    """Per-row contributions (n, len(FEATURES)) in log-odds, and each row's base."""

    base_log_odds: np.ndarray  # (n,)
    contributions: np.ndarray  # (n, len(FEATURES)), columns in FEATURES order
    values: np.ndarray  # the feature matrix they explain
    exact: bool  # True for the linear model: base + sum = logit(churn_probability)

    def __len__(self) -> int:
        return len(self.base_log_odds)

    def _ranks(self) -> np.ndarray:
        """(k, n) int8: each feature's place per row, 0 for the largest absolute contribution
        (ties: FEATURES order). Pairwise comparisons, k(k-1) vectorized passes over contiguous
        columns, since for a handful of features that beats a row-wise `np.argsort`."""
        size = np.ascontiguousarray(np.abs(self.contributions).T)
        k, n = size.shape
        rank = np.zeros((k, n), np.int8)
        for j in range(k):
            for i in range(k):
                if i != j:  # i ranks above j when larger, or equal and earlier
                    rank[j] += size[i] >= size[j] if i < j else size[i] > size[j]
        return rank

    def order(self) -> np.ndarray:
        """(n, k) feature indices per row, largest absolute contribution first."""
        return self.top(self.contributions.shape[1])[0].T

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(feature index, contribution) of the k largest contributions of every row, each as
        a (k, n) array: row p holds every customer's p-th reason, contiguous for a column."""
        rank = self._ranks()
        features = np.zeros((k, rank.shape[1]), np.int8)
        for p in range(k):
            for j in range(1, rank.shape[0]):
                features[p] += np.int8(j) * (rank[j] == p)
        by_feature = np.ascontiguousarray(self.contributions.T)
        contributions = np.take_along_axis(by_feature, features.astype(np.intp), axis=0)
        return features, contributions

    def row(self, i: int) -> dict[str, Any]:
        """One customer's reasons as the API returns them (the order of `order`, computed in
        plain Python: on one row, the array version's fixed costs outweigh the work)."""
        contributions = self.contributions[i].tolist()
        values = self.values[i].tolist()
        ranked = sorted(range(len(contributions)), key=lambda j: -abs(contributions[j]))
        reasons = [
            {
                "feature": FEATURES[j],
                "value": float(values[j]),
                "contribution": contributions[j],
                "effect": "raises" if contributions[j] > 0 else "lowers",
            }
            for j in ranked
        ]
        return {"base_log_odds": float(self.base_log_odds[i]), "reasons": reasons}


def reference_values(predictor: ChurnPredictor) -> np.ndarray:
    """The reference customer: each feature's training mean."""
    profile = predictor.metadata.get("training_data", {}).get("features", {})
    if all(name in profile for name in FEATURES):
        return np.array([profile[name]["mean"] for name in FEATURES], np.float64)
    if predictor.linear is not None:
        return predictor.linear.mean.astype(np.float64)
    mean = getattr(predictor.scaler, "mean_", None)
    if mean is None:
        raise ValueError(f"model {predictor.tag} has no training profile to explain against")
    return np.asarray(mean, np.float64)


def explain(predictor: ChurnPredictor, matrix: np.ndarray) -> Reasons:
    """Contributions of every feature for every row of `matrix` (columns in FEATURES order)."""
    n, k = matrix.shape[0], len(FEATURES)
    linear = predictor.linear
    if linear is not None:
        # The operations of LinearShortcut.churn_probability, kept per feature, in place.
        contributions = np.subtract(matrix, linear.mean, dtype=np.float64)
        contributions /= linear.scale
        contributions *= linear.coef_t.reshape(-1)
        base = np.full(n, float(linear.intercept[0]))
        return Reasons(base, contributions, matrix, exact=True)
    reference = reference_values(predictor)
    if n == 0:
        return Reasons(np.empty(0), np.empty((0, k)), matrix, exact=False)
    # One call: the rows as they are, each with one feature set to its reference, and the
    # reference customer itself.
    swapped = np.repeat(matrix[np.newaxis, :, :], k, axis=0)  # (k, n, k)
    for j in range(k):
        swapped[j, :, j] = reference[j]
    stacked = np.vstack([matrix, swapped.reshape(k * n, k), reference[np.newaxis, :]])
    p = np.clip(predictor.churn_probability(stacked), _EPS, 1 - _EPS)
    log_odds = logit(p)
    actual = log_odds[:n]
    without = log_odds[n : n + k * n].reshape(k, n).T  # (n, k)
    base = np.full(n, log_odds[-1])
    return Reasons(base, actual[:, np.newaxis] - without, matrix, exact=False)
