"""One answer on every path, continued: the batch script and the Kafka bridge.

Both score the shared corpus with the same as-of date and model version as the HTTP paths in
test_parity.py; both must give the reference bits and reject each invalid record with the same
reason as /predict/batch and /predict/dataframe.
"""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from models.contract import ID_COLUMN
from models.predict import score_frame
from tests.reliability.corpus import AS_OF, invalid_records, valid_customers
from tests.reliability.test_parity import assert_same
from tests.streaming.support import drain
from tests.support import ROOT


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    return valid_customers()


@pytest.fixture(scope="module")
def reference(predictor, corpus) -> pd.DataFrame:
    return score_frame(predictor, pd.DataFrame(corpus), AS_OF)[0].set_index(ID_COLUMN)


@pytest.fixture(scope="module")
def expected_reasons(predictor) -> list[str]:
    """The reason of each invalid record on the column-wise path (the HTTP tests tie the
    per-record path to it)."""
    frame = pd.DataFrame([record for record, _ in invalid_records()])
    reasons = score_frame(predictor, frame, AS_OF)[0]["error"].tolist()
    assert all(reasons)
    return reasons


def test_batch_script_gives_the_same_bits_and_reasons(
    tmp_path: Path, model_tag, corpus, reference, expected_reasons
):
    invalid = [record for record, _ in invalid_records()]
    source = tmp_path / "customers.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in [*corpus, *invalid]))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "batch.predict", str(source), "--output", str(out)]
    cmd += ["--as-of", AS_OF.isoformat(), "--model", model_tag, "--quiet"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    scored = pq.read_table(out / "predictions.parquet").to_pandas()
    assert set(scored["model_version"]) == {model_tag}
    assert_same(
        reference,
        {
            r[ID_COLUMN]: (r["prediction"], r["churn_probability"])
            for r in scored.to_dict("records")
        },
    )
    rejected = pq.read_table(out / "rejected.parquet").to_pandas().sort_values("source_row")
    assert rejected["source_row"].tolist() == list(range(len(corpus), len(corpus) + len(invalid)))
    assert rejected["error"].tolist() == expected_reasons


def test_kafka_bridge_gives_the_same_bits_and_reasons(
    kafka_broker, bento, logs_dir, corpus, reference, expected_reasons
):
    invalid = [record for record, _ in invalid_records()]
    results, errors, sent = drain(
        kafka_broker.port, logs_dir, "parity", [*corpus, *invalid], "--service-url", bento.url
    )
    pairs = zip(invalid, expected_reasons, strict=True)
    reason_of = {json.dumps(r).encode(): reason for r, reason in pairs}
    assert_same(
        reference,
        {r[ID_COLUMN]: (r["prediction"], r["churn_probability"]) for r in results},
    )
    got = {(e["source"]["partition"], e["source"]["offset"]): e["error"] for e in errors}
    assert got == {coords: reason_of[raw] for coords, raw in sent.items() if raw in reason_of}
