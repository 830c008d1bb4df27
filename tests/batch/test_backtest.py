"""`churn-batch --candidate-tag`: the comparison of two models in the report, checked against
figures worked out here from the two fitted models' own `predict_proba`, and `--labels`: each
model's metrics against scikit-learn's and the paired bootstrap interval of the difference."""

import json

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from batch.backtest import resample_counts, weighted_metrics
from models.comparison import DELTA_BIN
from models.predictor import load_predictor
from models.samples import record, records
from tests.batch.conftest import read_outputs, run_batch, write_parquet
from tests.conftest import AS_OF
from tests.expected import feature_matrix
from tests.support import start_bento, wait_until

ROWS = 800  # above the verdict's 500 pairs, so an identical candidate can be promoted
BAD = [record(customer_id="bad-1", age=-5.0), record(customer_id="bad-2", income=None)]


@pytest.fixture(scope="module")
def candidate_tag(model_tag: str) -> str:
    """A different model (gradient boosting, other rows and seed) trained into the test store by
    the training entry point; `model_tag` is trained first, so it stays the served one."""
    import bentoml

    from models import train

    assert (
        train.main(["--rows", "3000", "--seed", "7", "--classifier", "hist_gradient_boosting"]) == 0
    )
    tag = str(bentoml.models.get("churn_model:latest").tag)
    assert tag != model_tag
    return tag


@pytest.fixture(scope="module")
def customers() -> list[dict]:
    return records(ROWS)


@pytest.fixture
def batch_input(tmp_path, customers):
    return write_parquet(tmp_path / "in.parquet", [*customers[:300], *BAD, *customers[300:]])


def probabilities(tag: str, rows: list[dict]) -> np.ndarray:
    """P(churn) from the stored scaler and classifier themselves, on features built here."""
    p = load_predictor(tag)
    proba = p.model.predict_proba(p.scaler.transform(feature_matrix(rows, AS_OF)))
    return proba[:, list(p.model.classes_).index(1)]


def expected_psi(served: np.ndarray, candidate: np.ndarray, bins: int = 20) -> float:
    """PSI of the candidate's scores against the served ones, 20 equal bins, 1e-4 floor."""
    edges = np.linspace(0, 1, bins + 1)
    e = np.maximum(np.histogram(served, edges)[0] / len(served), 1e-4)
    a = np.maximum(np.histogram(candidate, edges)[0] / len(candidate), 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def test_identical_candidate_agrees_fully_and_is_promoted(tmp_path, batch_input, model_tag):
    out = tmp_path / "out"
    args = ["--candidate-tag", model_tag, "--explain"]
    assert run_batch([batch_input], out, model_tag, *args) == 0
    predictions, rejected, report = read_outputs(out)
    # The candidate's column comes after the contract's and before the --explain ones.
    assert list(predictions.columns[7:10]) == [
        "scored_at",
        "candidate_churn_probability",
        "reason_1",
    ]
    c = report["candidate"]
    assert (c["served"], c["candidate"]) == (model_tag, model_tag)
    cmp = c["comparison"]
    assert cmp["pairs"] == ROWS
    assert len(rejected) == len(BAD)
    assert cmp["agreement"] == 1.0
    assert cmp["psi"] == 0.0
    assert cmp["mean_abs_delta"] == cmp["p95_abs_delta"] == cmp["max_abs_delta"] == 0.0
    assert cmp["table"]["served_0_candidate_1"] == cmp["table"]["served_1_candidate_0"] == 0
    assert c["verdict"] == "promote"
    assert c["reasons"] == []
    assert (predictions["candidate_churn_probability"] == predictions["churn_probability"]).all()
    assert c["abs_delta_histogram"]["counts"][0] == ROWS


def test_different_candidate_figures_match_an_independent_computation(
    tmp_path, batch_input, customers, model_tag, candidate_tag
):
    out = tmp_path / "out"
    assert run_batch([batch_input], out, model_tag, "--candidate-tag", candidate_tag) == 0
    predictions, _, report = read_outputs(out)
    served, candidate = probabilities(model_tag, customers), probabilities(candidate_tag, customers)
    by_id = predictions.set_index("customer_id").loc[[r["customer_id"] for r in customers]]
    assert np.allclose(by_id["churn_probability"], served, rtol=0, atol=1e-12)
    assert np.allclose(by_id["candidate_churn_probability"], candidate, rtol=0, atol=1e-12)

    cmp = report["candidate"]["comparison"]
    s, k = served >= 0.5, candidate >= 0.5
    delta = np.abs(served - candidate)
    assert cmp["pairs"] == ROWS
    assert cmp["agreement"] == pytest.approx(np.mean(s == k))
    assert cmp["table"] == {
        "served_0_candidate_0": int(np.sum(~s & ~k)),
        "served_0_candidate_1": int(np.sum(~s & k)),
        "served_1_candidate_0": int(np.sum(s & ~k)),
        "served_1_candidate_1": int(np.sum(s & k)),
    }
    assert cmp["mean_abs_delta"] == pytest.approx(delta.mean())
    assert cmp["max_abs_delta"] == pytest.approx(delta.max())
    p95 = np.quantile(delta, 0.95, method="inverted_cdf")
    assert p95 - 1e-12 <= cmp["p95_abs_delta"] <= p95 + DELTA_BIN  # the histogram's resolution
    assert cmp["psi"] == pytest.approx(expected_psi(served, candidate))
    assert delta.max() > 0.01  # the two models really differ
    hist = report["candidate"]["abs_delta_histogram"]
    assert sum(hist["counts"]) == ROWS
    assert hist["bin_edges"][-1] >= delta.max()


@pytest.fixture
def labels(tmp_path, customers):
    """Labels for the first 600 customers (churned drawn at random) and 25 unknown ids."""
    rng = np.random.default_rng(3)
    ids = [r["customer_id"] for r in customers[:600]] + [f"nobody-{i}" for i in range(25)]
    frame = pd.DataFrame({"customer_id": ids, "churned": rng.integers(0, 2, len(ids))})
    frame.to_csv(tmp_path / "labels.csv", index=False)
    return tmp_path / "labels.csv", frame


def test_labels_metrics_equal_sklearn_with_a_reproducible_bootstrap(
    tmp_path, batch_input, customers, labels, model_tag, candidate_tag
):
    path, frame = labels
    args = ["--candidate-tag", candidate_tag, "--labels", str(path), "--bootstrap-resamples", "400"]
    assert run_batch([batch_input], tmp_path / "a", model_tag, *args) == 0
    lab = read_outputs(tmp_path / "a")[2]["candidate"]["labels"]
    assert lab["customers"] == 600
    assert lab["labels"] == 625
    assert lab["labels_not_scored"] == 25
    assert lab["scored_without_label"] == ROWS - 600
    assert lab["bootstrap"] == {"resamples": 400, "seed": 20, "paired": True}
    y = frame["churned"].to_numpy()[:600]
    assert lab["churned"] == int(y.sum())
    served = probabilities(model_tag, customers[:600])
    candidate = probabilities(candidate_tag, customers[:600])
    for name, metric in (("roc_auc", roc_auc_score), ("log_loss", log_loss)):
        m = lab["metrics"][name]
        assert m["served"] == pytest.approx(metric(y, served))
        assert m["candidate"] == pytest.approx(metric(y, candidate))
    m = lab["metrics"]["brier"]
    assert m["difference"] == pytest.approx(
        brier_score_loss(y, candidate) - brier_score_loss(y, served)
    )
    for m in lab["metrics"].values():
        assert m["ci95_low"] <= m["difference"] <= m["ci95_high"]

    assert run_batch([batch_input], tmp_path / "b", model_tag, *args) == 0
    assert read_outputs(tmp_path / "b")[2]["candidate"]["labels"] == lab
    assert run_batch([batch_input], tmp_path / "c", model_tag, *args, "--bootstrap-seed", "5") == 0
    other = read_outputs(tmp_path / "c")[2]["candidate"]["labels"]["metrics"]
    assert other["brier"]["ci95_low"] != lab["metrics"]["brier"]["ci95_low"]


@pytest.mark.parametrize("digits", [2, 12])  # 2: many tied scores; 12: none
def test_a_resample_weighs_each_customer_by_its_draws(digits):
    """A resample's weighted metrics equal sklearn's on the rows the resample repeats."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.uniform(0, 1, 300), digits)
    w = resample_counts(np.random.default_rng(2), len(y), 3)
    assert (w.sum(axis=1) == len(y)).all()
    got = weighted_metrics(y, p, w)
    for b in range(3):
        yy, pp = np.repeat(y, w[b]), np.repeat(p, w[b])
        assert got["roc_auc"][b] == pytest.approx(roc_auc_score(yy, pp))
        assert got["log_loss"][b] == pytest.approx(log_loss(yy, pp))
        assert got["brier"][b] == pytest.approx(brier_score_loss(yy, pp))


def test_html_shows_the_comparison_and_the_delta_histogram(
    tmp_path, batch_input, labels, model_tag, candidate_tag
):
    out = tmp_path / "out"
    args = ["--candidate-tag", candidate_tag, "--labels", str(labels[0])]
    assert run_batch([batch_input], out, model_tag, *args) == 0
    html = (out / "report.html").read_text()
    report = json.loads((out / "report.json").read_text())
    assert f"Candidate {candidate_tag} against {model_tag}" in html
    assert 'aria-label="histogram of |Δp|"' in html
    bars = html.split('aria-label="histogram of |Δp|"')[1].split("</svg>")[0].count("<rect")
    assert bars == len(report["candidate"]["abs_delta_histogram"]["counts"])
    assert "On labelled customers" in html
    assert "roc_auc" in html


def test_unknown_candidate_tag_is_a_usage_error_naming_it(tmp_path, batch_input, model_tag, caplog):
    out = tmp_path / "out"
    assert run_batch([batch_input], out, model_tag, "--candidate-tag", "churn_model:nope") == 2
    assert "churn_model:nope" in caplog.text
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--candidate-tag", "T", "--labels", "x.csv", "--engine", "dask"], "--engine local"),
        (["--labels", "x.csv"], "--labels needs --candidate-tag"),
    ],
)
def test_unsupported_combinations_are_usage_errors(
    tmp_path, batch_input, model_tag, caplog, extra, message
):
    assert run_batch([batch_input], tmp_path / "out", model_tag, *extra) == 2
    assert message in caplog.text


def test_bad_labels_file_is_a_usage_error(tmp_path, batch_input, model_tag, caplog):
    path = tmp_path / "labels.csv"
    path.write_text("customer_id,churned\nc-1,1\nc-2,maybe\n")
    args = ["--candidate-tag", model_tag, "--labels", str(path)]
    assert run_batch([batch_input], tmp_path / "out", model_tag, *args) == 2
    assert "churned must be 0 or 1" in caplog.text


@pytest.mark.slow
def test_dask_engine_gives_the_local_engines_comparison(
    tmp_path, customers, model_tag, candidate_tag
):
    """Partitions (row groups of 100) compared on Dask workers add up to the local comparison."""
    src = write_parquet(tmp_path / "in.parquet", customers, row_group_size=100)
    args = ["--candidate-tag", candidate_tag]
    assert run_batch([src], tmp_path / "local", model_tag, *args) == 0
    assert run_batch([src], tmp_path / "dask", model_tag, *args, "--engine", "dask") == 0
    local, dask = (read_outputs(tmp_path / d) for d in ("local", "dask"))
    mine, theirs = local[2]["candidate"], dask[2]["candidate"]
    assert theirs["comparison"]["pairs"] == ROWS
    assert (theirs["verdict"], theirs["reasons"]) == (mine["verdict"], mine["reasons"])
    assert theirs["abs_delta_histogram"] == mine["abs_delta_histogram"]
    cmp_local, cmp_dask = mine["comparison"], theirs["comparison"]
    assert cmp_dask["table"] == cmp_local["table"]
    for figure in ("agreement", "mean_abs_delta", "p95_abs_delta", "max_abs_delta", "psi"):
        assert cmp_dask[figure] == pytest.approx(cmp_local[figure], rel=1e-9, abs=1e-12)
    key = ["customer_id", "candidate_churn_probability"]
    by_id = [p[key].sort_values("customer_id").reset_index(drop=True) for p in (local[0], dask[0])]
    pd.testing.assert_frame_equal(*by_id)


@pytest.mark.slow
def test_backtest_equals_the_services_comparison_on_the_same_customers(
    tmp_path, batch_input, customers, logs_dir, service_env, model_tag, candidate_tag
):
    """The issue's check: the same customers shadow-scored by a served bento with the candidate
    give the `/models/candidate` comparison and verdict the backtest reports."""
    out = tmp_path / "out"
    assert run_batch([batch_input], out, model_tag, "--candidate-tag", candidate_tag) == 0
    backtest = read_outputs(out)[2]["candidate"]
    proc = start_bento(logs_dir, {**service_env, "CHURN_CANDIDATE_TAG": candidate_tag})
    try:
        with httpx.Client(base_url=proc.url, timeout=60) as client:
            r = client.post("/predict/dataframe", json=customers)
            assert r.status_code == 200, r.text
            served: dict = {}

            def compared() -> bool:
                served.update(client.get("/models/candidate").json())
                return served["comparison"]["pairs"] >= ROWS

            wait_until(compared, 120, f"{ROWS} pairs compared by the service")
    finally:
        proc.stop()
    assert (served["served"], served["candidate"]) == (model_tag, candidate_tag)
    mine, theirs = backtest["comparison"], served["comparison"]
    assert theirs["pairs"] == ROWS
    for exact in ("pairs", "threshold", "table"):
        assert mine[exact] == theirs[exact]
    for figure in ("agreement", "mean_abs_delta", "p95_abs_delta", "max_abs_delta", "psi"):
        assert mine[figure] == pytest.approx(theirs[figure], rel=1e-9, abs=1e-12)
    assert (backtest["verdict"], backtest["reasons"]) == (served["verdict"], served["reasons"])
    assert backtest["thresholds"] == served["thresholds"]
