"""Train the churn classifier on the synthetic population and save it to the BentoML model store.

    python -m models.train [--rows 20000] [--seed 42] [--classifier auto|NAME] [--if-missing]

`auto` fits every candidate, measures held-out quality and scoring speed, and keeps the fastest
model whose held-out log loss is within `LOG_LOSS_TOLERANCE` of the best.
"""

import argparse
import json
import time
from dataclasses import dataclass
from typing import Any

import bentoml
import numpy as np
from bentoml.exceptions import NotFound
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from models.contract import DEFAULT_MODEL_TAG
from models.data import REFERENCE_AS_OF, synthetic_customers
from models.features import matrix_from_frame
from models.frames import validate_frame
from models.store import feature_profile, save_to_store

LOG_LOSS_TOLERANCE = 0.002
CANDIDATES = {
    "logistic_regression": lambda seed: LogisticRegression(max_iter=1000),
    "hist_gradient_boosting": lambda seed: HistGradientBoostingClassifier(random_state=seed),
}


@dataclass
class Candidate:
    name: str
    model: Any
    metrics: dict[str, float]


def training_data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The feature matrix (through the same validation and feature code we serve) and labels."""
    frame = synthetic_customers(rows, seed)
    checked = validate_frame(frame, REFERENCE_AS_OF)
    return matrix_from_frame(checked), frame["churned"].to_numpy()[checked.valid]


def held_out_metrics(model: Any, x_test: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    p = model.predict_proba(x_test)[:, 1]
    return {
        "roc_auc": float(roc_auc_score(y_test, p)),
        "log_loss": float(log_loss(y_test, p)),
        "brier_score": float(brier_score_loss(y_test, p)),
    }


def scoring_speed(model: Any, x: np.ndarray) -> dict[str, float]:
    """Median latency of a one-row `predict_proba`, and rows/s on a large matrix."""
    one = x[:1]
    singles = []
    for _ in range(200):
        start = time.perf_counter()
        model.predict_proba(one)
        singles.append(time.perf_counter() - start)
    big = np.tile(x, (max(1, 200_000 // len(x)), 1))
    start = time.perf_counter()
    model.predict_proba(big)
    return {
        "single_row_ms": float(np.median(singles) * 1e3),
        "rows_per_second": float(len(big) / (time.perf_counter() - start)),
    }


def choose(candidates: list[Candidate]) -> Candidate:
    best_loss = min(c.metrics["log_loss"] for c in candidates)
    good = [c for c in candidates if c.metrics["log_loss"] <= best_loss + LOG_LOSS_TOLERANCE]
    return min(good, key=lambda c: c.metrics["single_row_ms"])


def latest_stored() -> str | None:
    """The tag of the newest churn model in the store, or None on an empty store."""
    try:
        return str(bentoml.models.get(DEFAULT_MODEL_TAG).tag)
    except NotFound:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--classifier", choices=["auto", *CANDIDATES], default="auto")
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing if the store has a churn model"
    )
    args = parser.parse_args(argv)
    if args.if_missing and (existing := latest_stored()):
        print(f"the model store already has {existing}; not training")
        return 0

    x, y = training_data(args.rows, args.seed)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=args.seed, stratify=y
    )
    scaler = StandardScaler().fit(x_train)
    xs_train, xs_test = scaler.transform(x_train), scaler.transform(x_test)
    names = list(CANDIDATES) if args.classifier == "auto" else [args.classifier]
    fitted = []
    for name in names:
        model = CANDIDATES[name](args.seed).fit(xs_train, y_train)
        metrics = held_out_metrics(model, xs_test, y_test) | scoring_speed(model, xs_test)
        fitted.append(Candidate(name, model, metrics))
        print(f"{name:>24}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    chosen = choose(fitted)

    stored = save_to_store(
        chosen.model,
        scaler,
        metadata={
            "classifier": chosen.name,
            "metrics": chosen.metrics,
            "candidates": {c.name: c.metrics for c in fitted},
            "training_data": {
                "rows": len(x),
                "seed": args.seed,
                "as_of": REFERENCE_AS_OF.isoformat(),
                "churn_rate": float(y.mean()),
                "features": feature_profile(x_train),
            },
        },
        labels={"classifier": chosen.name, "source": "models.train"},
    )
    print(f"chose {chosen.name}; saved {stored.tag}")
    print(json.dumps(chosen.metrics, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
