"""`--explain`: the three largest reasons per customer, as models.explain gives them."""

from datetime import date

import numpy as np
from scipy.special import logit

from models.contract import FEATURES
from models.samples import records
from tests.batch.conftest import read_outputs, run_batch, write_parquet
from tests.conftest import AS_OF


def test_explain_adds_the_three_largest_contributions(tmp_path, model_tag, predictor):
    rows = records(60)
    src = write_parquet(tmp_path / "in.parquet", rows)
    assert run_batch([src], tmp_path / "plain", model_tag) == 0
    assert run_batch([src], tmp_path / "out", model_tag, "--explain", "--chunk-rows", "16") == 0
    plain, explained = read_outputs(tmp_path / "plain")[0], read_outputs(tmp_path / "out")[0]
    assert list(explained.columns) == [
        *plain.columns,
        *[f"{kind}_{k}" for k in (1, 2, 3) for kind in ("reason", "contribution")],
    ]
    np.testing.assert_array_equal(plain["churn_probability"], explained["churn_probability"])
    # Independent expectation: coefficient x standardized value, from sklearn's own objects.
    days = [(AS_OF - date.fromisoformat(r["last_purchase_date"])).days for r in rows]
    matrix = np.array(
        [[r["age"], r["income"], r["purchase_history"], d] for r, d in zip(rows, days, strict=True)]
    )
    contributions = predictor.scaler.transform(matrix) * predictor.model.coef_[0]
    for i, row in explained.iterrows():
        ranked = sorted(range(4), key=lambda j, i=i: -abs(contributions[i, j]))[:3]
        assert [row[f"reason_{k + 1}"] for k in range(3)] == [FEATURES[j] for j in ranked]
        got = [row[f"contribution_{k + 1}"] for k in range(3)]
        np.testing.assert_allclose(got, contributions[i, ranked], rtol=1e-12, atol=1e-12)
    # The full set of contributions plus the intercept is the logit of the score.
    total = predictor.model.intercept_[0] + contributions.sum(axis=1)
    np.testing.assert_allclose(total, logit(explained["churn_probability"]), atol=1e-9)
