"""Messy input end to end: every row ends in exactly one output file, with the reason."""

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.samples import record, records
from tests.batch.conftest import TYPED_INVALID, read_outputs, run_batch, write_jsonl, write_parquet
from tests.conftest import AS_OF
from tests.expected import confidence_level, feature_matrix


@pytest.fixture(scope="module")
def messy(tmp_path_factory, model_tag):
    """Several files of several formats, each with its own kind of trouble, scored once."""
    d = tmp_path_factory.mktemp("messy")
    typed = records(30, "t")
    expected = {}
    for i, (override, reason) in enumerate(TYPED_INVALID):
        row = {**record(customer_id=f"bad-{i}"), **override}
        typed.insert(2 * i + 1, row)
        if "customer_id" not in override:
            expected[row["customer_id"]] = reason
    write_parquet(d / "a-typed.parquet", typed, row_group_size=7)
    # Numbers stored as text are the wrong type, whatever the text says.
    text_age = [{**r, "age": str(r["age"])} for r in records(3, "s")]
    text_age[1]["age"] = "forty"
    write_parquet(d / "b-text-age.parquet", text_age)
    # A file without `income`: every row is rejected; its extra column passes through.
    no_income = [{**r, "segment": "gold"} for r in records(4, "m")]
    write_parquet(d / "c-no-income.parquet", [{k: v for k, v in r.items() if k != "income"}
                                              for r in no_income])  # fmt: skip
    empty = pa.Table.from_pandas(pd.DataFrame(records(1, "e")), preserve_index=False)
    pq.write_table(empty.slice(0, 0), d / "d-empty.parquet")
    lines = [*records(5, "j"), record(customer_id="j-bad-1", age="forty"),
             record(customer_id="j-bad-2", age=True),
             record(customer_id=17), record(customer_id=17.5),
             {"customer_id": "j-bad-3"},
             record(customer_id="j-bad-4", last_purchase_date=20260101)]  # fmt: skip
    write_jsonl(d / "e-records.jsonl", lines)
    (d / "f-empty.jsonl").write_text("")
    csv = pd.DataFrame([*records(4, "v"), record(customer_id="v-bad", income="lots")])
    csv.to_csv(d / "g-table.csv", index=False)
    out = d / "out"
    assert run_batch([d], out, model_tag) == 0
    predictions, rejected, report = read_outputs(out)
    return {"dir": d, "out": out, "typed": typed, "expected": expected,
            "predictions": predictions, "rejected": rejected, "report": report}  # fmt: skip


def test_every_row_ends_in_exactly_one_file(messy):
    s = messy["report"]["summary"]
    rows_in = len(messy["typed"]) + 3 + 4 + 0 + 11 + 0 + 5
    assert s["rows_in"] == rows_in
    assert s["rows_in"] == s["rows_scored"] + s["rows_rejected"]
    assert len(messy["predictions"]) == s["rows_scored"] == 30 + 6 + 4
    assert "17" in set(messy["predictions"]["customer_id"])  # an integer id, as its text
    assert len(messy["rejected"]) == s["rows_rejected"]
    scored = set(messy["predictions"]["customer_id"])
    assert not scored & set(messy["rejected"]["customer_id"].dropna())


def test_each_invalid_row_is_rejected_with_its_reason(messy):
    rejected = messy["rejected"].set_index("customer_id", drop=False)
    for cid, reason in messy["expected"].items():
        assert rejected.loc[cid, "error"] == reason, cid
    reasons = set(messy["rejected"]["error"])
    for _, reason in [t for t in TYPED_INVALID if "customer_id" in t[0]]:
        assert reason in reasons
    assert rejected.loc["s-1", "error"] == "age: must be a number"
    assert rejected.loc["s-0", "error"] == "age: must be a number"  # "20.0" is text, not a number
    assert rejected.loc["j-bad-1", "error"] == "age: must be a number"
    assert rejected.loc["j-bad-2", "error"] == "age: must be a number"
    assert rejected.loc["j-bad-3", "error"] == "age: is missing"  # a key absent from a record
    assert (
        rejected.loc["j-bad-4", "error"]
        == "last_purchase_date: must be an ISO 8601 date or datetime string"
    )
    assert rejected.loc["v-bad", "error"] == "income: must be a number"
    assert (rejected["error"] == "customer_id: must be a string or an integer").sum() == 1


def test_a_file_missing_a_column_is_rejected_whole_naming_it(messy):
    rejected = messy["rejected"]
    mine = rejected[rejected["source_file"].str.endswith("c-no-income.parquet")]
    assert len(mine) == 4
    assert set(mine["error"]) == {"income: is missing"}
    assert set(mine["segment"]) == {"gold"}  # extra columns pass through to the rejects
    assert mine["income"].isna().all()


def test_rejects_keep_the_original_values_and_where_they_came_from(messy):
    rejected = messy["rejected"]
    typed = messy["typed"]
    mine = rejected[rejected["source_file"].str.endswith("a-typed.parquet")]
    assert len(mine) == len(TYPED_INVALID)
    for row in mine.itertuples():
        original = typed[row.source_row]
        assert row.customer_id == original["customer_id"] or original["customer_id"] is None
        # The inputs disagree on age's type (text in some files), so it is kept as text.
        age = float(row.age) if isinstance(row.age, str) else row.age
        assert age == original["age"] or (pd.isna(original["age"]) and pd.isna(age))
        assert row.last_purchase_date == original["last_purchase_date"] or (
            original["last_purchase_date"] is None and pd.isna(row.last_purchase_date)
        )
    # Numbers the inputs disagree on are kept as their text.
    overrides = [override for override, _ in TYPED_INVALID]
    by_id = rejected.set_index("customer_id")
    assert by_id.loc[f"bad-{overrides.index({'age': -0.5})}", "age"] == "-0.5"
    assert by_id.loc[f"bad-{overrides.index({'income': -0.01})}", "income"] == "-0.01"


def test_predictions_have_the_documented_columns(messy, model_tag, predictor):
    p = messy["predictions"]
    assert list(p.columns) == [
        "customer_id", "prediction", "churn_probability", "probability", "confidence_level",
        "model_version", "as_of", "scored_at",
    ]  # fmt: skip
    assert set(p["model_version"]) == {model_tag}
    assert set(pd.to_datetime(p["as_of"]).dt.date) == {AS_OF}
    # Each scored row's numbers, worked out here from the valid record it was written from.
    valid = [*records(30, "t"), *records(5, "j"), record(customer_id="17"), *records(4, "v")]
    by_id = {r["customer_id"]: r for r in valid}
    expected = predictor.churn_probability(
        feature_matrix([by_id[cid] for cid in p["customer_id"]], AS_OF)
    ).tolist()
    assert p["churn_probability"].tolist() == expected
    assert p["prediction"].tolist() == [int(x >= 0.5) for x in expected]
    assert p["probability"].tolist() == pytest.approx([max(x, 1 - x) for x in expected])
    assert p["confidence_level"].tolist() == [confidence_level(x) for x in expected]


def test_predictions_file_has_plain_column_types(messy):
    # The label columns are written from arrow dictionaries; readers still see plain text.
    schema = pq.read_schema(messy["out"] / "predictions.parquet")
    assert {name: str(schema.field(name).type) for name in schema.names} == {
        "customer_id": "string", "prediction": "int64", "churn_probability": "double",
        "probability": "double", "confidence_level": "string", "model_version": "string",
        "as_of": "date32[day]", "scored_at": "timestamp[us, tz=UTC]",
    }  # fmt: skip


def test_report_counts_failures_by_reason(messy):
    report = messy["report"]
    failures = report["failures_by_reason"]
    assert sum(failures.values()) == report["summary"]["rows_rejected"]
    assert failures["income: is missing"] == 4 + 0
    assert failures["age: must be a number"] == 3 + 2 + 0
    assert sum(report["histogram"]["counts"]) == report["summary"]["rows_scored"]
    assert {f["rows"] for f in report["files"].values()} >= {len(messy["typed"]), 4}
