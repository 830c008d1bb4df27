"""One answer on every path: the shared corpus scored through each path gives the same bits.

The reference is the in-process predictor on the column-wise path; every other path must match
it exactly (no tolerance: a lone row is scored as two rows, see ChurnPredictor), and reject each
invalid record with the same `field:code`.
"""

import httpx
import numpy as np
import pandas as pd
import pytest

from models.contract import ID_COLUMN, MAX_BATCH_ITEMS
from models.predict import score_frame
from models.samples import request
from tests.reliability.corpus import AS_OF, invalid_records, valid_customers


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    return valid_customers()


@pytest.fixture(scope="module")
def reference(predictor, corpus) -> pd.DataFrame:
    out, _ = score_frame(predictor, pd.DataFrame(corpus), AS_OF)
    assert out["error"].isna().all(), out["error"].dropna().head()
    return out.set_index(ID_COLUMN)


@pytest.fixture(scope="module")
def client(bento):
    with httpx.Client(base_url=bento.url, timeout=60) as c:
        yield c


def assert_same(reference: pd.DataFrame, got: dict[str, tuple[int, float]]) -> None:
    assert set(got) == set(reference.index)
    ids = list(reference.index)
    expected = reference.loc[ids, "churn_probability"].to_numpy()
    actual = np.array([got[i][1] for i in ids])
    mismatched = [i for i, e, a in zip(ids, expected, actual, strict=True) if e != a]
    assert not mismatched, f"{len(mismatched)} differ, e.g. {mismatched[:5]}"
    assert [got[i][0] for i in ids] == reference.loc[ids, "prediction"].tolist()


def test_predict_endpoint_matches_bit_for_bit(client, corpus, reference):
    got = {}
    for record in corpus[:300] + corpus[-10:]:
        body = client.post("/predict", json=request(record)).json()
        got[body[ID_COLUMN]] = (body["prediction"], body["churn_probability"])
    assert_same(reference.loc[list(got)], got)


def test_batch_endpoint_matches_bit_for_bit(client, corpus, reference):
    got = {}
    for start in range(0, len(corpus), MAX_BATCH_ITEMS):
        chunk = [request(r) for r in corpus[start : start + MAX_BATCH_ITEMS]]
        body = client.post("/predict/batch", json={"requests": chunk}).json()
        assert body["error_count"] == 0
        got |= {
            p[ID_COLUMN]: (p["prediction"], p["churn_probability"]) for p in body["predictions"]
        }
    assert_same(reference, got)


def test_dataframe_endpoint_matches_bit_for_bit(client, corpus, reference):
    rows = client.post("/predict/dataframe", json=corpus).json()
    assert_same(reference, {r[ID_COLUMN]: (r["prediction"], r["churn_probability"]) for r in rows})


def codes_from_items(errors: list[dict]) -> dict[int, str]:
    return {e["index"]: f"{e['field']}:{e['code']}" for e in errors}


def test_invalid_records_get_the_same_reason_on_every_http_path(client):
    records = invalid_records()
    expected = [code for _, code in records]

    single = []
    for record, _ in records:
        resp = client.post("/predict", json=request(record))
        assert resp.status_code == 400, resp.text
        single.append(resp.json()["detail"][0])
    single_fields = [str(d["loc"][-1]) for d in single]
    assert single_fields == [code.split(":")[0] for code in expected]

    batch = client.post(
        "/predict/batch", json={"requests": [request(r) for r, _ in records]}
    ).json()
    assert batch["success_count"] == 0
    by_index = codes_from_items(batch["errors"])
    assert [by_index[i] for i in range(len(records))] == expected

    frame = client.post("/predict/dataframe", json=[r for r, _ in records]).json()
    reasons = [row["error"] for row in frame]
    batch_reasons = {e["index"]: e["error"] for e in batch["errors"]}
    assert reasons == [batch_reasons[i] for i in range(len(records))]
