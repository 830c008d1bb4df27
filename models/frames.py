"""The column-wise validator: every row of a pandas frame or an arrow table checked against the
contract at once, with the reasons worded by `models.validation.describe`."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date
from functools import lru_cache
from typing import TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from models.contract import (
    AGE_MAX,
    AGE_MIN,
    CUSTOMER_ID_MAX_LENGTH,
    DATE_COLUMN,
    DAYS_COLUMN,
    DAYS_SINCE_PURCHASE_MIN,
    ID_COLUMN,
    INCOME_MIN,
    INPUT_COLUMNS,
    PURCHASE_HISTORY_MIN,
)
from models.policy import customer_id_text, is_integer
from models.validation import DateFieldError, describe, parse_purchase_date

Frame: TypeAlias = pd.DataFrame | pa.Table
Column: TypeAlias = pd.Series | pa.Array
Reject = Callable[[str, np.ndarray, str], None]


@dataclass(frozen=True, slots=True)
class ValidatedFrame:
    """Result of `validate_frame`: which rows passed, why the others did not, and their features."""

    valid: np.ndarray  # bool, one per input row
    errors: np.ndarray  # object: None where valid, else the first failing field's reason
    codes: np.ndarray  # object: None where valid, else "field:code"
    numeric: dict[str, np.ndarray]  # float64 columns, meaningful where valid
    days_since_purchase: np.ndarray  # float64, meaningful where valid


def _is_instance(col: pd.Series, types: tuple[type, ...]) -> np.ndarray:
    return col.map(lambda v: isinstance(v, types) and not isinstance(v, bool)).to_numpy(bool)


def _as_pandas(col: pa.Array) -> pd.Series:
    """An arrow column the arrow branches do not cover, converted as `Table.to_pandas` would."""
    return col.to_pandas(date_as_object=False)


def _numeric_column(col: Column) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, null mask, wrong-type mask) of a column that should hold numbers."""
    if isinstance(col, pa.Array):
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            return _numeric_column(_as_pandas(col))
        # Nulls become NaN, as in pandas, so NaN and null mean the same on both kinds.
        values = col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        return values, np.isnan(values), np.zeros(len(col), bool)
    if pd.api.types.is_float_dtype(col) and not pd.api.types.is_extension_array_dtype(col):
        # NaN is the missing value of a NumPy float column: no masked copy, no `isna` pass.
        values = col.to_numpy(np.float64)
        return values, np.isnan(values), np.zeros(len(col), bool)
    if col.dtype == object and (plain := _plain_numbers(col)) is not None:
        return plain, np.isnan(plain), np.zeros(len(col), bool)
    null = col.isna().to_numpy(bool)
    if pd.api.types.is_bool_dtype(col):
        return np.full(len(col), np.nan), null, ~null
    if pd.api.types.is_numeric_dtype(col):
        return col.to_numpy(np.float64, na_value=np.nan), null, np.zeros(len(col), bool)
    is_number = _is_instance(col, (int, float, np.integer, np.floating))
    values = np.full(len(col), np.nan)
    values[is_number] = col[is_number].astype(np.float64).to_numpy()
    return values, null, ~null & ~is_number


_PLAIN_NUMBERS: frozenset[type] = frozenset((int, float, type(None)))
_TEXT: frozenset[type] = frozenset((str,))


def _only(values: list[object], kinds: frozenset[type]) -> bool:
    """Every value is exactly of one of `kinds` (no subclass: a bool is not an int here). The
    column-wise fast paths for what JSON records give; anything else goes value by value."""
    return set(map(type, values)) <= kinds


def _plain_numbers(col: pd.Series) -> np.ndarray | None:
    """An object column of JSON numbers and nulls (what JSON records give) as float64 in one
    NumPy call, None and NaN as NaN; None when it holds anything else (checked value by value)."""
    values = col.tolist()
    if not _only(values, _PLAIN_NUMBERS):
        return None
    try:
        return np.array(values, np.float64)
    except OverflowError:  # an integer beyond float64: the general path says why
        return None


# Date outcomes as small integers: comparing an int8 column is far cheaper than an object one.
_DATE_CODES = (None, "null", "wrong_type", "bad_date", "missing")
_DATE_NULL = _DATE_CODES.index("null")
_DATE_MISSING = _DATE_CODES.index("missing")


@lru_cache(maxsize=1 << 14)
def _date_text_outcome(value: str) -> tuple[int, int]:
    """(ordinal, index into `_DATE_CODES`) of one date string; cached because the chunks of a
    batch run repeat the same few hundred dates."""
    return _date_outcome(value)


def _date_outcome(value: object) -> tuple[int, int]:
    try:
        return parse_purchase_date(value).toordinal(), 0
    except DateFieldError as exc:
        return -1, _DATE_CODES.index(exc.code)


def _date_ordinals(col: Column) -> tuple[np.ndarray, np.ndarray]:
    """(proleptic ordinal day or -1, index into `_DATE_CODES`) per row.

    Strings are parsed once per distinct value with the same parser the per-record path uses,
    so a date means the same thing on every path; a day's file has few distinct dates. A
    dictionary-encoded column (how the batch script reads a text date) has them already.
    """
    if isinstance(col, pa.DictionaryArray) and is_text(col.type.value_type):
        row_codes = pc.fill_null(col.indices, -1).to_numpy()  # -1: the NA slot below
        return _date_table(col.dictionary.to_pylist(), row_codes)
    if isinstance(col, pa.Array):
        col = _as_pandas(col)
    if pd.api.types.is_datetime64_any_dtype(col):
        ordinals = np.full(len(col), -1, np.int64)
        codes = np.zeros(len(col), np.int8)
        ts = col.dt.tz_convert(UTC) if col.dt.tz is not None else col
        null = ts.isna().to_numpy(bool)
        days = ts.to_numpy("datetime64[ns]").astype("datetime64[D]").astype(np.int64)
        ordinals[~null] = days[~null] + date(1970, 1, 1).toordinal()
        codes[null] = _DATE_NULL
        return ordinals, codes
    if isinstance(col.dtype, pd.CategoricalDtype):
        row_codes, uniques = col.cat.codes.to_numpy(), col.cat.categories  # -1 where missing
    else:
        try:
            row_codes, uniques = pd.factorize(col, use_na_sentinel=True)
        except TypeError:  # JSON lists or objects cannot be hashed; they fail as wrong_type
            row_codes, _ = pd.factorize(col.map(_hashable), use_na_sentinel=True)
            rows = np.flatnonzero(row_codes >= 0)[::-1]
            first = np.zeros(row_codes.max() + 1, np.int64)
            first[row_codes[rows]] = rows  # each code's first row (the last write wins)
            return _date_table(col.to_numpy(object)[first].tolist(), row_codes)
    return _date_table(uniques.tolist(), row_codes)


def _hashable(value: object) -> object:
    return repr(value) if isinstance(value, list | dict) else value


def _date_table(uniques: list[object], row_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row outcomes from the outcome of each distinct value (`row_codes` -1: missing)."""
    table_ord = np.full(len(uniques) + 1, -1, np.int64)
    table_code = np.full(len(uniques) + 1, _DATE_NULL, np.int8)  # last slot: the NA sentinel
    for i, value in enumerate(uniques):  # Python objects: iterating arrow is slower
        if value is None:
            continue  # a null dictionary entry: the NA slot's outcome
        outcome = _date_text_outcome(value) if type(value) is str else _date_outcome(value)
        table_ord[i], table_code[i] = outcome
    return table_ord[row_codes], table_code[row_codes]


def is_text(t: pa.DataType) -> bool:
    """Arrow's two string types (32- and 64-bit offsets)."""
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _decoded(col: pa.Array) -> pa.Array:
    """A dictionary-encoded column as its plain values; any other column as it is."""
    return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col


def _text_lengths(text: pa.Array) -> np.ndarray:
    """Characters per value of a text column, exact wherever the 1..MAX rule could fail
    (0 for missing values, which have failed already).

    Counted in UTF-8 bytes first (the offsets, no decoding): 1..MAX bytes is 1..MAX characters,
    so only the rare longer values are decoded and counted in characters.
    """
    lengths = pc.fill_null(pc.binary_length(text), 0).to_numpy().astype(np.int64)
    long = lengths > CUSTOMER_ID_MAX_LENGTH
    if long.any():
        lengths[long] = pc.utf8_length(pc.filter(text, pa.array(long))).to_numpy()
    return lengths


def validate_frame(
    frame: Frame,
    as_of: date,
    request_codes: np.ndarray | None = None,
    absent: Mapping[str, np.ndarray] | None = None,
) -> ValidatedFrame:
    """Check every row of `frame` against the contract, column by column (no per-row Python loop
    except over object columns, which only JSON input produces).

    `frame` is a pandas DataFrame or an arrow table (the batch script's parquet chunks, checked
    without a pandas copy); both give the same outcome for the same values. Columns outside the
    contract are ignored; without a `customer_id` column the rows carry no id (`models.policy`).
    `request_codes` (object, None or a code per row) marks rows that were not records at all
    (a JSON line that does not parse): they fail as the field `request`. `absent` (JSON input:
    a mask per field) tells a key a record lacks from one it sent as null.
    A row's reported reason is its first failing field, in `INPUT_COLUMNS` order.
    """
    n = len(frame)
    names = frame.column_names if isinstance(frame, pa.Table) else frame.columns
    failing = np.zeros(n, bool)
    reasons = np.empty(n, object)  # None everywhere (NumPy zero-fills object arrays)
    codes = np.empty(n, object)

    def reject(field: str, mask: np.ndarray, code: str) -> None:
        if not mask.any():  # the usual case: one pass instead of three
            return
        new = mask & ~failing
        if new.any():
            err = describe(field, code, as_of)
            reasons[new] = err.reason
            codes[new] = f"{field}:{code}"
            failing[new] = True

    if request_codes is not None:
        for code in {c for c in request_codes if c is not None}:
            reject("request", request_codes == code, code)
    numeric: dict[str, np.ndarray] = {}
    days = np.full(n, np.nan)
    gone = absent or {}
    for field in INPUT_COLUMNS:
        if field == ID_COLUMN:
            if field in names:  # an absent id is allowed: the row has none
                given = ~gone.get(field, np.zeros(n, bool))
                null, is_id, lengths = _id_column(_column(frame, field))
                reject(field, given & null, "null")
                reject(field, given & ~null & ~is_id, "wrong_type")
                bad_length = (lengths < 1) | (lengths > CUSTOMER_ID_MAX_LENGTH)
                reject(field, given & ~null & bad_length, "out_of_range")
        elif field == DATE_COLUMN:
            days = _recency(frame, names, as_of, reject, gone.get(field))
        elif field not in names:
            reject(field, np.ones(n, bool), "missing")
            numeric[field] = np.full(n, np.nan)
        else:
            if field in gone:
                reject(field, gone[field], "missing")
            numeric[field] = _checked_number(field, _column(frame, field), np.ones(n, bool), reject)
    return ValidatedFrame(~failing, reasons, codes, numeric, days)


def _checked_number(field: str, col: Column, rows: np.ndarray, reject: Reject) -> np.ndarray:
    """The column as float64, its failures among `rows` rejected as `field`."""
    values, null, wrong = _numeric_column(col)
    reject(field, rows & null, "null")
    reject(field, rows & wrong, "wrong_type")
    with np.errstate(invalid="ignore"):
        reject(field, rows & ~np.isfinite(values) & ~null & ~wrong, "not_finite")
        low, high = _bounds(field)
        if field in _WHOLE:
            reject(field, rows & np.isfinite(values) & (values != np.floor(values)), "not_integer")
        reject(field, rows & ((values < low) | (values > high)), "out_of_range")
    return values


def _recency(
    frame: Frame, names: Sequence[str], as_of: date, reject: Reject, absent: np.ndarray | None
) -> np.ndarray:
    """Days since the last purchase per row: from the date where there is one, else from
    `days_since_purchase` where that is given (the date wins where both are)."""
    n = len(frame)
    if DATE_COLUMN in names:
        ordinals, date_codes = _date_ordinals(_column(frame, DATE_COLUMN))
        if absent is not None:
            date_codes = np.where(absent, np.int8(_DATE_MISSING), date_codes)
    else:
        ordinals, date_codes = np.full(n, -1, np.int64), np.full(n, _DATE_MISSING, np.int8)
    days = (as_of.toordinal() - ordinals).astype(np.float64)
    from_days = np.zeros(n, bool)
    if DAYS_COLUMN in names:
        col = _column(frame, DAYS_COLUMN)
        from_days = ((date_codes == _DATE_NULL) | (date_codes == _DATE_MISSING)) & ~_nulls(col)
        if from_days.any():
            values = _checked_number(DAYS_COLUMN, col, from_days, reject)
            days[from_days] = values[from_days]
            date_codes = np.where(from_days, np.int8(0), date_codes)
    for i, code in enumerate(_DATE_CODES[1:], start=1):
        reject(DATE_COLUMN, date_codes == i, code)
    reject(DATE_COLUMN, ~from_days & (ordinals > as_of.toordinal()), "future_date")
    return days


def _nulls(col: Column) -> np.ndarray:
    if isinstance(col, pa.Array):
        return col.is_null(nan_is_null=True).to_numpy(zero_copy_only=False)
    return col.isna().to_numpy(bool)


def customer_ids(frame: pd.DataFrame) -> np.ndarray:
    """Each row's customer id as the answer names it: text (an integer as its decimal text), or
    None where the frame has no `customer_id` column."""
    if ID_COLUMN not in frame.columns:
        return np.full(len(frame), None, object)
    ids = np.empty(len(frame), object)
    values = frame[ID_COLUMN].tolist()
    ids[:] = values if _only(values, _TEXT) else list(map(customer_id_text, values))
    return ids


def _column(frame: Frame, field: str) -> Column:
    if isinstance(frame, pd.DataFrame):
        return frame[field]
    chunked = frame.column(field)
    col = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
    return col if field == DATE_COLUMN else _decoded(col)  # only the date check reads dictionaries


def _id_column(col: Column) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(null mask, is-an-id mask, length in characters) of the id column: text, or integers of
    any width, whose decimal text is the id."""
    if isinstance(col, pa.Array) and pa.types.is_integer(col.type):
        col = col.cast(pa.string())
    if isinstance(col, pa.Array) and is_text(col.type):
        null = col.is_null().to_numpy(zero_copy_only=False)
        return null, np.ones(len(col), bool), _text_lengths(col)
    if isinstance(col, pa.Array):
        col = _as_pandas(col)
    if (pd.api.types.is_string_dtype(col) and col.dtype != object) or (
        pd.api.types.is_integer_dtype(col)
    ):
        # a text dtype, a Categorical of text, or integers (NumPy or nullable)
        return _id_column(_decoded(pa.array(col)))
    values = col.tolist()
    if _only(values, _TEXT):  # text ids, as JSON records give them
        lengths = np.fromiter(map(len, values), np.int64, len(values))
        return np.zeros(len(values), bool), np.ones(len(values), bool), lengths
    null = col.isna().to_numpy(bool)
    is_id = np.fromiter((isinstance(v, str) or is_integer(v) for v in values), bool, len(values))
    texts = [str(customer_id_text(v)) if ok else "x" for v, ok in zip(values, is_id, strict=True)]
    lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    return null, is_id, lengths


_WHOLE = frozenset(("purchase_history", DAYS_COLUMN))


def _bounds(field: str) -> tuple[float, float]:
    return {
        "age": (AGE_MIN, AGE_MAX),
        "income": (INCOME_MIN, np.inf),
        "purchase_history": (float(PURCHASE_HISTORY_MIN), np.inf),
        DAYS_COLUMN: (float(DAYS_SINCE_PURCHASE_MIN), np.inf),
    }[field]
