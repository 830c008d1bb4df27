"""The served bento over real HTTP: the reference API, and a 4xx naming the field for bad input."""

import json

import httpx
import pandas as pd
import pytest

from models.contract import FEATURES, MAX_BATCH_ITEMS
from models.samples import record, request
from tests.conftest import AS_OF
from tests.expected import confidence_level, feature_matrix

# Integer age and income, as a JSON client writes them (test_non_finite_numbers_are_a_400
# rewrites the text `"age": 42`).
FLAT = record(age=42, income=55000)
GOOD = request(FLAT)


@pytest.fixture(scope="module")
def client(bento):
    with httpx.Client(base_url=bento.url, timeout=30) as c:
        yield c


def with_feature(**changes) -> dict:
    return request(FLAT, **changes)


def test_predict_returns_the_reference_response(client, predictor, model_tag):
    resp = client.post("/predict", json={**GOOD, "request_id": "r-42", "priority": "high"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["customer_id"] == "c-1"
    assert body["request_id"] == "r-42"
    assert body["model_version"] == model_tag
    assert body["features_used"] == list(FEATURES)
    expected = predictor.churn_probability(
        [[42.0, 55000.0, 12.0, float((AS_OF - pd.Timestamp("2026-06-01").date()).days)]]
    )[0]
    assert body["churn_probability"] == expected
    assert body["prediction"] == int(expected >= 0.5)
    assert body["probability"] == pytest.approx(max(expected, 1 - expected))
    assert body["confidence_level"] == confidence_level(expected)
    assert body["timestamp"].endswith("Z")
    # Seconds spent on the server: some, and less than the client waited for the answer.
    assert 0 < body["processing_time"] < resp.elapsed.total_seconds()


def test_predict_makes_a_request_id_when_none_is_given(client):
    ids = {client.post("/predict", json=GOOD).json()["request_id"] for _ in range(3)}
    assert len(ids) == 3


def field_of(resp: httpx.Response) -> list[str]:
    """The field names a 4xx body points at (BentoML's pydantic errors or our own)."""
    return [str(d["loc"][-1]) for d in resp.json()["detail"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # Without `features` the record is read as flat, and its features are missing.
        ({"customer_id": "c-1"}, "age"),
        (with_feature(age=-1), "age"),
        (with_feature(age="abc"), "age"),
        (with_feature(age=121), "age"),
        (with_feature(income=-5), "income"),
        (with_feature(purchase_history=1.5), "purchase_history"),
        (with_feature(purchase_history="many"), "purchase_history"),
        (with_feature(last_purchase_date="not-a-date"), "last_purchase_date"),
        (with_feature(last_purchase_date="2026-13-01"), "last_purchase_date"),
        (with_feature(last_purchase_date="2026-07-01"), "last_purchase_date"),
        ({**GOOD, "customer_id": ""}, "customer_id"),
        # An absent id, an unusable priority and unknown fields are accepted (models.policy):
        # tests/serving/test_policy_http.py.
    ],
)
def test_bad_predict_input_is_a_400_naming_the_field(client, body, field):
    resp = client.post("/predict", json=body)
    assert resp.status_code == 400, resp.text
    assert field in field_of(resp)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_a_400(client, value):
    raw = json.dumps(GOOD).replace('"age": 42', f'"age": {value}')
    resp = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert "age" in field_of(resp)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"", "application/json"),
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
    ],
)
def test_empty_or_unparseable_bodies_are_4xx(client, content, content_type):
    resp = client.post("/predict", content=content, headers={"content-type": content_type})
    assert 400 <= resp.status_code < 500, resp.text


def test_wrong_content_type_is_4xx(client):
    resp = client.post("/predict", content=b"age=42", headers={"content-type": "text/plain"})
    assert 400 <= resp.status_code < 500


def test_batch_scores_good_items_and_reports_bad_ones(client, predictor):
    items = [GOOD, with_feature(age=-3), {**GOOD, "customer_id": "c-2"}, "not an object"]
    resp = client.post("/predict/batch", json={"requests": items, "batch_id": "b-1"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["batch_id"] == "b-1"
    assert (body["total_processed"], body["success_count"], body["error_count"]) == (4, 2, 2)
    assert [p["customer_id"] for p in body["predictions"]] == ["c-1", "c-2"]
    single = client.post("/predict", json=GOOD).json()
    assert body["predictions"][0]["churn_probability"] == single["churn_probability"]
    errors = {e["index"]: e for e in body["errors"]}
    assert errors[1]["customer_id"] == "c-1"
    assert errors[1]["field"] == "age"
    assert errors[1]["error"] == "age: must be between 0 and 120"
    assert errors[3]["customer_id"] is None


def test_batch_over_the_limit_is_a_400_saying_so(client):
    resp = client.post("/predict/batch", json={"requests": [GOOD] * (MAX_BATCH_ITEMS + 1)})
    assert resp.status_code == 400
    assert "requests" in field_of(resp)
    assert str(MAX_BATCH_ITEMS) in resp.text


def test_batch_of_the_maximum_size_is_scored(client):
    items = [{**GOOD, "customer_id": f"c-{i}"} for i in range(MAX_BATCH_ITEMS)]
    body = client.post("/predict/batch", json={"requests": items}).json()
    assert body["success_count"] == MAX_BATCH_ITEMS


def flat(body: dict) -> dict:
    return {"customer_id": body["customer_id"], **body["features"]}


def test_dataframe_endpoint_scores_rows_and_flags_bad_ones(client):
    rows = [flat(GOOD), flat(with_feature(income="lots")), flat({**GOOD, "customer_id": "c-3"})]
    resp = client.post("/predict/dataframe", json=rows)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert [r["customer_id"] for r in out] == ["c-1", "c-1", "c-3"]
    assert out[1]["error"] == "income: must be a number"
    assert out[1]["churn_probability"] is None
    single = client.post("/predict", json=GOOD).json()
    assert out[0]["churn_probability"] == single["churn_probability"]
    assert out[0]["error"] is None


@pytest.mark.parametrize("payload", [[], [{"x": 1}], [{"customer_id": "c"}]])
def test_dataframe_endpoint_never_fails_the_frame(client, payload):
    resp = client.post("/predict/dataframe", json=payload)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()) == len(payload)
    assert all(r["error"] for r in resp.json())


def test_openapi_documents_the_three_endpoints(client):
    paths = client.get("/docs.json").json()["paths"]
    assert {"/predict", "/predict/batch", "/predict/dataframe"} <= set(paths)


def test_the_smallest_valid_features_are_scored_like_any_others(client, predictor):
    zeros = record(age=0, income=0, purchase_history=0)
    body = client.post("/predict", json=request(zeros)).json()
    (expected,) = predictor.churn_probability(feature_matrix([zeros], AS_OF))
    assert body["churn_probability"] == expected
    assert body["probability"] == pytest.approx(max(expected, 1 - expected))
    assert body["confidence_level"] == confidence_level(expected)
