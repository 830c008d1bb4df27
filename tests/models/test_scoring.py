"""Features and scoring: one predict_proba call per batch, thresholds from the contract."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from models.contract import (
    DECISION_THRESHOLD,
    FEATURES,
    HIGH_CONFIDENCE,
    MEDIUM_CONFIDENCE,
    PREDICTION_COLUMNS,
)
from models.features import days_since_purchase, matrix_from_frame, matrix_from_records
from models.frames import validate_frame
from models.predict import score_frame, split_requests
from models.prediction import Predictions
from models.predictor import ChurnPredictor, scores_from_probability
from models.samples import records, request
from models.schema import CustomerFeatures
from tests.expected import confidence_level

AS_OF = date(2026, 6, 30)


class CountingModel:
    """A fake classifier that records how often it is called (unit tests only)."""

    classes_ = np.array([0, 1])

    def __init__(self) -> None:
        self.calls = 0

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        p = 1 / (1 + np.exp(-x[:, 3] / 100))
        return np.column_stack([1 - p, p])


class Identity:
    def transform(self, x: np.ndarray) -> np.ndarray:
        return x


def test_n_customers_cost_one_predict_proba_call():
    model = CountingModel()
    predictor = ChurnPredictor(model, Identity(), "churn_model:test", {})
    valid, rejected = split_requests([request(r) for r in records(250)], AS_OF)
    scores = predictor.score(matrix_from_records([r.features for _, r in valid], AS_OF))
    assert (len(scores), len(rejected), model.calls) == (250, 0, 1)


def test_matrix_columns_follow_features_order():
    features = CustomerFeatures(
        age=30, income=100.0, purchase_history=2, last_purchase_date="2026-06-20"
    )
    matrix = matrix_from_records([features], AS_OF)
    assert dict(zip(FEATURES, matrix[0], strict=True)) == {
        "age": 30.0,
        "income": 100.0,
        "purchase_history": 2.0,
        "days_since_purchase": 10.0,
    }
    assert days_since_purchase(date(2026, 6, 30), AS_OF) == 0


def test_record_and_frame_paths_build_the_same_matrix():
    flat = records(40)
    valid, _ = split_requests([request(r) for r in flat], AS_OF)
    from_records = matrix_from_records([r.features for _, r in valid], AS_OF)
    from_frame = matrix_from_frame(validate_frame(pd.DataFrame(flat), AS_OF))
    assert np.array_equal(from_records, from_frame)


@pytest.mark.parametrize(
    ("p", "prediction", "probability", "level"),
    [
        (0.95, 1, 0.95, "high"),
        (0.9, 1, 0.9, "high"),
        (0.75, 1, 0.75, "medium"),
        (0.5, 1, 0.5, "low"),
        (0.2, 0, 0.8, "medium"),
        (0.01, 0, 0.99, "high"),
    ],
)
def test_decision_and_confidence_bands(p, prediction, probability, level):
    s = Predictions(["c-1"], np.zeros((1, 4)), scores_from_probability(np.array([p])), "m", AS_OF)
    assert s.row(0) == pytest.approx(
        {
            "customer_id": "c-1",
            "model_version": "m",
            "prediction": prediction,
            "churn_probability": p,
            "probability": probability,
            "confidence_level": level,
        }
    )


def test_score_frame_reports_every_row_in_order(predictor):
    flat = records(5)
    flat[2]["income"] = -1
    out, _ = score_frame(predictor, pd.DataFrame(flat), AS_OF)
    assert list(out.columns) == [*PREDICTION_COLUMNS, "error"]
    assert out["customer_id"].tolist() == [f"c-{i}" for i in range(5)]
    assert out["error"].tolist() == [None, None, "income: must be >= 0", None, None]
    assert out["churn_probability"].isna().tolist() == [False, False, True, False, False]


def test_real_model_probability_matches_sklearn(predictor):
    valid, _ = split_requests([request(r) for r in records(20)], AS_OF)
    matrix = matrix_from_records([r.features for _, r in valid], AS_OF)
    expected = predictor.model.predict_proba(predictor.scaler.transform(matrix))[:, 1]
    assert np.array_equal(predictor.churn_probability(matrix), expected)


def test_a_row_scores_the_same_bits_alone_and_in_any_batch(predictor):
    rng = np.random.default_rng(3)
    matrix = np.column_stack(
        [
            rng.uniform(0, 120, 600),
            rng.uniform(0, 2e5, 600),
            rng.integers(0, 30, 600),
            rng.integers(0, 900, 600),
        ]
    ).astype(np.float64)
    whole = predictor.churn_probability(matrix)
    alone = np.array([predictor.churn_probability(matrix[i : i + 1])[0] for i in range(200)])
    assert np.array_equal(alone, whole[:200])
    assert np.array_equal(predictor.churn_probability(matrix[5:37]), whole[5:37])


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_linear_shortcut_gives_predict_proba_bits(predictor, n):
    assert predictor.linear is not None  # the trained model is a logistic regression
    rng = np.random.default_rng(n)
    matrix = np.column_stack(
        [
            rng.uniform(0, 120, n),
            rng.uniform(0, 2e5, n),
            rng.integers(0, 30, n),
            rng.integers(0, 900, n),
        ]
    ).astype(np.float64)
    general = ChurnPredictor(predictor.model, predictor.scaler, predictor.tag, {})
    assert np.array_equal(predictor.churn_probability(matrix), general.churn_probability(matrix))
    sklearn = predictor.model.predict_proba(predictor.scaler.transform(matrix))[:, 1]
    if n > 1:
        assert np.array_equal(predictor.churn_probability(matrix), sklearn)


def test_other_models_use_predict_proba():
    predictor = ChurnPredictor(CountingModel(), Identity(), "churn_model:test", {})
    assert predictor.linear is None
    predictor.churn_probability(np.ones((3, 4)))
    assert predictor.model.calls == 1


# P(churn) -> its confidence level, written out by hand from the contract's rule: the predicted
# class's probability (P(churn) from 0.5 up, 1 - P(churn) below) is "high" from 0.9, "medium"
# from 0.7, "low" below. At, just below and just above each edge, on both sides of 0.5
# (np.nextafter(x, 0) is the float just under x).
BANDS = [
    (0.0, "high"),
    (0.05, "high"),
    (0.1, "high"),  # 1 - 0.1 is 0.9
    (0.1 + 1e-9, "medium"),
    (0.2, "medium"),
    (0.3, "medium"),  # 1 - 0.3 is 0.7
    (0.3 + 1e-9, "low"),
    (0.4, "low"),
    (np.nextafter(0.5, 0), "low"),
    (0.5, "low"),
    (0.6, "low"),
    (np.nextafter(0.7, 0), "low"),
    (0.7, "medium"),
    (0.8, "medium"),
    (np.nextafter(0.9, 0), "medium"),
    (0.9, "high"),
    (0.95, "high"),
    (1.0, "high"),
]


def test_the_contract_thresholds_are_the_ones_the_tables_are_written_for():
    assert (DECISION_THRESHOLD, MEDIUM_CONFIDENCE, HIGH_CONFIDENCE) == (0.5, 0.7, 0.9)


def test_confidence_levels_at_and_around_every_threshold():
    p = np.array([p for p, _ in BANDS])
    expected = [level for _, level in BANDS]
    scores = scores_from_probability(p)
    assert scores.confidence_level.tolist() == expected
    scored = Predictions([None] * len(p), np.zeros((len(p), 4)), scores, "m", AS_OF)
    assert [scored.row(i)["confidence_level"] for i in range(len(p))] == expected
    assert [confidence_level(float(x)) for x in p] == expected


def test_confidence_levels_of_many_probabilities_follow_the_rule():
    p = np.random.default_rng(0).random(10_000)
    levels = scores_from_probability(p).confidence_level.tolist()
    assert levels == [confidence_level(x) for x in p.tolist()]
    assert {"high", "medium", "low"} == set(levels)  # every level drawn, so each is checked
