"""Reason codes: the same numbers for the same customer on every path that gives them, equal to
coefficient x standardized value computed here from sklearn's own scaler and model."""

from datetime import date

import httpx
import numpy as np
import pytest

from models.contract import FEATURES, ID_COLUMN
from models.samples import request
from tests.batch.conftest import read_outputs, run_batch, write_parquet
from tests.reliability.corpus import AS_OF, valid_customers
from tests.streaming.support import drain

N = 40


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    # The random customers, not the range edges (whose probabilities round to 0 or 1).
    return valid_customers(N + 9)[9:]


@pytest.fixture(scope="module")
def expected(predictor, rows) -> dict[str, np.ndarray]:
    """Per customer, the contribution of each feature (FEATURES order)."""
    days = [(AS_OF - date.fromisoformat(r["last_purchase_date"][:10])).days for r in rows]
    matrix = np.array(
        [[r["age"], r["income"], r["purchase_history"], d] for r, d in zip(rows, days, strict=True)]
    )
    contributions = predictor.scaler.transform(matrix) * predictor.model.coef_[0]
    return {r[ID_COLUMN]: contributions[i] for i, r in enumerate(rows)}


@pytest.fixture(scope="module")
def client(bento):
    with httpx.Client(base_url=bento.url, timeout=60) as c:
        yield c


def check_full(answer: dict, want: np.ndarray, intercept: float) -> None:
    reasons = answer["reasons"]
    assert [r["feature"] for r in reasons] == [FEATURES[j] for j in np.argsort(-np.abs(want))]
    got = np.array(
        [next(r["contribution"] for r in reasons if r["feature"] == f) for f in FEATURES]
    )
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert answer["base_log_odds"] == pytest.approx(intercept, abs=1e-15)
    logit = np.log(answer["churn_probability"] / (1 - answer["churn_probability"]))
    assert answer["base_log_odds"] + got.sum() == pytest.approx(logit, abs=1e-9)


def test_predict_and_batch_give_the_same_reasons(client, predictor, rows, expected):
    intercept = float(predictor.model.intercept_[0])
    singles = {}
    for r in rows:
        resp = client.post("/predict", json={**request(r), "explain": True})
        assert resp.status_code == 200, resp.text
        singles[r[ID_COLUMN]] = resp.json()
        check_full(resp.json(), expected[r[ID_COLUMN]], intercept)
    batch = client.post(
        "/predict/batch", json={"requests": [request(r) for r in rows], "explain": True}
    ).json()
    for p in batch["predictions"]:
        assert p["reasons"] == singles[p[ID_COLUMN]]["reasons"]
        assert p["base_log_odds"] == singles[p[ID_COLUMN]]["base_log_odds"]
    plain = client.post("/predict", json=request(rows[0])).json()
    assert plain["reasons"] is None  # opt-in only
    assert plain["base_log_odds"] is None


def test_dataframe_and_batch_file_give_the_same_top_three(
    client, tmp_path, model_tag, rows, expected
):
    frame = client.post("/predict/dataframe", json=[{**r, "explain": True} for r in rows]).json()
    assert run_batch([write_parquet(tmp_path / "in.parquet", rows)], tmp_path / "o", model_tag,
                     "--explain") == 0  # fmt: skip
    batch = read_outputs(tmp_path / "o")[0].set_index(ID_COLUMN)
    for row in frame:
        want = expected[row[ID_COLUMN]]
        top = np.argsort(-np.abs(want))[:3]
        for k, j in enumerate(top, start=1):
            assert row[f"reason_{k}"] == batch.loc[row[ID_COLUMN], f"reason_{k}"] == FEATURES[j]
            assert row[f"contribution_{k}"] == batch.loc[row[ID_COLUMN], f"contribution_{k}"]
            assert row[f"contribution_{k}"] == pytest.approx(want[j], abs=1e-12)


@pytest.mark.parametrize("mode", ["service", "in-process"])
def test_the_bridge_gives_the_same_reasons(
    kafka_broker, bento, logs_dir, model_tag, predictor, rows, expected, mode
):
    how = ["--service-url", bento.url]
    if mode == "in-process":
        how = ["--in-process", "--model-tag", model_tag]
    results, errors, _ = drain(
        kafka_broker.port, logs_dir, f"reasons-{mode}", rows, "--explain", *how
    )
    assert errors == []
    intercept = float(predictor.model.intercept_[0])
    for result in results:
        check_full(result, expected[result[ID_COLUMN]], intercept)
