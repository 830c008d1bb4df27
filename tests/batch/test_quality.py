"""Batch quality alarms, on real runs of the batch script over parquet, CSV and JSON lines: the
rejected share, each input column's missing share, their thresholds, the churned counts."""

import json
from pathlib import Path

import pandas as pd
import pytest

from batch.predict import main
from batch.quality import DEFAULT_MAX_NULL_SHARE, DEFAULT_MAX_REJECT_SHARE
from models.contract import INPUT_COLUMNS
from models.data import synthetic_customers
from models.samples import AS_OF
from tests.batch.conftest import read_outputs, run_batch, write_jsonl, write_parquet

QUALITY = {"rejected_share_high", "null_share_high"}


def customers(n: int) -> list[dict]:
    """Customers drawn like the training population: no rate or drift anomaly at any size."""
    frame = synthetic_customers(n, seed=7, as_of=AS_OF)
    return frame.drop(columns=["days_since_purchase", "churned"]).to_dict("records")


def write(fmt: str, path: Path, rows: list[dict]) -> Path:
    if fmt == "parquet":
        return write_parquet(path.with_suffix(".parquet"), rows)
    if fmt == "jsonl":
        return write_jsonl(path.with_suffix(".jsonl"), rows)
    pd.DataFrame(rows).to_csv(path.with_suffix(".csv"), index=False)  # None: an empty field
    return path.with_suffix(".csv")


def found(report: dict, code: str) -> list[dict]:
    return [a for a in report["anomalies"] if a["code"] == code]


def test_a_run_with_30_percent_bad_rows_gets_the_reject_share_anomaly(tmp_path, model_tag):
    rows = customers(1000)
    for row in rows[:300]:
        row["age"] = -5.0  # out of range: rejected, but nothing is missing
    src = write_parquet(tmp_path / "in.parquet", rows)
    assert run_batch([src], tmp_path / "a", model_tag) == 0  # reported, not failed
    assert run_batch([src], tmp_path / "b", model_tag, "--fail-on-anomaly") == 3
    report = read_outputs(tmp_path / "b")[2]
    assert report["anomalies"] == found(report, "rejected_share_high")
    (anomaly,) = report["anomalies"]
    assert anomaly["column"] is None
    assert anomaly["observed"] == 0.3
    assert anomaly["threshold"] == DEFAULT_MAX_REJECT_SHARE == 0.1
    assert "30.0% of rows were rejected (300 of 1,000)" in anomaly["message"]
    assert "10.0%" in anomaly["message"]
    assert report["quality"]["rejected_share"] == 0.3
    assert report["quality"]["null_counts"] == dict.fromkeys(INPUT_COLUMNS, 0)
    # The threshold comes from the flag, and is recorded in the report.
    out = tmp_path / "c"
    assert run_batch([src], out, model_tag, "--fail-on-anomaly", "--max-reject-share", "0.3") == 0
    report = read_outputs(out)[2]
    assert report["anomalies"] == []
    assert report["quality"]["max_reject_share"] == 0.3
    html = (out / "report.html").read_text()
    assert 'Rejected share <span class="ok">30.00%</span> (threshold 30.00%)' in html


def test_a_clean_run_has_no_anomaly_and_every_output_check_passes(tmp_path, model_tag):
    src = write_parquet(tmp_path / "in.parquet", customers(1000))
    assert run_batch([src], tmp_path / "out", model_tag, "--fail-on-anomaly") == 0
    report = read_outputs(tmp_path / "out")[2]
    assert report["anomalies"] == []
    assert report["anomaly_checks"]["applied"]  # 1,000 rows: rates and drift were checked too
    assert report["quality"]["rejected_share"] == 0
    assert set(report["quality"]["null_shares"].values()) == {0}
    assert report["quality"]["max_null_share"] == DEFAULT_MAX_NULL_SHARE == 0.1
    assert len(report["output_checks"]) == 10
    assert all(c["passed"] for c in report["output_checks"])


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
@pytest.mark.parametrize(("missing", "alarm"), [(30, True), (10, False)])
def test_a_column_15_percent_null_gets_the_null_share_anomaly_naming_it(
    tmp_path, model_tag, fmt, missing, alarm
):
    rows = customers(200)
    for row in rows[:missing]:
        row["income"] = None
    src = write(fmt, tmp_path / "in", rows)
    # Missing rows are rejected too: the reject threshold is raised to see the null one alone.
    code = run_batch([src], tmp_path / "out", model_tag, "--fail-on-anomaly",
                     "--max-reject-share", "0.5")  # fmt: skip
    report = read_outputs(tmp_path / "out")[2]
    share = missing / 200
    assert report["quality"]["null_counts"] == {
        **dict.fromkeys(INPUT_COLUMNS, 0),
        "income": missing,
    }
    assert report["quality"]["null_shares"]["income"] == share
    assert report["summary"]["rows_rejected"] == missing
    if not alarm:
        assert (code, report["anomalies"]) == (0, [])
        return
    assert code == 3
    (anomaly,) = report["anomalies"]
    assert anomaly["code"] == "null_share_high"
    assert (anomaly["column"], anomaly["observed"], anomaly["threshold"]) == ("income", 0.15, 0.1)
    assert anomaly["message"].startswith("income is missing in 15.0% of records (30 of 200)")
    assert 'class="n bad">15.00%' in (tmp_path / "out" / "report.html").read_text()
    # Above the flag's threshold only.
    out = tmp_path / "raised"
    assert run_batch([src], out, model_tag, "--max-null-share", "0.15", "--max-reject-share",
                     "0.5", "--fail-on-anomaly") == 0  # fmt: skip
    assert read_outputs(out)[2]["quality"]["max_null_share"] == 0.15


def test_missing_is_what_the_policy_treats_as_missing(tmp_path, model_tag):
    rows = customers(100)
    for row in rows[:12]:
        del row["age"]  # an absent key is missing
    for row in rows[12:24]:  # a null date with the days instead is not
        row["last_purchase_date"], row["days_since_purchase"] = None, 30
    for row in rows[24:27]:  # a null date with nothing instead is
        row["last_purchase_date"] = None
    for row in rows[27:39]:  # an absent id is allowed (no id), a null one is missing
        del row["customer_id"]
    for row in rows[39:41]:
        row["customer_id"] = None
    for row in rows[41:43]:
        row["purchase_history"] = float("nan")  # JSON's NaN: null, as the validator reads it
    src = tmp_path / "in.jsonl"
    write_jsonl(src, rows)
    with src.open("a") as f:  # 20 lines that are not records: rejected, not missing values
        f.write("not json\n" * 15 + "[1, 2]\n" * 5)
    assert run_batch([src], tmp_path / "out", model_tag, "--max-reject-share", "0.5") == 0
    report = read_outputs(tmp_path / "out")[2]
    q = report["quality"]
    assert report["summary"]["rows_in"] == 120
    assert report["summary"]["rows_rejected"] == 12 + 3 + 2 + 2 + 20
    assert q["records"] == 100
    expected = {"customer_id": 2, "age": 12, "income": 0, "purchase_history": 2}
    assert q["null_counts"] == {**expected, "last_purchase_date": 3}
    assert q["rejected_share"] == 39 / 120
    assert [(a["code"], a["column"]) for a in report["anomalies"]] == [("null_share_high", "age")]


def test_a_missing_column_is_missing_in_every_record(tmp_path, model_tag):
    rows = [{k: v for k, v in r.items() if k != "purchase_history"} for r in customers(50)]
    src = write_parquet(tmp_path / "in.parquet", rows)
    assert run_batch([src], tmp_path / "out", model_tag, "--fail-on-anomaly") == 3
    report = read_outputs(tmp_path / "out")[2]
    assert report["quality"]["null_shares"]["purchase_history"] == 1
    assert [(a["code"], a.get("column")) for a in report["anomalies"]] == [
        ("no_rows_scored", None),
        ("rejected_share_high", None),
        ("null_share_high", "purchase_history"),
    ]


@pytest.mark.parametrize("value", ["1.5", "-0.1", "ten", "nan"])
@pytest.mark.parametrize("flag", ["--max-reject-share", "--max-null-share"])
def test_thresholds_outside_0_to_1_are_bad_usage(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "in.parquet"), "--output", str(tmp_path / "out"), flag, value])
    assert exit_.value.code == 2
    assert flag in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_churned_counts_equal_a_count_of_the_predictions_file(tmp_path, model_tag, fmt):
    rows = customers(300)
    for row in rows[:7]:
        row["age"] = 500  # rejected rows are in neither count
    src = write(fmt, tmp_path / "in", rows)
    assert run_batch([src], tmp_path / "out", model_tag) == 0
    predictions, rejected, report = read_outputs(tmp_path / "out")
    s = report["summary"]
    counts = predictions["prediction"].value_counts().to_dict()
    assert (s["churned"], s["not_churned"]) == (counts.get(1, 0), counts.get(0, 0))
    assert s["churned"] > 0
    assert s["not_churned"] > 0
    assert s["churned"] + s["not_churned"] == len(predictions) == 293
    assert len(rejected) == 7
    html = (tmp_path / "out" / "report.html").read_text()
    assert f"churned<b>{s['churned']:,}</b>" in html
    assert f"not churned<b>{s['not_churned']:,}</b>" in html
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report
