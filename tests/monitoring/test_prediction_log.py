"""The prediction log (CHURN_PREDICTION_LOG): the writer thread's queue with fake writers, and a
served run whose log `python -m monitoring.drift` turns into a report counting exactly what was
served, with the batch script's drift for the same customers."""

import json
import logging
import subprocess
import sys
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY

from batch.predict import main as batch_main
from models.features import matrix_from_records
from models.prediction import Predictions
from models.predictor import scores_from_probability
from models.schema import PredictRequest
from monitoring.log import NoPredictionLog, PredictionLog
from monitoring.records import NAMES, Served, dated
from tests.conftest import AS_OF
from tests.support import ROOT, start_bento, wait_until

DROPPED = "churn_prediction_log_dropped_total"


def dropped_metric() -> float:
    return REGISTRY.get_sample_value(DROPPED) or 0.0


def served(i: int) -> Served:
    """What /predict hands over for customer i."""
    request = PredictRequest.model_validate(
        {
            "customer_id": f"u-{i}",
            "features": {
                "age": 30 + i % 50,
                "income": 1000.0 * (1 + i),
                "purchase_history": i % 9,
                "last_purchase_date": "2026-06-01",
            },
        }
    )
    matrix = matrix_from_records([request.features], AS_OF)
    scores = scores_from_probability(np.array([0.01 * (i % 100)]))
    predictions = Predictions([request.customer_id], matrix, scores, "churn_model:test", AS_OF)
    now = datetime.now(UTC)
    return Served("predict", predictions, [f"r-{i}"], dated([request]), now)


class FakeWriter:
    """Records each write's columns; blocks while `gate` is clear; can fail on a given call."""

    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.calls: list[dict] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_on = fail_on or set()

    def __call__(self, columns: dict) -> None:
        self.entered.set()
        self.gate.wait(30)
        self.calls.append(columns)
        if len(self.calls) in self.fail_on:
            raise OSError("disk full")

    @property
    def ids(self) -> list[str]:
        return [i for call in self.calls for i in call["prediction_request_id"]]


def test_off_is_a_no_op():
    log = NoPredictionLog()
    log.hand_over(served(0))
    assert log.flush(0) is True
    log.close()


def test_overflow_drops_counts_and_warns_once_without_blocking(caplog):
    writer = FakeWriter()
    writer.gate.clear()
    log = PredictionLog(writer, max_pending_rows=5)
    before = dropped_metric()
    try:
        first = served(0)
        log.hand_over(first)
        assert writer.entered.wait(10)  # the writer holds row 0 and waits at the gate
        handed = [served(i) for i in range(1, 11)]
        caplog.set_level(logging.WARNING, logger="monitoring.log")
        for item in handed:
            log.hand_over(item)  # returns at once: the writer is blocked, and nothing waits
        assert log.dropped == 6  # 5 rows fit: row 0 (being written) and rows 1-4
        assert dropped_metric() - before == 6
        warnings = [r for r in caplog.records if "dropping predictions" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        writer.gate.set()
    assert log.flush(10)
    assert writer.ids == [x.request_ids[0] for x in [first, *handed[:4]]]
    assert log.written == 5
    log.close()
    assert not log._thread.is_alive()


def test_queued_hand_overs_are_written_together_in_order():
    writer = FakeWriter()
    writer.gate.clear()
    log = PredictionLog(writer)
    items = [served(i) for i in range(20)]
    log.hand_over(items[0])
    assert writer.entered.wait(10)
    for item in items[1:]:
        log.hand_over(item)
    writer.gate.set()
    assert log.flush(10)
    log.close()
    assert [len(c["prediction_request_id"]) for c in writer.calls] == [1, 19]
    assert writer.ids == [x.request_ids[0] for x in items]
    assert set(writer.calls[0]) == set(NAMES)
    row = {name: writer.calls[0][name][0] for name in NAMES}
    assert row["churn_probability"] == 0.0
    assert row["customer_id"] == "u-0"
    assert row["age"] == 30.0
    assert row["days_since_purchase"] == float((AS_OF - date(2026, 6, 1)).days)
    assert row["last_purchase_date"] == "2026-06-01"
    assert row["scored_at"].endswith("Z")
    assert datetime.fromisoformat(row["scored_at"]).tzinfo == UTC


def test_the_writer_waits_for_more_only_until_the_block_is_full():
    # A block of max_block_rows is written at once, whatever the linger (an hour here).
    writer = FakeWriter()
    log = PredictionLog(writer, max_block_rows=3, linger_s=3600)
    for i in range(3):
        log.hand_over(served(i))
    assert log.flush(30)
    log.close()
    assert [len(c["prediction_request_id"]) for c in writer.calls] == [3]


def test_a_failed_write_is_counted_and_the_writer_goes_on(caplog):
    writer = FakeWriter(fail_on={1})
    log = PredictionLog(writer, linger_s=0)
    before = dropped_metric()
    caplog.set_level(logging.ERROR, logger="monitoring.log")
    log.hand_over(served(0))
    assert log.flush(10)
    log.hand_over(served(1))
    assert log.flush(10)
    log.close()
    assert (log.dropped, log.written) == (1, 1)
    assert dropped_metric() - before == 1
    assert "writing 1 rows failed" in caplog.text


def test_close_writes_what_is_queued_and_refuses_later_hand_overs():
    writer = FakeWriter()
    writer.gate.clear()
    log = PredictionLog(writer)
    items = [served(i) for i in range(5)]
    for item in items:
        log.hand_over(item)
    assert writer.entered.wait(10)
    closer = threading.Thread(target=log.close)
    closer.start()
    try:
        wait_until(lambda: log.closed, 10, "close() started")
        log.hand_over(served(9))  # after close: refused, while the queue is still written
        assert log.dropped == 1
    finally:
        writer.gate.set()
        closer.join(30)
    assert not closer.is_alive()
    assert writer.ids == [x.request_ids[0] for x in items]


# A served run -----------------------------------------------------------------------------

N_PREDICT, BATCH_ITEMS, FRAME_ROWS = 60, 150, 300


def features(i: int) -> dict:
    """Valid, varied raw features of customer i (a date, or for every 7th the days instead)."""
    raw: dict[str, float | str] = {
        "age": float(18 + (i * 7) % 62),
        "income": 15_000.0 + (i * 3_917) % 95_000,
        "purchase_history": (i * 5) % 27,
    }
    if i % 7 == 3:
        raw["days_since_purchase"] = (i * 13) % 500
    else:
        raw["last_purchase_date"] = date.fromordinal(AS_OF.toordinal() - (i * 11) % 420).isoformat()
    return raw


INVALID = [
    {"age": -1.0, "income": 1.0, "purchase_history": 1, "last_purchase_date": "2026-01-01"},
    {"age": 40.0, "purchase_history": 1, "last_purchase_date": "2026-01-01"},
    {"age": 40.0, "income": 1.0, "purchase_history": 1, "last_purchase_date": "2031-01-01"},
]


def log_lines(directory: Path) -> list[dict]:
    files = sorted(directory.glob("churn_predictions/data/data.*.log*"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line]


def wait_for_lines(directory: Path, expected: int, timeout: float = 60) -> list[dict]:
    wait_until(lambda: len(log_lines(directory)) >= expected, timeout, f"{expected} log lines")
    return log_lines(directory)


def drift(*args: str) -> tuple[int, dict]:
    out = Path(args[args.index("--output") + 1])
    cmd = [sys.executable, "-m", "monitoring.drift", *args, "--quiet"]
    code = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120).returncode
    report = json.loads((out / "report.json").read_text()) if code in (0, 3) else {}
    return code, report


@pytest.mark.slow
def test_served_predictions_are_logged_once_each_and_drift_counts_them(
    logs_dir, service_env, model_tag, tmp_path
):
    log_dir = tmp_path / "prediction-log"
    bento = start_bento(logs_dir, {**service_env, "CHURN_PREDICTION_LOG": str(log_dir)})
    served_p: dict[str, float] = {}  # customer id -> served churn probability
    request_ids: dict[str, str] = {}
    customers: list[dict] = []  # every valid customer served, flat, for the batch script
    rejected: list[str] = []
    try:
        with httpx.Client(base_url=bento.url, timeout=60) as client:
            # Batches first: the log's first write holds many rows.
            k = 0
            for b in range(2):
                items = []
                for j in range(BATCH_ITEMS):
                    if j % 15 == 4:
                        cid = f"bad-b{b}-{j}"
                        items.append({"customer_id": cid, "features": INVALID[j % 3]})
                        rejected.append(cid)
                    else:
                        cid = f"b-{k}"
                        items.append({"customer_id": cid, "features": features(k)})
                        customers.append({"customer_id": cid, **features(k)})
                        k += 1
                r = client.post("/predict/batch", json={"requests": items, "batch_id": f"B{b}"})
                assert r.status_code == 200
                assert r.json()["error_count"] == 10
                for p in r.json()["predictions"]:
                    served_p[p["customer_id"]] = p["churn_probability"]
                    request_ids[p["customer_id"]] = p["request_id"]
            for i in range(N_PREDICT):
                cid = f"p-{i}"
                body = {"customer_id": cid, "features": features(1000 + i)}
                r = client.post("/predict", json=body)
                assert r.status_code == 200
                served_p[cid] = r.json()["churn_probability"]
                request_ids[cid] = r.json()["request_id"]
                customers.append({"customer_id": cid, **features(1000 + i)})
            for j, bad in enumerate(INVALID):
                r = client.post("/predict", json={"customer_id": f"bad-p-{j}", "features": bad})
                assert r.status_code == 400
                rejected.append(f"bad-p-{j}")
            rows = []
            for j in range(FRAME_ROWS):
                if j % 30 == 7:
                    cid = f"bad-f-{j}"
                    rows.append({"customer_id": cid, **INVALID[j % 3]})
                    rejected.append(cid)
                else:
                    cid = f"f-{j}"
                    rows.append({"customer_id": cid, **features(2000 + j)})
                    customers.append({"customer_id": cid, **features(2000 + j)})
            r = client.post("/predict/dataframe", json=rows)
            assert r.status_code == 200
            for row in r.json():
                if row["error"] is None:
                    served_p[row["customer_id"]] = row["churn_probability"]
        expected = len(served_p)
        assert expected == N_PREDICT + 2 * (BATCH_ITEMS - 10) + FRAME_ROWS - 10
        lines = wait_for_lines(log_dir, expected)
        assert len(lines) == expected
    finally:
        bento.stop()
    assert "is duplicated" not in bento.log.read_text()  # BentoML's first-block warnings
    lines = log_lines(log_dir)
    assert len(lines) == expected  # the shutdown flush added nothing twice
    assert len(list(log_dir.glob("churn_predictions/schema/schema.*.log"))) == 1
    logged = {line["customer_id"]: line for line in lines}
    assert len(logged) == expected
    assert not set(rejected) & set(logged)
    for cid, p in served_p.items():
        assert logged[cid]["churn_probability"].hex() == p.hex(), cid  # bit for bit
        if cid in request_ids:
            assert logged[cid]["prediction_request_id"] == request_ids[cid]
    by_endpoint = {e: sum(x["endpoint"] == e for x in lines) for e in ("predict", "batch")}
    assert by_endpoint == {"predict": N_PREDICT, "batch": 2 * (BATCH_ITEMS - 10)}
    assert {x["model_version"] for x in lines} == {model_tag}
    assert {x["as_of"] for x in lines} == {AS_OF.isoformat()}
    days_only = logged["p-4"]  # features(1004): days, no date
    assert days_only["last_purchase_date"] is None
    assert days_only["days_since_purchase"] == float(features(1004)["days_since_purchase"])

    # The report counts exactly the predictions served, none rejected.
    code, report = drift(str(log_dir), "--output", str(tmp_path / "all"))
    assert code == 0
    s = report["summary"]
    assert (s["rows_in"], s["rows_scored"], s["rows_rejected"]) == (expected, expected, 0)
    assert report["run"]["model"] == model_tag

    # --since / --until split at the DataFrame request (its rows share one scored_at).
    cut = logged["f-0"]["scored_at"]
    _, after = drift(str(log_dir), "--output", str(tmp_path / "after"), "--since", cut)
    _, before = drift(str(log_dir), "--output", str(tmp_path / "before"), "--until", cut)
    assert after["summary"]["rows_scored"] == FRAME_ROWS - 10
    assert before["summary"]["rows_scored"] == expected - (FRAME_ROWS - 10)
    assert after["run"]["skipped"]["outside_window"] == expected - (FRAME_ROWS - 10)

    # The batch script on the same customers: the same drift, bin for bin.
    src = tmp_path / "customers.jsonl"
    src.write_text("".join(json.dumps(c) + "\n" for c in customers))
    out = tmp_path / "batch"
    argv = [str(src), "--output", str(out), "--model", model_tag, "--as-of", AS_OF.isoformat()]
    assert batch_main([*argv, "--quiet"]) == 0
    batch_report = json.loads((out / "report.json").read_text())
    assert batch_report["summary"]["rows_scored"] == expected
    assert report["drift"].keys() == batch_report["drift"].keys() != set()
    for name, d in report["drift"].items():
        b = batch_report["drift"][name]
        assert d["psi"] is not None
        assert (d["psi"], d["status"], d["bin_fractions"]) == (
            b["psi"],
            b["status"],
            b["bin_fractions"],
        ), name
        assert d["mean"] == pytest.approx(b["mean"], rel=1e-12)
    for key in ("churn_rate", "confidence_levels", "low_confidence_share"):
        assert report["summary"][key] == batch_report["summary"][key]
    assert report["histogram"] == batch_report["histogram"]
