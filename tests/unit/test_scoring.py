"""Features and scoring: one predict_proba call per batch, thresholds from the contract."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from models.contract import (
    CONFIDENCE_LEVELS,
    FEATURES,
    HIGH_CONFIDENCE,
    MEDIUM_CONFIDENCE,
    PREDICTION_COLUMNS,
)
from models.features import days_since_purchase, matrix_from_frame, matrix_from_records
from models.frames import validate_frame
from models.predict import score_frame, score_requests, split_requests
from models.predictor import ChurnPredictor, scores_from_probability
from models.schema import CustomerFeatures

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


def record(i: int) -> dict:
    return {
        "customer_id": f"c-{i}",
        "features": {
            "age": 20 + i % 60,
            "income": 1000.0 * i,
            "purchase_history": i % 7,
            "last_purchase_date": f"2026-0{1 + i % 6}-1{i % 10}",
        },
    }


def test_n_customers_cost_one_predict_proba_call():
    model = CountingModel()
    predictor = ChurnPredictor(model, Identity(), "churn_model:test", {})
    valid, rejected = split_requests([record(i) for i in range(250)], AS_OF)
    scores = score_requests(predictor, [r for _, r in valid], AS_OF)
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
    records = [record(i) for i in range(40)]
    flat = pd.DataFrame([{"customer_id": r["customer_id"], **r["features"]} for r in records])
    valid, _ = split_requests(records, AS_OF)
    from_records = matrix_from_records([r.features for _, r in valid], AS_OF)
    from_frame = matrix_from_frame(validate_frame(flat, AS_OF))
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
    s = scores_from_probability(np.array([p]))
    assert s.row(0) == pytest.approx(
        {
            "prediction": prediction,
            "churn_probability": p,
            "probability": probability,
            "confidence_level": level,
        }
    )


def test_score_frame_reports_every_row_in_order(predictor):
    flat = [{"customer_id": r["customer_id"], **r["features"]} for r in map(record, range(5))]
    flat[2]["income"] = -1
    out = score_frame(predictor, pd.DataFrame(flat), AS_OF)
    assert list(out.columns) == [*PREDICTION_COLUMNS, "error"]
    assert out["customer_id"].tolist() == [f"c-{i}" for i in range(5)]
    assert out["error"].tolist() == [None, None, "income: must be >= 0", None, None]
    assert out["churn_probability"].isna().tolist() == [False, False, True, False, False]


def test_real_model_probability_matches_sklearn(predictor):
    valid, _ = split_requests([record(i) for i in range(20)], AS_OF)
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


def test_band_codes_index_the_confidence_levels_at_every_edge():
    edges = [0.0, 1.0, 0.5, MEDIUM_CONFIDENCE, HIGH_CONFIDENCE, 1 - MEDIUM_CONFIDENCE]
    edges += [1 - HIGH_CONFIDENCE]
    near = [np.nextafter(e, d) for e in edges for d in (0.0, 1.0)]
    p = np.clip(np.concatenate([edges, near, np.random.default_rng(0).random(10_000)]), 0, 1)
    scores = scores_from_probability(p)
    levels = np.array(CONFIDENCE_LEVELS, object)[scores.band]
    assert levels.tolist() == scores.confidence_level.tolist()
