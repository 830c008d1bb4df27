"""`python -m monitoring.drift`: the batch report over prediction-log records (and Kafka results),
in-process on records built here with the served model."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from batch.report import MIN_ROWS_FOR_ANOMALIES
from models.features import matrix_from_records
from models.schema import PredictRequest
from monitoring.drift import main
from tests.batch.conftest import customers, run_batch, write_parquet
from tests.conftest import AS_OF

START = datetime(2026, 6, 30, 8, 0, tzinfo=UTC)


def log_records(predictor, rows: list[dict], start: datetime = START) -> list[dict]:
    """What the prediction log writes for `rows` scored one second apart from `start`."""
    requests = [PredictRequest.model_validate(r) for r in rows]
    matrix = matrix_from_records([r.features for r in requests], AS_OF)
    scores = predictor.score(matrix)
    out = []
    for i, r in enumerate(requests):
        when = start + timedelta(seconds=i)
        date = r.features.last_purchase_date
        out.append(
            {
                "prediction_request_id": f"req-{i}",
                "endpoint": "batch",
                "batch_id": None,
                "customer_id": r.customer_id,
                "model_version": predictor.tag,
                "as_of": AS_OF.isoformat(),
                "age": matrix[i, 0],
                "income": matrix[i, 1],
                "purchase_history": matrix[i, 2],
                "last_purchase_date": None if date is None else date.isoformat(),
                "days_since_purchase": matrix[i, 3],
                "churn_probability": float(scores.churn_probability[i]),
                "prediction": int(scores.prediction[i]),
                "confidence_level": str(scores.confidence_level[i]),
                "cached": False,
                "scored_at": when.isoformat().replace("+00:00", "Z"),
                # BentoML's own columns: a naive local time and its (absent) trace ids.
                "timestamp": when.replace(tzinfo=None).isoformat(),
                "request_id": "None",
                "trace_id": "0",
            }
        )
    return out


def write_lines(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def drift(paths: list[Path | str], out: Path, *extra: str) -> tuple[int, dict]:
    code = main([*map(str, paths), "--output", str(out), "--quiet", *extra])
    report = out / "report.json"
    return code, json.loads(report.read_text()) if report.exists() else {}


@pytest.fixture
def log_dir(tmp_path, predictor) -> Path:
    """A prediction-log directory as BentoML lays it out: 600 customers over two workers'
    files, one of them rotated, and a schema file that holds no records."""
    records = log_records(predictor, customers(600))
    root = tmp_path / "log" / "churn_predictions"
    write_lines(root / "data" / "data.1.log.2026-06-29", records[:200])
    write_lines(root / "data" / "data.1.log", records[200:450])
    write_lines(root / "data" / "data.2.log", records[450:])
    write_lines(root / "schema" / "schema.1.log", [{"columns": []}])
    return tmp_path / "log"


def test_the_report_is_the_batch_report_of_the_same_customers(log_dir, tmp_path, model_tag):
    code, report = drift([log_dir], tmp_path / "drift")
    assert code == 0
    src = write_parquet(tmp_path / "in.parquet", customers(600))
    assert run_batch([src], tmp_path / "batch", model_tag) == 0
    batch = json.loads((tmp_path / "batch" / "report.json").read_text())
    # Sums are added file by file here, in one chunk there: the means may differ in the last bit.
    means = ("mean_churn_probability", "mean_confidence")
    for key, value in report["summary"].items():
        assert value == (
            pytest.approx(batch["summary"][key]) if key in means else batch["summary"][key]
        )
    assert report["histogram"] == batch["histogram"]
    assert report["drift"].keys() == batch["drift"].keys() != set()
    for name, d in report["drift"].items():
        b = batch["drift"][name]
        assert d["psi"] is not None
        assert {**d, "mean": None} == {**b, "mean": None}
        assert d["mean"] == pytest.approx(b["mean"], rel=1e-12)
    assert report["anomalies"] == batch["anomalies"]
    assert len(report["run"]["inputs"]) == 3
    assert sum(f["scored"] for f in report["files"].values()) == 600
    assert report["run"]["model"] == model_tag
    assert report["run"]["as_of"] == AS_OF.isoformat()
    html = (tmp_path / "drift" / "report.html").read_text()
    assert "<h1>Churn drift report: served traffic</h1>" in html


def test_since_and_until_select_by_scored_at(log_dir, tmp_path):
    since = (START + timedelta(seconds=100)).isoformat()
    until = (START + timedelta(seconds=250)).isoformat()
    code, report = drift([log_dir], tmp_path / "w", "--since", since, "--until", until)
    assert code == 0
    assert report["summary"]["rows_scored"] == 150  # 100 inclusive .. 250 exclusive
    assert report["run"]["skipped"] == {"outside_window": 450, "other_model": 0}
    assert report["run"]["first_scored_at"] == since
    # Too few rows for drift: reported as insufficient, no anomaly raised.
    assert not report["anomaly_checks"]["applied"]
    assert {d["status"] for d in report["drift"].values()} == {"insufficient_data"}
    # Naive times are UTC, and a date is its midnight.
    _, naive = drift([log_dir], tmp_path / "n", "--until", "2026-06-30T08:00:10")
    assert naive["summary"]["rows_scored"] == 10
    _, day = drift([log_dir], tmp_path / "d", "--since", "2026-07-01")
    assert day["summary"]["rows_scored"] == 0


def test_several_model_versions_need_model(tmp_path, predictor, model_tag, caplog):
    records = log_records(predictor, customers(20))
    for r in records[10:]:
        r["model_version"] = "churn_model:older"
    src = write_lines(tmp_path / "mixed.jsonl", records)
    code, _ = drift([src], tmp_path / "a")
    assert code == 2
    assert "several model versions" in caplog.text
    assert "churn_model:older" in caplog.text
    assert not (tmp_path / "a").exists()
    code, report = drift([src], tmp_path / "b", "--model", model_tag)
    assert code == 0
    assert report["summary"]["rows_scored"] == 10
    assert report["run"]["skipped"]["other_model"] == 10


def test_kafka_results_are_counted_without_psi(tmp_path, predictor):
    """The bridge's results carry the scores but not the features: counts, rates, confidence
    and the histogram; no drift."""
    logged = log_records(predictor, customers(700))
    results = [
        {
            "customer_id": r["customer_id"],
            "prediction": r["prediction"],
            "churn_probability": r["churn_probability"],
            "probability": 0.0,  # not read: it follows from churn_probability
            "confidence_level": r["confidence_level"],
            "model_version": r["model_version"],
            "timestamp": r["scored_at"],
            "event_timestamp": r["scored_at"],
            "latency_ms": 3.1,
            "source": {"topic": "customer-events", "partition": 0, "offset": i},
        }
        for i, r in enumerate(logged)
    ]
    dump = write_lines(tmp_path / "predictions.jsonl", results)
    code, report = drift([dump], tmp_path / "k", "--fail-on-anomaly")
    assert code in (0, 3)
    _, full = drift([write_lines(tmp_path / "log.jsonl", logged)], tmp_path / "l")
    assert report["summary"] == full["summary"]
    assert report["histogram"] == full["histogram"]
    assert report["drift"] == {}
    assert set(report["run"]["rows_with_features"].values()) == {0}
    # Together with logged records: PSI from those that carry features only.
    _, both = drift([dump, tmp_path / "log.jsonl"], tmp_path / "both")
    assert both["summary"]["rows_scored"] == 1400
    assert both["drift"] == full["drift"]


def test_unusable_lines_are_rejected_rows(tmp_path, predictor):
    good = log_records(predictor, customers(3))
    lines = [
        *good,
        "not json",
        "[1, 2]",
        {**good[0], "churn_probability": None},
        {**good[0], "churn_probability": 1.5},
        {**good[0], "age": "old"},
        "",
    ]
    code, report = drift([write_lines(tmp_path / "x.jsonl", lines)], tmp_path / "o")
    assert code == 0
    s = report["summary"]
    assert (s["rows_in"], s["rows_scored"], s["rows_rejected"]) == (8, 3, 5)
    assert report["failures_by_reason"] == {
        "record: is not valid JSON": 1,
        "record: must be a JSON object": 1,
        "churn_probability: is missing": 1,
        "churn_probability: must be a number between 0 and 1": 1,
        "age: must be a number": 1,
    }


def test_sample_rule_and_fail_on_anomaly(tmp_path, predictor):
    few = write_lines(tmp_path / "few.jsonl", log_records(predictor, customers(10)))
    code, report = drift([few], tmp_path / "few", "--fail-on-anomaly")
    assert code == 0  # 10 rows: no rate or drift anomaly (minimum sample)
    assert report["anomaly_checks"] == {"min_rows_scored": MIN_ROWS_FOR_ANOMALIES, "applied": False}
    code, report = drift([few], tmp_path / "none", "--since", "2027-01-01", "--fail-on-anomaly")
    assert code == 3  # nothing served in the window
    assert [a["kind"] for a in report["anomalies"]] == ["no_rows_scored"]
    assert (tmp_path / "none" / "report.html").exists()


def test_duplicates_are_repeated_customers(tmp_path, predictor):
    records = log_records(predictor, customers(5) * 3)
    code, report = drift([write_lines(tmp_path / "d.jsonl", records)], tmp_path / "o")
    assert code == 0
    assert report["duplicates"]["duplicate_rows"] == 10
    assert report["duplicates"]["examples"] == {f"c-{i}": 3 for i in range(5)}


@pytest.mark.parametrize(
    ("make_path", "message"),
    [
        (lambda d: d / "nope", "no such file or directory"),
        (lambda d: str(d / "*.log"), "matches no file"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "holds no prediction-log"),
    ],
)
def test_unreadable_input_is_exit_2(tmp_path, caplog, make_path, message):
    code, _ = drift([make_path(tmp_path)], tmp_path / "out")
    assert code == 2
    assert message in caplog.text
    assert not (tmp_path / "out").exists()


def test_usage_errors_are_exit_2(tmp_path, predictor, caplog):
    src = write_lines(tmp_path / "x.jsonl", log_records(predictor, customers(3)))
    (tmp_path / "taken").mkdir()
    assert drift([src], tmp_path / "taken")[0] == 2
    assert "--overwrite" in caplog.text
    assert drift([src], tmp_path / "taken", "--overwrite")[0] == 0
    assert drift([src], tmp_path / "m", "--model", "churn_model:doesnotexist")[0] == 2
    assert "doesnotexist" in caplog.text
    assert drift([src], tmp_path / "w", "--since", "2026-07-01", "--until", "2026-06-01")[0] == 2
    with pytest.raises(SystemExit) as exc:
        main([str(src), "--output", str(tmp_path / "o"), "--since", "yesterday"])
    assert exc.value.code == 2
