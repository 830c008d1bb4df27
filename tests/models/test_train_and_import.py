"""Training is reproducible and stores what serving and drift checks need; imports are checked."""

import os
import subprocess
import sys
from pathlib import Path

import bentoml
import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from models import import_model
from models.contract import FEATURES, MODEL_NAME
from models.data import synthetic_customers
from models.predictor import load_predictor


def test_synthetic_data_is_reproducible_and_about_one_in_five_churns():
    a, b = synthetic_customers(5000, seed=7), synthetic_customers(5000, seed=7)
    assert a.equals(b)
    assert 0.17 < a["churned"].mean() < 0.23
    assert not a.equals(synthetic_customers(5000, seed=8))


def test_churn_rises_with_recency_and_falls_with_frequency():
    data = synthetic_customers(20_000, seed=1)
    recent = data["days_since_purchase"] < data["days_since_purchase"].median()
    frequent = data["purchase_history"] > data["purchase_history"].median()
    assert data.loc[~recent, "churned"].mean() > data.loc[recent, "churned"].mean()
    assert data.loc[frequent, "churned"].mean() < data.loc[~frequent, "churned"].mean()


def test_trained_model_metadata(model_tag):
    info = bentoml.models.get(model_tag).info
    assert info.metadata["features"] == list(FEATURES)
    metrics = info.metadata["metrics"]
    assert metrics["roc_auc"] > 0.7
    assert {"log_loss", "brier_score"} <= set(metrics)
    profile = info.metadata["training_data"]["features"]
    assert set(profile) == set(FEATURES)
    assert abs(sum(profile["age"]["bin_fractions"]) - 1) < 1e-9
    assert "scikit-learn" in info.metadata["library_versions"]
    assert info.labels["source"] == "models.train"


def fitted_pair(n_features: int = 4) -> tuple[LogisticRegression, StandardScaler]:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, n_features)), rng.integers(0, 2, 200)
    scaler = StandardScaler().fit(x)
    return LogisticRegression().fit(scaler.transform(x), y), scaler


def test_import_packages_user_artifacts_with_the_same_layout(model_tag, tmp_path: Path):
    model, scaler = fitted_pair()
    joblib.dump(model, tmp_path / "churn_model.pkl")
    joblib.dump(scaler, tmp_path / "scaler.pkl")
    before = {str(m.tag) for m in bentoml.models.list(MODEL_NAME)}
    args = ["--model", str(tmp_path / "churn_model.pkl"), "--scaler", str(tmp_path / "scaler.pkl")]
    assert import_model.main(args) == 0
    (new,) = {str(m.tag) for m in bentoml.models.list(MODEL_NAME)} - before
    predictor = load_predictor(new)
    probe = np.array([[42.0, 55_000.0, 12.0, 30.0]])
    assert np.array_equal(
        predictor.churn_probability(probe), model.predict_proba(scaler.transform(probe))[:, 1]
    )


@pytest.mark.parametrize(
    ("artifacts", "message"),
    [
        (lambda: (StandardScaler(), fitted_pair()[1]), "no predict_proba"),
        (lambda: fitted_pair(3), "expects 3 features"),
    ],
)
def test_import_refuses_artifacts_that_do_not_fit_the_contract(
    tmp_path: Path, capsys, artifacts, message
):
    model, scaler = artifacts()
    joblib.dump(model, tmp_path / "m.pkl")
    joblib.dump(scaler, tmp_path / "s.pkl")
    code = import_model.main(
        ["--model", str(tmp_path / "m.pkl"), "--scaler", str(tmp_path / "s.pkl")]
    )
    assert code == 2
    assert message in capsys.readouterr().err


def test_import_names_a_missing_file(tmp_path: Path, capsys):
    assert import_model.main(["--model", str(tmp_path / "nope.pkl"), "--scaler", "x"]) == 2
    assert "nope.pkl does not exist" in capsys.readouterr().err


def test_if_missing_trains_into_an_empty_store_and_then_leaves_it_alone(tmp_path):
    script = (
        "import sys; from models import train; "
        "sys.exit(train.main(['--rows', '2000', '--classifier', 'logistic_regression', "
        "'--if-missing']))"
    )
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "empty-home")}
    first = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "saved churn_model:" in first.stdout
    again = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "not training" in again.stdout


def store_tags() -> set[str]:
    return {str(m.tag) for m in bentoml.models.list(MODEL_NAME)}


def test_import_refuses_a_model_without_classes_with_exit_2(model_tag, tmp_path: Path, capsys):
    # A classifier that was never fitted has predict_proba but no `classes_`.
    _, scaler = fitted_pair()
    joblib.dump(LogisticRegression(), tmp_path / "m.pkl")
    joblib.dump(scaler, tmp_path / "s.pkl")
    before = store_tags()
    code = import_model.main(
        ["--model", str(tmp_path / "m.pkl"), "--scaler", str(tmp_path / "s.pkl")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "classes_" in err
    assert "Traceback" not in err
    assert store_tags() == before


@pytest.mark.parametrize("bad", ["owner", "", "=value"])
def test_import_refuses_a_label_without_key_and_value(model_tag, tmp_path: Path, capsys, bad):
    model, scaler = fitted_pair()
    joblib.dump(model, tmp_path / "m.pkl")
    joblib.dump(scaler, tmp_path / "s.pkl")
    before = store_tags()
    args = ["--model", str(tmp_path / "m.pkl"), "--scaler", str(tmp_path / "s.pkl")]
    with pytest.raises(SystemExit) as exit_info:
        import_model.main([*args, "--label", "team=ml", "--label", bad])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"--label: {bad!r}" in err
    assert "KEY=VALUE" in err
    assert store_tags() == before


def test_import_keeps_every_label_given_as_key_value(model_tag, tmp_path: Path):
    model, scaler = fitted_pair()
    joblib.dump(model, tmp_path / "m.pkl")
    joblib.dump(scaler, tmp_path / "s.pkl")
    before = store_tags()
    args = ["--model", str(tmp_path / "m.pkl"), "--scaler", str(tmp_path / "s.pkl")]
    assert import_model.main([*args, "--label", "team=ml", "--label", "query=a=b"]) == 0
    (new,) = store_tags() - before
    labels = bentoml.models.get(new).info.labels
    assert labels == {"source": "models.import_model", "team": "ml", "query": "a=b"}
