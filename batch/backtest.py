"""The backtest's maths on labelled customers: ROC AUC, log loss and Brier of the served and the
candidate model (scikit-learn's metrics), and a paired bootstrap 95% interval of each
difference (candidate − served).

The bootstrap resamples customers with replacement, `resamples` times, from one seeded numpy
Generator; both models are scored on the same resample (paired), so the interval is of the
difference on the same customers. A resample is a vector of counts (how often each customer
was drawn), and every metric is computed for a block of resamples at once as a count-weighted
metric: a customer drawn twice weighs twice, which is what scoring the resampled rows gives.
The interval is the 2.5th and 97.5th percentiles of the resampled differences.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

METRICS = ("roc_auc", "log_loss", "brier")
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20
# Resamples of a block: their count matrix (block x customers) stays near this many cells.
_BLOCK_CELLS = 2_000_000
# sklearn's log_loss clips probabilities to [eps, 1 - eps] of their dtype.
_EPS = float(np.finfo(np.float64).eps)


def point_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    """scikit-learn's ROC AUC (None with one class only), log loss and Brier score."""
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p, pos_label=1)),
    }


def weighted_metrics(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric for every row of the count matrix `w` (resamples x customers)."""
    return _Scored.of(y, p).metrics(np.asarray(w, np.float64))


@dataclass(frozen=True)
class _Scored:
    """One model's scores on the labelled customers, prepared once for every resample."""

    y: np.ndarray
    p: np.ndarray
    losses: np.ndarray  # each customer's log loss
    order: np.ndarray  # customers by ascending score
    ys: np.ndarray  # y in that order
    ties: np.ndarray | None  # where each group of equal scores starts (None: no ties)

    @classmethod
    def of(cls, y: np.ndarray, p: np.ndarray) -> "_Scored":
        y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
        q = np.clip(p, _EPS, 1 - _EPS)
        losses = -np.where(y == 1, np.log(q), np.log1p(-q))
        order = np.argsort(p, kind="stable")
        sorted_p = p[order]
        starts = np.flatnonzero(np.r_[True, sorted_p[1:] != sorted_p[:-1]])
        ties = starts if len(starts) < len(p) else None
        return cls(y, p, losses, order, y[order], ties)

    def metrics(self, w: np.ndarray) -> dict[str, np.ndarray]:
        total = w.sum(axis=1)
        return {
            "roc_auc": self._auc(w),
            "log_loss": (w @ self.losses) / total,
            "brier": (w @ (self.p - self.y) ** 2) / total,
        }

    def _auc(self, w: np.ndarray) -> np.ndarray:
        """The probability that a drawn churner scores above a drawn non-churner, ties counting
        half (the Mann-Whitney form of the ROC AUC), per row of `w`; NaN without both classes."""
        ws = w[:, self.order]
        pos = ws * self.ys
        neg = np.subtract(ws, pos, out=ws)
        if self.ties is not None:  # a tie group is one score: its weights add up
            pos = np.add.reduceat(pos, self.ties, axis=1)
            neg = np.add.reduceat(neg, self.ties, axis=1)
        pairs = pos.sum(axis=1) * neg.sum(axis=1)
        # Negatives below each score, plus half of those tied with it.
        below = np.cumsum(neg, axis=1)
        below -= 0.5 * neg
        wins = np.einsum("ij,ij->i", pos, below)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, wins / pairs, np.nan)


def resample_counts(rng: np.random.Generator, n: int, block: int) -> np.ndarray:
    """`block` bootstrap resamples of n customers, as counts per customer (block x n)."""
    drawn = rng.integers(0, n, size=(block, n)) + (np.arange(block) * n)[:, None]
    return np.bincount(drawn.ravel(), minlength=block * n).reshape(block, n)


@dataclass(frozen=True)
class Interval:
    low: float | None
    high: float | None


def bootstrap_differences(
    y: np.ndarray,
    served: np.ndarray,
    candidate: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Interval]:
    """The paired bootstrap 95% interval of candidate − served for each metric."""
    n = len(y)
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    block = max(1, min(resamples, _BLOCK_CELLS // max(n, 1)))
    models = _Scored.of(y, served), _Scored.of(y, candidate)
    for start in range(0, resamples, block):
        w = resample_counts(rng, n, min(block, resamples - start)).astype(np.float64)
        s, c = (m.metrics(w) for m in models)
        for m in METRICS:
            diffs[m].append(c[m] - s[m])
    out = {}
    for m in METRICS:
        values = np.concatenate(diffs[m])
        values = values[~np.isnan(values)]
        if not len(values):
            out[m] = Interval(None, None)
            continue
        low, high = np.percentile(values, [2.5, 97.5])
        out[m] = Interval(float(low), float(high))
    return out


def labelled_metrics(
    y: np.ndarray,
    served: np.ndarray,
    candidate: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """Per metric: each model's value, the difference and its bootstrap interval."""
    if not len(y):
        return {"customers": 0, "churned": 0, "metrics": {}}
    y = np.asarray(y, np.int64)
    s, c = point_metrics(y, served), point_metrics(y, candidate)
    intervals = bootstrap_differences(y, served, candidate, resamples, seed)
    metrics = {}
    for m in METRICS:
        sm, cm = s[m], c[m]
        metrics[m] = {
            "served": sm,
            "candidate": cm,
            "difference": None if sm is None or cm is None else cm - sm,
            "ci95_low": intervals[m].low,
            "ci95_high": intervals[m].high,
        }
    return {
        "customers": len(y),
        "churned": int(y.sum()),
        "bootstrap": {"resamples": resamples, "seed": seed, "paired": True},
        "metrics": metrics,
    }
