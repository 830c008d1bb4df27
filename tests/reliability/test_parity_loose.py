"""One answer on every path for what real producers send: extra fields, integer ids,
`days_since_purchase` instead of a date, epoch event times. Each loose record must get exactly
the bits of its canonical twin on all five paths (/predict, /predict/batch, /predict/dataframe,
a batch file, the Kafka bridge)."""

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from models.contract import ID_COLUMN, MAX_BATCH_ITEMS
from models.predict import score_frame
from tests.batch.conftest import run_batch
from tests.reliability.corpus import AS_OF, valid_customers
from tests.reliability.test_parity import assert_same
from tests.streaming.support import drain

N = 300
FEATURES = ("age", "income", "purchase_history", "last_purchase_date")


def canonical() -> list[dict]:
    """Customers whose ids are decimal text, so an integer twin has the same id."""
    return [{**r, ID_COLUMN: str(900_000 + i)} for i, r in enumerate(valid_customers(N))]


def loosen(record: dict, i: int) -> dict:
    """The same customer as a producer might send it: an integer id always, and in turn extra
    fields, `days_since_purchase` in place of the date, or both."""
    loose = {**record, ID_COLUMN: int(record[ID_COLUMN])}
    if i % 3 in (1, 2):
        day = datetime.fromisoformat(loose.pop("last_purchase_date")).date()
        loose["days_since_purchase"] = (AS_OF - day).days
    if i % 3 in (0, 2):
        loose |= {"segment": "gold", "score_v2": 0.5, "tags": ["a", "b"], "meta": {"x": 1}}
    return loose


def nested(flat: dict, i: int) -> dict:
    features = {k: v for k, v in flat.items() if k != ID_COLUMN}
    body = {ID_COLUMN: flat[ID_COLUMN], "features": features}
    if i % 2:
        body["channel"] = "web"  # an unknown top-level field too
    return body


@pytest.fixture(scope="module")
def twins() -> tuple[list[dict], list[dict]]:
    records = canonical()
    return records, [loosen(r, i) for i, r in enumerate(records)]


@pytest.fixture(scope="module")
def reference(predictor, twins) -> pd.DataFrame:
    out, _ = score_frame(predictor, pd.DataFrame(twins[0]), AS_OF)
    assert out["error"].isna().all()
    return out.set_index(ID_COLUMN)


@pytest.fixture(scope="module")
def client(bento):
    with httpx.Client(base_url=bento.url, timeout=60) as c:
        yield c


def pairs(rows: list[dict]) -> dict[str, tuple[int, float]]:
    return {r[ID_COLUMN]: (r["prediction"], r["churn_probability"]) for r in rows}


def test_predict(client, twins, reference):
    got = []
    for i, loose in enumerate(twins[1]):
        resp = client.post("/predict", json=nested(loose, i))
        assert resp.status_code == 200, resp.text
        got.append(resp.json())
    assert_same(reference, pairs(got))


def test_predict_batch(client, twins, reference):
    items = [nested(r, i) for i, r in enumerate(twins[1])]
    got = []
    for start in range(0, len(items), MAX_BATCH_ITEMS):
        body = client.post("/predict/batch", json={"requests": items[start:][:MAX_BATCH_ITEMS]})
        assert body.status_code == 200, body.text
        assert body.json()["error_count"] == 0, body.json()["errors"][:3]
        got += body.json()["predictions"]
    assert_same(reference, pairs(got))


def test_predict_dataframe(client, twins, reference):
    resp = client.post("/predict/dataframe", json=twins[1])
    assert resp.status_code == 200, resp.text
    rows = resp.json()
    assert [r["error"] for r in rows] == [None] * N
    assert_same(reference, pairs(rows))


@pytest.mark.parametrize("shape", ["flat", "nested"])
def test_batch_file(tmp_path: Path, model_tag, twins, reference, shape):
    lines = twins[1] if shape == "flat" else [nested(r, i) for i, r in enumerate(twins[1])]
    source = tmp_path / "loose.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert run_batch([source], tmp_path / "out", model_tag) == 0
    scored = pq.read_table(tmp_path / "out" / "predictions.parquet").to_pandas()
    assert_same(reference, pairs(scored.to_dict("records")))


def epoch(i: int) -> object:
    """Event times as producers write them, in turn: epoch seconds, epoch milliseconds, ISO."""
    moment = datetime(2026, 6, 30, 12, 0, i % 60, tzinfo=UTC)
    return [int(moment.timestamp()), int(moment.timestamp() * 1000), moment.isoformat()][i % 3]


def test_kafka_bridge(kafka_broker, bento, logs_dir, twins, reference):
    events = [{**r, "timestamp": epoch(i)} for i, r in enumerate(twins[1])]
    results, errors, _ = drain(
        kafka_broker.port, logs_dir, "loose", events, "--service-url", bento.url
    )
    assert errors == []
    assert_same(reference, pairs(results))
    assert {r.get("event_time_source") for r in results} == {"message"}
    stamps = {r[ID_COLUMN]: r["event_timestamp"] for r in results}
    for i, record in enumerate(twins[0]):
        expected = datetime(2026, 6, 30, 12, 0, i % 60, tzinfo=UTC)
        assert datetime.fromisoformat(stamps[record[ID_COLUMN]]) == expected


def test_the_reference_is_the_models_own_answer(predictor, twins, reference):
    """The reference itself, recomputed here from the raw fields without the project's features
    or scoring code: days from the date, the matrix in the model's order, then scikit-learn's
    own `transform` and `predict_proba` on the stored scaler and classifier."""
    rows = twins[0]
    days = [(AS_OF - datetime.fromisoformat(r["last_purchase_date"]).date()).days for r in rows]
    matrix = np.array(
        [[r["age"], r["income"], r["purchase_history"], d] for r, d in zip(rows, days, strict=True)]
    )
    churn = list(predictor.model.classes_).index(1)
    expected = predictor.model.predict_proba(predictor.scaler.transform(matrix))[:, churn]
    got = reference.loc[[r[ID_COLUMN] for r in rows], "churn_probability"].to_numpy()
    np.testing.assert_array_equal(got, expected)
