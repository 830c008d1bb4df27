"""The contract's checks: the frame validator and the per-record pydantic path agree."""

from datetime import UTC, date, datetime
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pydantic import ValidationError

from models.contract import DATE_COLUMN, INPUT_COLUMNS
from models.frames import ValidatedFrame, customer_ids, validate_frame
from models.predict import Rejected, check_request
from models.samples import record, request
from models.schema import PredictRequest
from models.validation import DateFieldError, parse_purchase_date
from tests.invalid import CASES

AS_OF = date(2026, 6, 30)
GOOD = record()

INVALID = [(case.override, case.expected) for case in CASES]


def frame_code(record: dict) -> str | None:
    checked = validate_frame(pd.DataFrame([record]), AS_OF)
    return checked.codes[0]


def arrow_code(record: dict) -> str | None:
    """The code for a one-row arrow table, its text date dictionary-encoded as batch reads it."""
    table = pa.Table.from_pylist([record])
    date_col = table.column(DATE_COLUMN)
    if pa.types.is_string(date_col.type):
        table = table.set_column(
            table.column_names.index(DATE_COLUMN), DATE_COLUMN, date_col.dictionary_encode()
        )
    return validate_frame(table, AS_OF).codes[0]


def record_code(record: dict) -> str | None:
    result = check_request(request(record), 0, AS_OF)
    if isinstance(result, Rejected):
        return f"{result.first.field}:{result.first.code}"
    return None


@pytest.mark.parametrize(("override", "expected"), INVALID)
def test_each_invalid_value_is_rejected_with_the_same_code_on_both_paths(override, expected):
    record = {**GOOD, **override}
    assert frame_code(record) == expected
    assert arrow_code(record) == expected
    assert record_code(record) == expected


def test_reason_text_is_identical_on_both_paths():
    record = {**GOOD, "age": 130}
    frame_reason = validate_frame(pd.DataFrame([record]), AS_OF).errors[0]
    rejected = check_request(request(record), 0, AS_OF)
    assert isinstance(rejected, Rejected)
    assert frame_reason == rejected.first.reason == "age: must be between 0 and 120"


def test_valid_record_passes_both_paths():
    assert frame_code(GOOD) is None
    assert arrow_code(GOOD) is None
    assert record_code(GOOD) is None


def test_missing_column_rejects_every_row_naming_the_column():
    frame = pd.DataFrame([GOOD, GOOD]).drop(columns=["income"])
    checked = validate_frame(frame, AS_OF)
    assert not checked.valid.any()
    assert set(checked.errors) == {"income: is missing"}


def test_first_failing_field_in_contract_order_is_reported():
    record = {**GOOD, "age": -5, "last_purchase_date": "nonsense"}
    assert frame_code(record) == "age:out_of_range"
    assert record_code(record) == "age:out_of_range"


def test_frame_mixing_good_and_bad_rows_keeps_the_good_ones():
    rows = [GOOD, {**GOOD, "age": "x"}, {**GOOD, "customer_id": "c-3"}]
    checked = validate_frame(pd.DataFrame(rows), AS_OF)
    assert checked.valid.tolist() == [True, False, True]
    assert checked.errors[1] == "age: must be a number"


@pytest.mark.parametrize(
    "column",
    [
        pd.Series(pd.to_datetime(["2026-06-01 23:30"]).tz_localize("UTC")),
        pd.Series(pd.to_datetime(["2026-06-02 01:30"]).tz_localize("Europe/Berlin")),
        pd.Series([date(2026, 6, 1)], dtype=object),
        pd.Series(["2026-06-01T23:30:00Z"]),
        pd.Series(["2026-06-01"], dtype="category"),
    ],
)
def test_dates_of_every_column_type_give_the_same_recency(column):
    frame = pd.DataFrame([GOOD]).assign(last_purchase_date=column)
    checked = validate_frame(frame, AS_OF)
    assert checked.valid[0]
    assert checked.days_since_purchase[0] == (AS_OF - date(2026, 6, 1)).days


def test_parse_purchase_date_uses_utc_calendar_day():
    assert parse_purchase_date("2026-06-01T23:30:00-05:00") == date(2026, 6, 2)
    assert parse_purchase_date(datetime(2026, 6, 1, 5, tzinfo=UTC)) == date(2026, 6, 1)
    with pytest.raises(DateFieldError) as exc:
        parse_purchase_date(1.5)
    assert exc.value.code == "wrong_type"


def test_pydantic_model_ignores_extra_fields_and_lists_them():
    body = request(GOOD)
    body["features"]["gender"] = "f"
    body["channel"] = "web"
    parsed = PredictRequest.model_validate(body)
    assert parsed.ignored_fields == ("channel", "features.gender")
    assert parsed.features.model_dump(mode="json") == {
        **{k: v for k, v in GOOD.items() if k != "customer_id"},
        "days_since_purchase": None,
    }


def test_a_typo_in_a_required_field_is_still_missing():
    body = request(GOOD)
    body["features"]["incme"] = body["features"].pop("income")
    with pytest.raises(ValidationError) as exc:
        PredictRequest.model_validate(body)
    assert [e["loc"] for e in exc.value.errors()] == [("features", "income")]


def test_validation_of_a_large_frame_is_column_wise():
    n = 50_000
    frame = pd.DataFrame({c: [GOOD[c]] * n for c in INPUT_COLUMNS})
    frame.loc[::10, "age"] = -1
    checked = validate_frame(frame, AS_OF)
    assert int((~checked.valid).sum()) == n // 10
    assert np.all(checked.numeric["income"] == 55_000.0)


def checked_both_ways(table: pa.Table) -> ValidatedFrame:
    """`validate_frame` of an arrow table, after checking it agrees with the pandas copy's on
    every row's code, every numeric value and every recency."""
    from_arrow = validate_frame(table, AS_OF)
    from_pandas = validate_frame(table.to_pandas(date_as_object=False), AS_OF)
    assert from_arrow.codes.tolist() == from_pandas.codes.tolist()
    for name in ("age", "income", "purchase_history"):
        np.testing.assert_array_equal(from_arrow.numeric[name], from_pandas.numeric[name])
    np.testing.assert_array_equal(from_arrow.days_since_purchase, from_pandas.days_since_purchase)
    return from_arrow


def typed_table(date_type: pa.DataType) -> pa.Table:
    """A parquet-like table: typed columns, nulls and in-type bad values, one per row."""
    ok = [1.0] * 11
    return pa.table(
        {
            "customer_id": pa.array(["a", None, "", *"bcdefghi"], pa.large_string()),
            "age": [30.0, 30.0, 30.0, None, float("nan"), -1.0, *[30.0] * 5],
            "income": [*ok[:6], float("inf"), *ok[:4]],
            "purchase_history": pa.array([*[1] * 7, None, 1, 1, 1], pa.int64()),
            DATE_COLUMN: pa.array(
                [*["2026-01-01"] * 8, "2026-13-01", "2027-01-01", None], date_type
            ),
        }
    )


@pytest.mark.parametrize("date_type", [pa.string(), pa.dictionary(pa.int32(), pa.string())])
def test_an_arrow_table_is_checked_like_its_pandas_copy(date_type):
    from_arrow = checked_both_ways(typed_table(date_type))
    assert from_arrow.codes.tolist() == [
        None,
        "customer_id:null",
        "customer_id:out_of_range",
        "age:null",
        "age:null",
        "age:out_of_range",
        "income:not_finite",
        "purchase_history:null",
        "last_purchase_date:bad_date",
        "last_purchase_date:future_date",
        "last_purchase_date:null",
    ]


# Column types a parquet file may hold for each field, beyond the contract's own.
ODD_COLUMNS = {
    "age uint64": ("age", pa.array([30, 200, None], pa.uint64())),
    "age float32": ("age", pa.array([30.5, None, 1e9], pa.float32())),
    "age decimal": ("age", pa.array([Decimal("30.5"), None, Decimal("1")], pa.decimal128(5, 1))),
    "age bool": ("age", pa.array([True, None, False])),
    "age dictionary": ("age", pa.array([30.0, 400.0, None]).dictionary_encode()),
    "income all null": ("income", pa.nulls(3)),
    "id binary": ("customer_id", pa.array([b"a", b"b", None])),
    "id dictionary": ("customer_id", pa.array(["a", "", None]).dictionary_encode()),
    "date date32": (DATE_COLUMN, pa.array([date(2026, 1, 1), date(2027, 1, 1), None])),
    "date timestamp": (
        DATE_COLUMN,
        pa.array([datetime(2026, 1, 1, 23), None, datetime(2026, 7, 1)], pa.timestamp("us", "UTC")),
    ),
    "date integer dictionary": (DATE_COLUMN, pa.array([20260101, None, 1]).dictionary_encode()),
}


@pytest.mark.parametrize("name", ODD_COLUMNS)
def test_any_arrow_column_type_is_checked_like_its_pandas_copy(name):
    field, column = ODD_COLUMNS[name]
    base = pa.Table.from_pylist([{**GOOD, "customer_id": f"c-{i}"} for i in range(3)])
    table = base.set_column(base.column_names.index(field), field, column)
    from_arrow = checked_both_ways(table)
    assert any(from_arrow.codes)  # every odd column above holds at least one bad value


@pytest.mark.parametrize(
    "column",
    [
        pa.array([17, 2**63 - 1, None], pa.int64()),
        pa.array([17, 2**64 - 1, None], pa.uint64()),
        pa.array([17, 3, None], pa.int8()),
    ],
)
def test_integer_ids_of_any_width_are_their_decimal_text(column):
    base = pa.Table.from_pylist([GOOD] * 3)
    table = base.set_column(0, "customer_id", column)
    expected_codes = [None, None, "customer_id:null"]
    assert validate_frame(table, AS_OF).codes.tolist() == expected_codes
    nullable = table.to_pandas(types_mapper={column.type: pd.ArrowDtype(column.type)}.get)
    assert validate_frame(nullable, AS_OF).codes.tolist() == expected_codes
    assert customer_ids(pd.DataFrame({"customer_id": column.to_pylist()[:2]})).tolist() == [
        "17",
        str(column[1].as_py()),
    ]
    text_twin = check_request({**request(GOOD), "customer_id": str(column[1].as_py())}, 0, AS_OF)
    integer = check_request({**request(GOOD), "customer_id": column[1].as_py()}, 0, AS_OF)
    assert integer.customer_id == text_twin.customer_id == str(column[1].as_py())


@pytest.mark.parametrize("value", [17.0, 1.5, True, False, ""])
def test_floats_booleans_and_empty_ids_stay_errors(value):
    expected = "customer_id:out_of_range" if value == "" else "customer_id:wrong_type"
    record = {**GOOD, "customer_id": value}
    assert record_code(record) == expected
    assert frame_code(record) == expected


def test_an_absent_id_is_no_error_and_no_id():
    flat = {k: v for k, v in GOOD.items() if k != "customer_id"}
    assert record_code(flat) is None
    checked = validate_frame(pd.DataFrame([flat]), AS_OF)
    assert checked.codes.tolist() == [None]
    assert customer_ids(pd.DataFrame([flat])).tolist() == [None]


def test_unhashable_json_values_in_a_date_column_are_the_wrong_type():
    # Found by fuzzing /predict/dataframe: lists and objects cannot be factorized.
    values = [[], {"a": 1}, "2026-01-01", None, [1], "2027-01-01"]
    frame = pd.DataFrame([{**GOOD, "last_purchase_date": v} for v in values])
    assert validate_frame(frame, AS_OF).codes.tolist() == [
        "last_purchase_date:wrong_type",
        "last_purchase_date:wrong_type",
        None,
        "last_purchase_date:null",
        "last_purchase_date:wrong_type",
        "last_purchase_date:future_date",
    ]
