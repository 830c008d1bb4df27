"""The command line: exit codes, refusing to clobber, chunking, duplicates, anomalies, report."""

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from batch.predict import main
from batch.report import MIN_ROWS_FOR_ANOMALIES
from models.samples import record, records
from tests.batch.conftest import read_outputs, run_batch, write_parquet
from tests.conftest import AS_OF
from tests.expected import confidence_level, feature_matrix
from tests.support import ROOT


@pytest.fixture
def small(tmp_path):
    return write_parquet(tmp_path / "in.parquet", records(40))


def test_existing_output_is_refused_without_overwrite(small, tmp_path, model_tag, caplog):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert run_batch([small], out, model_tag) == 2
    assert "--overwrite" in caplog.text
    assert (out / "keep.txt").read_text() == "mine"
    assert run_batch([small], out, model_tag, "--overwrite") == 0
    assert not (out / "keep.txt").exists()
    assert (out / "predictions.parquet").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _written(path, content: bytes):
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda d: d / "nope.parquet", "no such file or directory"),
        (lambda d: str(d / "*.parquet"), "matches no file"),
        (lambda d: _written(d / "bad.parquet", b"not parquet"), "cannot read"),
        (lambda d: _written(d / "x.txt", b"x"), "unsupported file type"),
    ],
)
def test_unreadable_input_is_exit_2_naming_the_file(
    tmp_path, model_tag, caplog, make_input, message
):
    target = make_input(tmp_path)
    assert run_batch([target], tmp_path / "out", model_tag) == 2
    assert message in caplog.text
    assert str(tmp_path) in caplog.text
    assert not (tmp_path / "out").exists()


def test_unknown_model_is_exit_2(small, tmp_path, caplog):
    assert run_batch([small], tmp_path / "out", "churn_model:doesnotexist") == 2
    assert "doesnotexist" in caplog.text


def test_bad_usage_is_exit_2(small, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main([str(small), "--output", str(tmp_path / "o"), "--as-of", "30/06/2026"])
    assert exc.value.code == 2


def test_chunk_size_does_not_change_the_outcome(tmp_path, model_tag):
    rows = records(50)
    rows[13]["age"] = -4.0
    rows[37]["last_purchase_date"] = "2031-01-01"
    src = write_parquet(tmp_path / "in.parquet", rows, row_group_size=9)
    assert run_batch([src], tmp_path / "one", model_tag) == 0
    assert run_batch([src], tmp_path / "many", model_tag, "--chunk-rows", "4") == 0
    p1, r1, rep1 = read_outputs(tmp_path / "one")
    p2, r2, rep2 = read_outputs(tmp_path / "many")
    scored = [p.drop(columns="scored_at") for p in (p1, p2)]
    pd.testing.assert_frame_equal(*scored, check_exact=True)  # the same bits, row by row
    pd.testing.assert_frame_equal(r1, r2)
    assert r1["source_row"].tolist() == [13, 37]
    # Counts are exact; a mean is a float sum taken chunk by chunk, so its last bit depends on
    # where the chunks end.
    s1, s2 = rep1["summary"], rep2["summary"]
    means = {k for k, v in s1.items() if isinstance(v, float)}
    assert {k: s1[k] for k in means} == pytest.approx({k: s2[k] for k in means}, rel=1e-12)
    assert {k: v for k, v in s1.items() if k not in means} == {
        k: v for k, v in s2.items() if k not in means
    }


def test_duplicate_ids_are_counted_across_chunks_and_files(tmp_path, model_tag):
    a = write_parquet(tmp_path / "a.parquet", records(30))
    b = write_parquet(tmp_path / "b.parquet", [*records(3), *records(1, start=7)])
    assert run_batch([a, b], tmp_path / "out", model_tag, "--chunk-rows", "8") == 0
    duplicates = read_outputs(tmp_path / "out")[2]["duplicates"]
    assert duplicates["duplicated_ids"] == 4
    assert duplicates["duplicate_rows"] == 4
    assert duplicates["examples"] == {"c-0": 2, "c-1": 2, "c-2": 2, "c-7": 2}


def test_anomalies_are_reported_and_fail_the_run_only_when_asked(tmp_path, model_tag):
    # Customers who have not bought anything for years: nearly all predicted to churn.
    gone = [
        record(customer_id=f"g-{i}", purchase_history=0, last_purchase_date="2020-01-01")
        for i in range(MIN_ROWS_FOR_ANOMALIES)
    ]
    src = write_parquet(tmp_path / "gone.parquet", gone)
    assert run_batch([src], tmp_path / "a", model_tag) == 0
    assert run_batch([src], tmp_path / "b", model_tag, "--fail-on-anomaly") == 3
    report = read_outputs(tmp_path / "b")[2]
    kinds = {a["kind"] for a in report["anomalies"]}
    assert "churn_rate_high" in kinds
    assert "drift" in kinds
    assert report["summary"]["churn_rate"] > 0.5
    assert report["anomaly_checks"] == {"min_rows_scored": 500, "applied": True}


def test_a_tiny_healthy_file_raises_no_anomaly(tmp_path, model_tag):
    # The same customers, two of them: PSI and rates over two rows mean nothing.
    few = [
        record(customer_id=f"g-{i}", purchase_history=0, last_purchase_date="2020-01-01")
        for i in range(2)
    ]
    src = write_parquet(tmp_path / "few.parquet", few)
    assert run_batch([src], tmp_path / "out", model_tag, "--fail-on-anomaly") == 0
    report = read_outputs(tmp_path / "out")[2]
    assert report["anomalies"] == []
    assert report["anomaly_checks"] == {"min_rows_scored": 500, "applied": False}
    assert {d["status"] for d in report["drift"].values()} == {"insufficient_data"}
    assert "insufficient data" in (tmp_path / "out" / "report.html").read_text()


def test_report_is_complete_and_the_html_self_contained(small, tmp_path, model_tag, predictor):
    assert run_batch([small], tmp_path / "out", model_tag) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert set(report) >= {"run", "summary", "duplicates", "failures_by_reason", "histogram",
                           "drift", "anomalies", "files"}  # fmt: skip
    s = report["summary"]
    # The summary of the 40 customers `small` holds, worked out here from their features.
    p = predictor.churn_probability(feature_matrix(records(40), AS_OF))
    levels = Counter(confidence_level(x) for x in p.tolist())
    assert s["rows_scored"] == 40
    assert s["confidence_levels"] == {k: levels[k] for k in ("high", "medium", "low")}
    assert s["churn_rate"] == np.count_nonzero(p >= 0.5) / 40
    assert s["mean_confidence"] == pytest.approx(np.maximum(p, 1 - p).mean(), rel=1e-12)
    assert set(report["drift"]) == {"age", "income", "purchase_history", "days_since_purchase"}
    for d in report["drift"].values():  # 40 rows: below the sample drift needs
        assert d["psi"] is None
        assert d["status"] == "insufficient_data"
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<svg" in html
    assert "<rect" in html
    for external in ("http:", "https:", "<script", "<link", "@import", "url("):
        assert external not in html


def test_console_script_runs_as_a_module(small, tmp_path, model_tag):
    """`python -m batch.predict` in a real process: log lines on a non-terminal, exit 0."""
    cmd = [sys.executable, "-m", "batch.predict", str(small), "--output", str(tmp_path / "o"),
           "--model", model_tag, "--as-of", AS_OF.isoformat()]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "done: 40 rows in, 40 scored, 0 rejected" in done.stderr
    assert "Traceback" not in done.stderr
