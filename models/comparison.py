"""Comparing a candidate model with the served one on the same customers, in bounded memory.

Given pairs of (served P(churn), candidate P(churn)), `Comparison` says how many pairs were seen,
how often the two models decide the same at the served threshold (with the 2x2 table), how far
the scores move (mean, p95 and max of |Δp|), the PSI between the two score distributions, and
`verdict` turns that into promote / hold / reject against `Thresholds` (docs/rollout.md).

Everything is counts and fixed-bin histograms (`ComparisonState`), so the service can add pairs
request by request forever and two states add up. The p95 of |Δp| (the inverted-CDF quantile)
is read off a histogram of `DELTA_BIN` wide bins (the bin's upper edge, capped by the largest
|Δp| seen); the PSI off `SCORE_BINS` equal-width bins of P(churn), with the drift report's PSI
(`models.stability.psi`, one definition for both).
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from models.contract import DECISION_THRESHOLD
from models.stability import psi

SCORE_BINS = 20  # equal-width bins of P(churn) on [0, 1] for the PSI
DELTA_BIN = 0.001  # width of the |Δp| histogram's bins: the p95's resolution
DELTA_BINS = round(1 / DELTA_BIN)
# Below the promote thresholds by this much, waiting for more traffic will not help: reject.
REJECT_AGREEMENT = 0.95
REJECT_PSI = 0.25


class Decision(StrEnum):
    PROMOTE = "promote"
    HOLD = "hold"
    REJECT = "reject"


@dataclass(frozen=True)
class Thresholds:
    """What a candidate must show to be promoted (the service reads them from its settings)."""

    min_pairs: int = 500
    min_agreement: float = 0.99
    max_p95_delta: float = 0.05
    max_psi: float = 0.1


def _bins(p: np.ndarray, n: int) -> np.ndarray:
    """Counts of `p` (in [0, 1]) in n equal-width bins, 1.0 in the last one."""
    index = np.minimum((p * n).astype(np.int64), n - 1)
    return np.bincount(index, minlength=n)


@dataclass
class ComparisonState:
    """Counts and histograms of the pairs seen; `add` more, `merge` another state."""

    threshold: float = DECISION_THRESHOLD
    # table[s, c]: pairs the served model decided s and the candidate c (1 = churn).
    table: np.ndarray = field(default_factory=lambda: np.zeros((2, 2), np.int64))
    served_bins: np.ndarray = field(default_factory=lambda: np.zeros(SCORE_BINS, np.int64))
    candidate_bins: np.ndarray = field(default_factory=lambda: np.zeros(SCORE_BINS, np.int64))
    delta_bins: np.ndarray = field(default_factory=lambda: np.zeros(DELTA_BINS, np.int64))
    delta_sum: float = 0.0
    delta_max: float = 0.0

    def add(self, served: np.ndarray, candidate: np.ndarray) -> None:
        served = np.asarray(served, np.float64)
        candidate = np.asarray(candidate, np.float64)
        if served.shape != candidate.shape or served.ndim != 1:
            raise ValueError(
                f"pairs of equal 1-d arrays expected: {served.shape}, {candidate.shape}"
            )
        if not len(served):
            return
        s = (served >= self.threshold).astype(np.int64)
        c = (candidate >= self.threshold).astype(np.int64)
        self.table += np.bincount(2 * s + c, minlength=4).reshape(2, 2)
        self.served_bins += _bins(served, SCORE_BINS)
        self.candidate_bins += _bins(candidate, SCORE_BINS)
        delta = np.abs(served - candidate)
        self.delta_bins += _bins(delta, DELTA_BINS)
        self.delta_sum += float(delta.sum())
        self.delta_max = max(self.delta_max, float(delta.max()))

    def merge(self, other: "ComparisonState") -> None:
        if other.threshold != self.threshold:
            raise ValueError("states compared at different thresholds do not add up")
        self.table += other.table
        self.served_bins += other.served_bins
        self.candidate_bins += other.candidate_bins
        self.delta_bins += other.delta_bins
        self.delta_sum += other.delta_sum
        self.delta_max = max(self.delta_max, other.delta_max)

    def result(self) -> "Comparison":
        pairs = int(self.table.sum())
        if not pairs:
            return Comparison(0, self.threshold, None, self.table.tolist(), None, None, None, None)
        return Comparison(
            pairs=pairs,
            threshold=self.threshold,
            agreement=float(np.trace(self.table)) / pairs,
            table=self.table.tolist(),
            mean_abs_delta=self.delta_sum / pairs,
            p95_abs_delta=quantile_from_bins(self.delta_bins, DELTA_BIN, 0.95, self.delta_max),
            max_abs_delta=self.delta_max,
            psi=psi(self.candidate_bins.tolist(), (self.served_bins / pairs).tolist()),
        )


def quantile_from_bins(counts: np.ndarray, width: float, q: float, largest: float) -> float:
    """The upper edge of the bin holding the q-quantile (at least the true value, at most
    `width` above it), capped by the `largest` value seen (so all-zero data gives 0)."""
    rank = q * counts.sum()
    index = int(np.searchsorted(np.cumsum(counts), rank, side="left"))
    return min((index + 1) * width, largest)


@dataclass(frozen=True)
class Comparison:
    """The comparison of the pairs seen (None where no pair was seen)."""

    pairs: int
    threshold: float
    agreement: float | None
    table: list[list[int]]  # [served 0: [cand 0, cand 1], served 1: [cand 0, cand 1]]
    mean_abs_delta: float | None
    p95_abs_delta: float | None
    max_abs_delta: float | None
    psi: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "threshold": self.threshold,
            "agreement": self.agreement,
            "table": {
                "served_0_candidate_0": self.table[0][0],
                "served_0_candidate_1": self.table[0][1],
                "served_1_candidate_0": self.table[1][0],
                "served_1_candidate_1": self.table[1][1],
            },
            "mean_abs_delta": self.mean_abs_delta,
            "p95_abs_delta": self.p95_abs_delta,
            "max_abs_delta": self.max_abs_delta,
            "psi": self.psi,
        }


def compare(
    served: np.ndarray, candidate: np.ndarray, threshold: float = DECISION_THRESHOLD
) -> Comparison:
    """The comparison of one set of pairs (the same figures as adding them to a state)."""
    state = ComparisonState(threshold)
    state.add(served, candidate)
    return state.result()


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reasons: list[str]  # why not promote (empty when promoting)


def verdict(comparison: Comparison, errors: int, thresholds: Thresholds) -> Verdict:
    """promote: enough pairs, every figure within its threshold and no candidate error;
    reject: a candidate error, agreement below `REJECT_AGREEMENT` or PSI at `REJECT_PSI` or
    more (more traffic will not fix those); hold otherwise."""
    c, t = comparison, thresholds
    if errors:
        return Verdict(Decision.REJECT, [f"the candidate failed {errors} time(s)"])
    if not c.pairs or c.agreement is None or c.psi is None or c.p95_abs_delta is None:
        return Verdict(Decision.HOLD, ["no pairs compared yet"])
    bad = []
    if c.agreement < REJECT_AGREEMENT:
        bad.append(f"agreement {c.agreement:.4f} < {REJECT_AGREEMENT}")
    if c.psi >= REJECT_PSI:
        bad.append(f"PSI {c.psi:.4f} >= {REJECT_PSI}")
    if bad:
        return Verdict(Decision.REJECT, bad)
    short = []
    if c.pairs < t.min_pairs:
        short.append(f"{c.pairs} pairs < {t.min_pairs}")
    if c.agreement < t.min_agreement:
        short.append(f"agreement {c.agreement:.4f} < {t.min_agreement}")
    if c.p95_abs_delta > t.max_p95_delta:
        short.append(f"p95 |Δp| {c.p95_abs_delta:.4f} > {t.max_p95_delta}")
    if c.psi >= t.max_psi:
        short.append(f"PSI {c.psi:.4f} >= {t.max_psi}")
    return Verdict(Decision.HOLD, short) if short else Verdict(Decision.PROMOTE, [])
