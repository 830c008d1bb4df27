"""Run statistics gathered chunk by chunk (constant memory, mergeable across Dask tasks), and the
report built from them: counts, confidence, failures, drift against the training profile, and
the anomalies that `--fail-on-anomaly` turns into exit code 3."""

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from models.contract import CONFIDENCE_LEVELS, FEATURES
from models.predictor import Scores
from models.stability import PSI_MODERATE, PSI_SIGNIFICANT, psi

from .duplicates import Duplicates
from .scoring import ScoredChunk

HISTOGRAM_BINS = 20
CHURN_RATE_HIGH, CHURN_RATE_LOW = 0.5, 0.01
MEAN_CONFIDENCE_MIN = 0.6
LOW_CONFIDENCE_SHARE_MAX = 0.3
# Below this many scored rows, PSI and rates are noise (two rows give a churn rate of 0, 50 or
# 100%): drift is reported as `insufficient_data` and no rate or drift anomaly is raised. At 500
# rows a rate's standard error is at most 2.2 points and each of ~10 PSI bins expects ~50 rows.
MIN_ROWS_FOR_ANOMALIES = 500
INSUFFICIENT = "insufficient_data"


@dataclass
class Stats:
    """Sums and counts over every chunk of a run; `merge` adds another run's part."""

    rows_in: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    churned: int = 0
    churn_probability_sum: float = 0.0
    confidence_sum: float = 0.0
    confidence_levels: dict[str, int] = field(default_factory=dict)
    histogram: list[int] = field(default_factory=lambda: [0] * HISTOGRAM_BINS)
    failures: dict[str, int] = field(default_factory=dict)
    feature_sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FEATURES, 0.0))
    drift_bins: dict[str, list[int]] = field(default_factory=dict)
    files: dict[str, dict[str, int]] = field(default_factory=dict)

    def update(self, source: str, scored: ScoredChunk, edges: dict[str, np.ndarray]) -> None:
        features = {name: scored.features[:, j] for j, name in enumerate(FEATURES)}
        self.add(source, scored.scores, features, edges, scored.reasons)

    def add(
        self,
        source: str,
        scores: Scores,
        features: Mapping[str, np.ndarray],
        edges: dict[str, np.ndarray],
        reasons: Sequence[str] | np.ndarray = (),
    ) -> None:
        """Rows of `source`: scored ones (`scores`; `features`: each feature's values, of those
        rows that carry it, in any number) and rejected ones (`reasons`, one per row)."""
        n_ok, n_bad = len(scores), len(reasons)
        self.rows_in += n_ok + n_bad
        self.rows_scored += n_ok
        self.rows_rejected += n_bad
        per_file = self.files.setdefault(source, {"rows": 0, "scored": 0, "rejected": 0})
        per_file["rows"] += n_ok + n_bad
        per_file["scored"] += n_ok
        per_file["rejected"] += n_bad
        for reason, count in Counter(list(reasons)).items():
            self.failures[reason] = self.failures.get(reason, 0) + count
        if not n_ok:
            return
        s = scores
        self.churned += int(s.prediction.sum())
        self.churn_probability_sum += float(s.churn_probability.sum())
        self.confidence_sum += float(s.probability.sum())
        for code, key in enumerate(CONFIDENCE_LEVELS):
            if count := int(np.count_nonzero(s.band == code)):
                self.confidence_levels[key] = self.confidence_levels.get(key, 0) + count
        bins = np.minimum(
            (s.churn_probability * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS - 1
        )
        self._add("histogram", np.bincount(bins, minlength=HISTOGRAM_BINS))
        for name, values in features.items():
            if not len(values):
                continue
            col = np.ascontiguousarray(values)
            self.feature_sums[name] += float(col.sum())
            if name in edges:
                counts = bin_counts(col, edges[name])
                self.drift_bins[name] = _add_lists(self.drift_bins.get(name), counts.tolist())

    def _add(self, name: str, counts: np.ndarray) -> None:
        setattr(self, name, _add_lists(getattr(self, name), counts.tolist()))

    def merge(self, other: "Stats") -> None:
        for name in ("rows_in", "rows_scored", "rows_rejected", "churned"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.churn_probability_sum += other.churn_probability_sum
        self.confidence_sum += other.confidence_sum
        self.histogram = _add_lists(self.histogram, other.histogram)
        for mine, theirs in (
            (self.confidence_levels, other.confidence_levels),
            (self.failures, other.failures),
        ):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value
        for key, total in other.feature_sums.items():
            self.feature_sums[key] = self.feature_sums.get(key, 0.0) + total
        for name, counts in other.drift_bins.items():
            self.drift_bins[name] = _add_lists(self.drift_bins.get(name), counts)
        for source, file_counts in other.files.items():
            mine = self.files.setdefault(source, {"rows": 0, "scored": 0, "rejected": 0})
            for key, value in file_counts.items():
                mine[key] += value

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Stats":
        return cls(**data)


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """How many values fall in each bin of the sorted inner `edges` (a value equal to an edge
    counts in the bin above it), as `np.bincount(np.searchsorted(edges, values, "right"))`.

    One comparison pass per edge: a profile has ~10 edges, and these passes cost a tenth of a
    binary search per value."""
    below = [np.count_nonzero(values < edge) for edge in edges.tolist()]
    return np.diff(np.array([0, *below, len(values)], np.int64))


def _add_lists(a: list[int] | None, b: list[int]) -> list[int]:
    return list(b) if a is None else [x + y for x, y in zip(a, b, strict=True)]


def drift_edges(metadata: dict[str, Any]) -> dict[str, np.ndarray]:
    """The training profile's inner bin edges per feature (empty if the model has no profile)."""
    profile = metadata.get("training_data", {}).get("features", {})
    return {name: np.asarray(p["bin_edges"], np.float64) for name, p in profile.items()}


def drift_status(value: float) -> str:
    if value >= PSI_SIGNIFICANT:
        return "significant"
    return "moderate" if value >= PSI_MODERATE else "stable"


def build_report(stats: Stats, duplicates: Duplicates, metadata: dict[str, Any]) -> dict[str, Any]:
    """The report's content (report.json as is; report.html renders it)."""
    n = stats.rows_scored
    levels = {k: stats.confidence_levels.get(k, 0) for k in ("high", "medium", "low")}
    profile = metadata.get("training_data", {}).get("features", {})
    drift = {}
    for name in FEATURES:
        counts, train = stats.drift_bins.get(name), profile.get(name)
        # The rows that carry the feature: every scored row in a batch run; served traffic
        # read from records without features (Kafka results) has fewer.
        rows = sum(counts) if counts else 0
        if counts is None or not rows or train is None:
            continue
        value = psi(counts, train["bin_fractions"]) if rows >= MIN_ROWS_FOR_ANOMALIES else None
        drift[name] = {
            "psi": None if value is None else round(value, 6),
            "status": INSUFFICIENT if value is None else drift_status(value),
            "mean": stats.feature_sums[name] / rows,
            "training_mean": train["mean"],
            "bin_fractions": [c / rows for c in counts],
            "training_bin_fractions": train["bin_fractions"],
        }
    summary = {
        "rows_in": stats.rows_in,
        "rows_scored": n,
        "rows_rejected": stats.rows_rejected,
        "churned": stats.churned,
        "not_churned": n - stats.churned,
        "churn_rate": stats.churned / n if n else None,
        "mean_churn_probability": stats.churn_probability_sum / n if n else None,
        "mean_confidence": stats.confidence_sum / n if n else None,
        "confidence_levels": levels,
        "high_confidence": levels["high"],
        "low_confidence": levels["low"],
        "low_confidence_share": levels["low"] / n if n else None,
    }
    return {
        "summary": summary,
        "duplicates": asdict(duplicates),
        "failures_by_reason": dict(sorted(stats.failures.items(), key=lambda kv: -kv[1])),
        "histogram": {
            "bin_edges": [i / HISTOGRAM_BINS for i in range(HISTOGRAM_BINS + 1)],
            "counts": stats.histogram,
        },
        "drift": drift,
        "files": stats.files,
        "anomaly_checks": {
            "min_rows_scored": MIN_ROWS_FOR_ANOMALIES,
            "applied": n >= MIN_ROWS_FOR_ANOMALIES,
        },
        "anomalies": anomalies(summary, drift),
    }


def anomalies(summary: dict[str, Any], drift: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    found = []

    def flag(kind: str, message: str) -> None:
        found.append({"code": kind, "kind": kind, "message": message})

    if not summary["rows_scored"]:
        flag("no_rows_scored", "no row could be scored")
        return found
    if summary["rows_scored"] < MIN_ROWS_FOR_ANOMALIES:
        return found  # too few rows for rates or drift to mean anything
    rate, conf = summary["churn_rate"], summary["mean_confidence"]
    if rate > CHURN_RATE_HIGH:
        flag("churn_rate_high", f"churn rate {rate:.1%} is above {CHURN_RATE_HIGH:.0%}")
    if rate < CHURN_RATE_LOW:
        flag("churn_rate_low", f"churn rate {rate:.2%} is below {CHURN_RATE_LOW:.0%}")
    if conf < MEAN_CONFIDENCE_MIN:
        flag("low_mean_confidence", f"mean confidence {conf:.3f} is below {MEAN_CONFIDENCE_MIN}")
    share = summary["low_confidence_share"]
    if share > LOW_CONFIDENCE_SHARE_MAX:
        flag(
            "many_low_confidence",
            f"{share:.1%} of predictions are low-confidence (limit {LOW_CONFIDENCE_SHARE_MAX:.0%})",
        )
    for name, d in drift.items():
        if d["status"] == "significant":
            flag("drift", f"{name} drifted from the training data (PSI {d['psi']:.3f})")
    return found
