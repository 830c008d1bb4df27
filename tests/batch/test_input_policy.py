"""Real producers' files: integer ids, extra columns, days instead of a date, nested and broken
JSON lines, JSON arrays. Each loose-but-valid row gets exactly the bits of its canonical twin."""

import json
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from models.samples import records
from tests.batch.conftest import read_outputs, run_batch, write_jsonl, write_parquet
from tests.conftest import AS_OF


def expected_probability(predictor, rows: list[dict]) -> np.ndarray:
    """P(churn) computed here, from the canonical fields, without the batch code."""
    days = [(AS_OF - date.fromisoformat(r["last_purchase_date"])).days for r in rows]
    matrix = np.array(
        [
            [r["age"], r["income"], r["purchase_history"], d]
            for r, d in zip(rows, days, strict=True)
        ],
        np.float64,
    )
    return predictor.churn_probability(matrix)


def scored(out) -> pd.DataFrame:
    return read_outputs(out)[0]


def test_integer_ids_of_any_width_are_their_decimal_text(tmp_path, model_tag, predictor):
    rows = records(6)
    ids = [0, 7, 2**31, 2**40, 2**63 - 1, 12345]
    for width in ("int64", "int32", "uint64"):
        ids_w = [i % 2**31 for i in ids] if width == "int32" else ids
        table = pa.Table.from_pylist(rows).set_column(
            0, "customer_id", pa.array(ids_w, getattr(pa, width)())
        )
        pq.write_table(table, tmp_path / f"{width}.parquet")
        out = tmp_path / f"out-{width}"
        assert run_batch([tmp_path / f"{width}.parquet"], out, model_tag) == 0
        p = scored(out)
        assert p["customer_id"].tolist() == [str(i) for i in ids_w]
        np.testing.assert_array_equal(
            p["churn_probability"].to_numpy(), expected_probability(predictor, rows)
        )


def test_extra_columns_are_ignored_listed_and_change_nothing(tmp_path, model_tag, predictor):
    rows = records(8)
    extra = [{**r, "segment": "gold", "channel": i} for i, r in enumerate(rows)]
    src = write_parquet(tmp_path / "extra.parquet", extra)
    assert run_batch([src], tmp_path / "out", model_tag) == 0
    p, rejected, report = read_outputs(tmp_path / "out")
    assert len(rejected) == 0
    np.testing.assert_array_equal(
        p["churn_probability"].to_numpy(), expected_probability(predictor, rows)
    )
    assert report["ignored_columns"] == ["segment", "channel"]
    assert "segment, channel" in (tmp_path / "out" / "report.html").read_text()


def test_days_since_purchase_stands_in_for_an_absent_date(tmp_path, model_tag, predictor):
    rows = records(10)
    days = [(AS_OF - date.fromisoformat(r["last_purchase_date"])).days for r in rows]
    legacy = [
        {k: v for k, v in r.items() if k != "last_purchase_date"} | {"days_since_purchase": d}
        for r, d in zip(rows, days, strict=True)
    ]
    # Both given: the date wins, whatever the days say.
    both = [{**r, "days_since_purchase": 9999} for r in rows]
    write_parquet(tmp_path / "a-days.parquet", legacy)
    pd.DataFrame(legacy).to_csv(tmp_path / "b-days.csv", index=False)
    write_jsonl(tmp_path / "c-days.jsonl", legacy)
    write_parquet(tmp_path / "d-both.parquet", both)
    for name in ("a-days.parquet", "b-days.csv", "c-days.jsonl", "d-both.parquet"):
        out = tmp_path / f"out-{name}"
        assert run_batch([tmp_path / name], out, model_tag) == 0
        p, rejected, _ = read_outputs(out)
        assert len(rejected) == 0, (name, rejected["error"].tolist())
        np.testing.assert_array_equal(
            p["churn_probability"].to_numpy(), expected_probability(predictor, rows), name
        )


def test_bad_days_are_rejected_with_their_reason(tmp_path, model_tag):
    base = {k: v for k, v in records(1)[0].items() if k != "last_purchase_date"}
    rows = [
        {**base, "customer_id": "neg", "days_since_purchase": -1},
        {**base, "customer_id": "half", "days_since_purchase": 2.5},
        {**base, "customer_id": "text", "days_since_purchase": "ten"},
        {**base, "customer_id": "none"},
    ]
    write_jsonl(tmp_path / "in.jsonl", rows)
    assert run_batch([tmp_path / "in.jsonl"], tmp_path / "out", model_tag) == 0
    rejected = read_outputs(tmp_path / "out")[1].set_index("customer_id")
    assert rejected["error"].to_dict() == {
        "neg": "days_since_purchase: must be >= 0",
        "half": "days_since_purchase: must be a whole number",
        "text": "days_since_purchase: must be an integer",
        "none": "last_purchase_date: is missing",
    }


def test_the_legacy_frame_without_id_or_date_is_scored(tmp_path, model_tag, predictor):
    rows = records(5)
    legacy = [
        {
            "age": r["age"],
            "income": r["income"],
            "purchase_history": r["purchase_history"],
            "days_since_purchase": (AS_OF - date.fromisoformat(r["last_purchase_date"])).days,
        }
        for r in rows
    ]
    src = write_parquet(tmp_path / "legacy.parquet", legacy)
    assert run_batch([src], tmp_path / "out", model_tag) == 0
    p, rejected, report = read_outputs(tmp_path / "out")
    assert len(rejected) == 0
    assert p["customer_id"].isna().all()
    np.testing.assert_array_equal(
        p["churn_probability"].to_numpy(), expected_probability(predictor, rows)
    )
    assert report["duplicates"]["duplicated_ids"] == 0  # rows without ids are not duplicates


def test_a_malformed_json_line_is_one_reject_and_the_run_goes_on(tmp_path, model_tag, predictor):
    rows = records(4)
    nested = [
        {
            "customer_id": r["customer_id"],
            "features": {k: v for k, v in r.items() if k != "customer_id"},
        }
        for r in rows[2:]
    ]
    lines = [
        json.dumps(rows[0]),
        '{"customer_id": "broken", "age": 4',
        json.dumps(rows[1]),
        "[1, 2, 3]",
        *map(json.dumps, nested),
    ]
    (tmp_path / "in.jsonl").write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe{}\n")
    assert run_batch([tmp_path / "in.jsonl"], tmp_path / "out", model_tag) == 0
    p, rejected, report = read_outputs(tmp_path / "out")
    assert p["customer_id"].tolist() == [r["customer_id"] for r in rows]
    np.testing.assert_array_equal(
        p["churn_probability"].to_numpy(), expected_probability(predictor, rows)
    )
    assert rejected[["source_row", "error"]].values.tolist() == [
        [1, "request: is not valid JSON"],
        [3, "request: must be a JSON object"],
        [6, "request: is not valid JSON"],
    ]
    assert rejected["source_text"].tolist()[:2] == [
        '{"customer_id": "broken", "age": 4',
        "[1, 2, 3]",
    ]
    assert report["summary"]["rows_in"] == 7
    assert report["ignored_columns"] == []


def test_a_json_array_file_is_read_like_json_lines(tmp_path, model_tag, predictor):
    rows = records(6)
    (tmp_path / "export.json").write_text(json.dumps(rows, indent=2))
    write_jsonl(tmp_path / "lines.json", rows)  # .json holding JSON lines still works
    for name in ("export.json", "lines.json"):
        out = tmp_path / f"out-{name}"
        assert run_batch([tmp_path / name], out, model_tag) == 0
        p, rejected, _ = read_outputs(out)
        assert len(rejected) == 0
        np.testing.assert_array_equal(
            p["churn_probability"].to_numpy(), expected_probability(predictor, rows)
        )


def test_an_absent_id_is_no_error_and_a_null_id_is(tmp_path, model_tag):
    rows = records(3)
    del rows[0]["customer_id"]
    rows[1]["customer_id"] = None
    write_jsonl(tmp_path / "in.jsonl", rows)
    assert run_batch([tmp_path / "in.jsonl"], tmp_path / "out", model_tag) == 0
    p, rejected, _ = read_outputs(tmp_path / "out")
    assert p["customer_id"].isna().tolist() == [True, False]
    assert p["customer_id"].iloc[1] == rows[2]["customer_id"]
    assert rejected["error"].tolist() == ["customer_id: is null"]


def test_json_integer_ids_with_a_record_lacking_its_id(tmp_path, model_tag, predictor):
    # Read into a frame by inference, a column of integers with a gap became floats (17.0),
    # and every integer id in the file was rejected as not an id.
    rows = records(4)
    lines = [{**r, "customer_id": 17 + i} for i, r in enumerate(rows)]
    del lines[1]["customer_id"]
    lines[2]["customer_id"] = 2**63 + 5  # wider than int64
    src = write_jsonl(tmp_path / "ids.jsonl", lines)
    assert run_batch([src], tmp_path / "out", model_tag) == 0
    p, rejected, _ = read_outputs(tmp_path / "out")
    assert len(rejected) == 0
    ids = p["customer_id"].astype(object)
    assert ids.where(ids.notna(), None).tolist() == ["17", None, str(2**63 + 5), "20"]
    np.testing.assert_array_equal(
        p["churn_probability"].to_numpy(), expected_probability(predictor, rows)
    )
