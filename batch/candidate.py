"""`--candidate-tag`: the batch run also scores every valid row with a candidate model, in the
same pass, and its report gains a `candidate` section: the service's comparison
(`models.comparison`, the same accumulator `GET /models/candidate` reports), its verdict, a
histogram of |Δp|, and with `--labels` each model's ROC AUC, log loss and Brier with a paired
bootstrap interval of the difference (`batch.backtest`).

Memory: the comparison is counts; with labels, the labels file and the scores of the labelled
customers are held until the end (the bootstrap resamples them).
"""

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from models.comparison import DELTA_BIN, ComparisonState, Thresholds, verdict
from models.contract import ID_COLUMN
from models.predictor import ChurnPredictor, load_predictor

from .backtest import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, labelled_metrics
from .reader import InputError

LABEL_COLUMN = "churned"
DELTA_BARS = 20  # bars of the |Δp| histogram in the report


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--candidate-tag",
        metavar="TAG",
        help="also score with this model and compare it with --model",
    )
    p.add_argument(
        "--labels",
        type=Path,
        metavar="FILE",
        help="parquet or CSV of customer_id, churned: each model's ROC AUC, log loss, Brier"
        " (local engine only)",
    )
    p.add_argument(
        "--bootstrap-resamples",
        type=int,
        default=BOOTSTRAP_RESAMPLES,
        metavar="N",
        help=f"resamples of the paired bootstrap (default {BOOTSTRAP_RESAMPLES})",
    )
    p.add_argument(
        "--bootstrap-seed",
        type=int,
        default=BOOTSTRAP_SEED,
        metavar="N",
        help=f"seed of the bootstrap's generator (default {BOOTSTRAP_SEED})",
    )


def check_arguments(args: argparse.Namespace) -> None:
    if args.candidate_tag is None:
        if args.labels is not None:
            raise InputError("--labels needs --candidate-tag")
        return
    if args.engine != "local" and args.labels is not None:
        raise InputError("--labels needs --engine local (the dask engine compares without labels)")
    if args.bootstrap_resamples < 1:
        raise InputError("--bootstrap-resamples must be positive")


def start(args: argparse.Namespace, served_tag: str) -> "Backtest | None":
    """The run's backtest (None without --candidate-tag): the candidate and the labels loaded,
    so an unknown tag or a bad labels file is a usage error before anything is written."""
    if args.candidate_tag is None:
        return None
    model = load_predictor(args.candidate_tag)
    labels = Labels.read(args.labels) if args.labels is not None else None
    return Backtest(served_tag, model, labels, args.bootstrap_resamples, args.bootstrap_seed)


@dataclass(frozen=True)
class Labels:
    """The known outcome of each labelled customer (ids unique)."""

    ids: pd.Index
    churned: np.ndarray  # int8, 1 = churned

    @classmethod
    def read(cls, path: Path) -> "Labels":
        try:
            if path.suffix.lower() == ".csv":
                frame = pd.read_csv(path, dtype={ID_COLUMN: str})
            else:
                frame = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable labels file ({exc})") from None
        missing = [c for c in (ID_COLUMN, LABEL_COLUMN) if c not in frame.columns]
        if missing:
            raise InputError(f"{path}: labels need the column(s) {', '.join(missing)}")
        ids, churned = frame[ID_COLUMN], frame[LABEL_COLUMN]
        if ids.isna().any():
            raise InputError(f"{path}: {ID_COLUMN} is missing in {int(ids.isna().sum())} row(s)")
        if not churned.isin([0, 1]).all():  # True/False count as 1/0
            raise InputError(f"{path}: {LABEL_COLUMN} must be 0 or 1 in every row")
        ids = ids.astype(str)
        if ids.duplicated().any():
            raise InputError(f"{path}: {ID_COLUMN} {ids[ids.duplicated()].iloc[0]!r} repeats")
        return cls(pd.Index(ids), churned.to_numpy().astype(np.int8))

    def positions(self, ids: pa.ChunkedArray) -> np.ndarray:
        """Each id's row in the labels, -1 for an unknown or missing id."""
        return self.ids.get_indexer(ids.to_numpy(zero_copy_only=False))


@dataclass
class ChunkPairs:
    """One chunk's share of the backtest, computed on its scoring thread."""

    state: ComparisonState
    positions: np.ndarray  # labelled rows: their row in the labels
    served: np.ndarray
    candidate: np.ndarray
    unlabelled: int


@dataclass
class Backtest:
    """The run's comparison, fed chunk by chunk in input order."""

    served_tag: str
    model: ChurnPredictor  # the candidate
    labels: Labels | None = None
    resamples: int = BOOTSTRAP_RESAMPLES
    seed: int = BOOTSTRAP_SEED
    thresholds: Thresholds = field(default_factory=Thresholds)
    state: ComparisonState = field(default_factory=ComparisonState)
    _parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=list, init=False
    )
    _unlabelled: int = field(default=0, init=False)

    def pairs(self, ids: pa.ChunkedArray, served: np.ndarray, candidate: np.ndarray) -> ChunkPairs:
        """A chunk's pairs (thread-safe: reads only the labels)."""
        state = ComparisonState(self.state.threshold)
        state.add(served, candidate)
        if self.labels is None:
            return ChunkPairs(state, np.empty(0, np.int64), served[:0], candidate[:0], 0)
        at = self.labels.positions(ids)
        known = at >= 0
        unlabelled = len(at) - int(known.sum())
        return ChunkPairs(state, at[known], served[known], candidate[known], unlabelled)

    def add(self, part: ChunkPairs) -> None:
        self.state.merge(part.state)
        self._unlabelled += part.unlabelled
        if len(part.positions):
            self._parts.append((part.positions, part.served, part.candidate))

    def report(self) -> dict[str, Any]:
        comparison = self.state.result()
        judged = verdict(comparison, 0, self.thresholds)
        out: dict[str, Any] = {
            "served": self.served_tag,
            "candidate": self.model.tag,
            "comparison": comparison.as_dict(),
            "verdict": judged.decision.value,
            "reasons": judged.reasons,
            "thresholds": asdict(self.thresholds),
            "abs_delta_histogram": delta_histogram(self.state.delta_bins),
        }
        if self.labels is not None:
            out["labels"] = self._labelled()
        return out

    def _labelled(self) -> dict[str, Any]:
        assert self.labels is not None
        if self._parts:
            at, served, candidate = (np.concatenate(a) for a in zip(*self._parts, strict=True))
        else:
            at, served, candidate = np.empty(0, np.int64), np.empty(0), np.empty(0)
        # A customer scored more than once is counted once, with its first row.
        at, first = np.unique(at, return_index=True)
        result = labelled_metrics(
            self.labels.churned[at], served[first], candidate[first], self.resamples, self.seed
        )
        return {
            "labels": len(self.labels.ids),
            "scored_without_label": self._unlabelled,
            "repeated_labelled_rows": int(len(served) - len(first)),
            "labels_not_scored": int(len(self.labels.ids) - len(at)),
            **result,
        }


_STATE_ARRAYS = ("table", "served_bins", "candidate_bins", "delta_bins")


def state_to_dict(state: ComparisonState) -> dict[str, Any]:
    """A comparison state as JSON-able lists (a Dask partition's result)."""
    out: dict[str, Any] = {k: getattr(state, k).tolist() for k in _STATE_ARRAYS}
    return out | {k: getattr(state, k) for k in ("threshold", "delta_sum", "delta_max")}


def state_from_dict(data: dict[str, Any]) -> ComparisonState:
    table, served, candidate, delta = (np.asarray(data[k], np.int64) for k in _STATE_ARRAYS)
    return ComparisonState(
        data["threshold"], table, served, candidate, delta, data["delta_sum"], data["delta_max"]
    )


def delta_histogram(bins: np.ndarray, bars: int = DELTA_BARS) -> dict[str, list]:
    """The comparison's |Δp| counts (bins `DELTA_BIN` wide) merged into `bars` equal bars that
    span the largest |Δp| seen."""
    used = int(np.flatnonzero(bins)[-1]) + 1 if bins.any() else 1
    width = -(-used // bars)  # fine bins per bar
    counts = np.zeros(bars * width, np.int64)
    counts[: len(bins)] = bins[: bars * width]
    return {
        "bin_edges": [round(i * width * DELTA_BIN, 6) for i in range(bars + 1)],
        "counts": counts.reshape(bars, width).sum(axis=1).tolist(),
    }
