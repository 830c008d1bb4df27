"""The batch script and the served /predict give the same customer the same answer, to the bit."""

import httpx
import pytest

from models.samples import records
from tests.batch.conftest import read_outputs, run_batch, write_parquet


@pytest.fixture(scope="module")
def client(bento):
    with httpx.Client(base_url=bento.url, timeout=30) as c:
        yield c


def test_batch_and_service_agree_bit_for_bit(client, tmp_path, model_tag):
    rows = records(25)
    rows[3]["income"] = 0.1 + 0.2  # values whose float rounding would show any divergence
    rows[4]["age"] = 1 / 3 * 100
    src = write_parquet(tmp_path / "in.parquet", rows)
    assert run_batch([src], tmp_path / "out", model_tag, "--chunk-rows", "7") == 0
    predictions = read_outputs(tmp_path / "out")[0].set_index("customer_id")
    assert len(predictions) == len(rows)
    for row in rows:
        features = {k: v for k, v in row.items() if k != "customer_id"}
        resp = client.post(
            "/predict", json={"customer_id": row["customer_id"], "features": features}
        )
        assert resp.status_code == 200, resp.text
        served, batch = resp.json(), predictions.loc[row["customer_id"]]
        assert served["churn_probability"] == batch["churn_probability"]  # exact, not approx
        assert served["probability"] == batch["probability"]
        assert served["prediction"] == batch["prediction"]
        assert served["confidence_level"] == batch["confidence_level"]
        assert served["model_version"] == batch["model_version"]
