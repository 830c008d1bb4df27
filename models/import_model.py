"""Package existing joblib artifacts (a classifier and its scaler) into the BentoML model store.

    python -m models.import_model --model churn_model.pkl --scaler scaler.pkl [--label k=v ...]

The artifacts are checked before anything is written: both load, the scaler transforms and the
model has `predict_proba` over exactly the four features in `FEATURES` order, with classes {0, 1}.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from models.contract import FEATURES
from models.data import REFERENCE_AS_OF
from models.errors import IncompatibleModelError
from models.store import feature_profile, save_to_store
from models.train import training_data

_PROBE = np.array([[42.0, 55_000.0, 12.0, 30.0], [70.0, 0.0, 0.0, 400.0]])


def load_artifact(path: Path, what: str) -> Any:
    try:
        return joblib.load(path)
    except FileNotFoundError:
        raise IncompatibleModelError(f"{what} file {path} does not exist") from None
    except Exception as exc:
        raise IncompatibleModelError(f"{what} file {path} does not load: {exc}") from exc


def check_artifacts(model: Any, scaler: Any) -> None:
    """Raise `IncompatibleModelError` naming the problem unless the pair scores `FEATURES`."""
    if not hasattr(scaler, "transform"):
        raise IncompatibleModelError("scaler has no transform() method")
    if not hasattr(model, "predict_proba"):
        raise IncompatibleModelError("model has no predict_proba() method")
    for name, obj in (("scaler", scaler), ("model", model)):
        n = getattr(obj, "n_features_in_", len(FEATURES))
        if n != len(FEATURES):
            raise IncompatibleModelError(
                f"{name} expects {n} features, not the {len(FEATURES)} of {FEATURES}"
            )
        names = getattr(obj, "feature_names_in_", None)
        if names is not None and list(names) != list(FEATURES):
            raise IncompatibleModelError(
                f"{name} was fitted on columns {list(names)}, not {list(FEATURES)}"
            )
    classes = getattr(model, "classes_", None)
    if classes is None:
        raise IncompatibleModelError("model has no classes_ (is it fitted?); expected [0, 1]")
    if sorted(np.asarray(classes).tolist()) != [0, 1]:
        raise IncompatibleModelError(f"model classes are {classes!r}, expected [0, 1]")
    try:
        proba = model.predict_proba(scaler.transform(_PROBE))
    except Exception as exc:
        raise IncompatibleModelError(
            f"model and scaler fail on a probe of the four features: {exc}"
        ) from exc
    if proba.shape != (len(_PROBE), 2) or not np.all(np.isfinite(proba)):
        raise IncompatibleModelError(f"predict_proba returned shape {proba.shape}, expected (n, 2)")


def label(item: str) -> tuple[str, str]:
    """One `--label KEY=VALUE` (the value may itself hold `=`)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{item!r} is not KEY=VALUE with a non-empty KEY")
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="joblib file of the classifier")
    parser.add_argument("--scaler", type=Path, required=True, help="joblib file of the scaler")
    parser.add_argument("--label", action="append", default=[], type=label, metavar="KEY=VALUE")
    args = parser.parse_args(argv)  # a bad --label exits 2 here, naming it
    labels = dict(args.label)
    try:
        model = load_artifact(args.model, "model")
        scaler = load_artifact(args.scaler, "scaler")
        check_artifacts(model, scaler)
    except IncompatibleModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Drift checks need a reference profile; imported artifacts come without their training data,
    # so the synthetic population stands in and the metadata says so.
    x, _ = training_data(20_000, 42)
    stored = save_to_store(
        model,
        scaler,
        metadata={
            "classifier": type(model).__name__,
            "imported_from": {"model": str(args.model), "scaler": str(args.scaler)},
            "training_data": {
                "as_of": REFERENCE_AS_OF.isoformat(),
                "profile_source": "synthetic reference population",
                "features": feature_profile(x),
            },
        },
        labels={"source": "models.import_model", **labels},
    )
    print(f"imported {args.model} and {args.scaler} as {stored.tag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
