"""Reason codes: exact for the linear model, model-agnostic for any other, and the same numbers
whatever the batch they are computed in."""

import numpy as np
import pytest
from scipy.special import logit

from models.contract import FEATURES
from models.explain import Reasons, explain, reference_values
from models.predictor import ChurnPredictor
from tests.models import fitted
from tests.models.fitted import customers


def test_linear_contributions_add_up_to_the_logit(predictor):
    matrix = customers(500)
    reasons = explain(predictor, matrix)
    p = predictor.churn_probability(matrix)
    total = reasons.base_log_odds + reasons.contributions.sum(axis=1)
    np.testing.assert_allclose(total, logit(p), rtol=0, atol=1e-9)
    assert reasons.exact


def test_linear_contribution_is_coefficient_times_standardized_value(predictor):
    matrix = customers(3)
    reasons = explain(predictor, matrix)
    scaler, model = predictor.scaler, predictor.model
    # Independent of the implementation: sklearn's own transform and coefficients.
    expected = scaler.transform(matrix) * model.coef_[0]
    np.testing.assert_allclose(reasons.contributions, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(reasons.base_log_odds, np.full(3, model.intercept_[0]))


def test_a_row_lists_every_feature_largest_first(predictor):
    matrix = customers(20)
    reasons = explain(predictor, matrix)
    for i in range(len(matrix)):
        row = reasons.row(i)
        sizes = [abs(r["contribution"]) for r in row["reasons"]]
        assert sizes == sorted(sizes, reverse=True)
        assert sorted(r["feature"] for r in row["reasons"]) == sorted(FEATURES)
        for r in row["reasons"]:
            assert r["effect"] == ("raises" if r["contribution"] > 0 else "lowers")
            assert r["value"] == matrix[i, FEATURES.index(r["feature"])]


def test_reasons_do_not_depend_on_the_batch(predictor):
    matrix = customers(50)
    whole = explain(predictor, matrix)
    for i in (0, 17, 49):
        alone = explain(predictor, matrix[i : i + 1])
        np.testing.assert_array_equal(alone.contributions[0], whole.contributions[i])


@pytest.fixture(scope="module")
def boosted() -> ChurnPredictor:
    return fitted.boosted()


def test_generic_method_is_the_change_in_logit_when_a_feature_is_set_to_its_mean(boosted):
    matrix = customers(40, seed=3)
    reasons = explain(boosted, matrix)
    assert not reasons.exact
    reference = reference_values(boosted)
    np.testing.assert_array_equal(reference, boosted.scaler.mean_)

    def p(m: np.ndarray) -> np.ndarray:
        proba = boosted.model.predict_proba(boosted.scaler.transform(m))[:, 1]
        return logit(np.clip(proba, 1e-15, 1 - 1e-15))

    for j in range(len(FEATURES)):
        moved = matrix.copy()
        moved[:, j] = reference[j]
        np.testing.assert_allclose(reasons.contributions[:, j], p(matrix) - p(moved), atol=1e-12)
    np.testing.assert_allclose(reasons.base_log_odds, p(reference[np.newaxis, :])[0], atol=1e-12)


def test_a_customer_at_the_reference_has_no_contributions(boosted, predictor):
    for model in (boosted, predictor):
        reference = reference_values(model)[np.newaxis, :]
        if model is predictor:
            reference = model.scaler.mean_[np.newaxis, :]
        np.testing.assert_allclose(explain(model, reference).contributions, 0.0, atol=1e-12)


def test_order_is_a_stable_sort_by_size_ties_in_feature_order():
    rng = np.random.default_rng(5)
    contributions = rng.choice([-2.0, -1.0, 0.0, 1.0, 2.0], size=(2000, 4))  # many ties
    reasons = Reasons(np.zeros(2000), contributions, contributions, exact=True)
    expected = np.argsort(-np.abs(contributions), axis=1, kind="stable")
    np.testing.assert_array_equal(reasons.order(), expected)
