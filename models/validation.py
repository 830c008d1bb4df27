"""The feature contract as checks: the wording of every failure and one scalar date parser.

Per-record paths (HTTP JSON, Kafka messages) validate with the pydantic models in
`models.schema`, whose errors `field_errors_from_pydantic` turns into the same `FieldError`s
(same field, code and text) that `models.frames.validate_frame` gives a whole column at a time,
for the DataFrame endpoint and the batch script.
"""

from datetime import UTC, date, datetime

from pydantic import ValidationError

from models.contract import (
    AGE_MAX,
    AGE_MIN,
    CUSTOMER_ID_MAX_LENGTH,
    DATE_COLUMN,
    DAYS_COLUMN,
    DAYS_SINCE_PURCHASE_MIN,
    ID_COLUMN,
    INCOME_MIN,
    PURCHASE_HISTORY_MIN,
)
from models.errors import FieldError

_TYPE_NAMES = {
    ID_COLUMN: "must be a string or an integer",
    "age": "must be a number",
    "income": "must be a number",
    "purchase_history": "must be an integer",
    DAYS_COLUMN: "must be an integer",
    DATE_COLUMN: "must be an ISO 8601 date or datetime string",
    "request": "must be a JSON object",
}
_RANGES = {
    ID_COLUMN: f"must be 1 to {CUSTOMER_ID_MAX_LENGTH} characters long",
    "age": f"must be between {AGE_MIN:g} and {AGE_MAX:g}",
    "income": f"must be >= {INCOME_MIN:g}",
    "purchase_history": f"must be >= {PURCHASE_HISTORY_MIN}",
    DAYS_COLUMN: f"must be >= {DAYS_SINCE_PURCHASE_MIN}",
}


def describe(field: str, code: str, as_of: date | None = None) -> FieldError:
    """The one place a (field, code) pair becomes the text every path reports."""
    messages = {
        "missing": "is missing",
        "null": "is null",
        "wrong_type": _TYPE_NAMES.get(field, "has the wrong type"),
        "not_finite": "must be a finite number",
        "not_integer": "must be a whole number",
        "out_of_range": _RANGES.get(field, "is out of range"),
        "bad_date": "is not a valid ISO 8601 date or datetime",
        "future_date": f"is after the as-of date {as_of}" if as_of else "is in the future",
        "not_json": "is not valid JSON",
    }
    return FieldError(field, code, messages.get(code, "is invalid"))


class DateFieldError(ValueError):
    """Raised by `parse_purchase_date`; `code` is `wrong_type` or `bad_date`."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(describe(DATE_COLUMN, code).message)


def parse_purchase_date(value: object) -> date:
    """A date, a datetime or an ISO 8601 string as a calendar date in UTC (naive means UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise DateFieldError("bad_date") from None
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    raise DateFieldError("wrong_type")


def today_utc() -> date:
    """The default as-of date; callers pass it explicitly, nothing below reads the clock."""
    return datetime.now(UTC).date()


# pydantic error types, grouped by the code we report for them.
_PYDANTIC_CODES = {
    "missing": "missing",
    "null": "null",
    "not_finite": "not_finite",
    "finite_number": "not_finite",
    "int_from_float": "not_integer",
    "greater_than_equal": "out_of_range",
    "less_than_equal": "out_of_range",
    "string_too_short": "out_of_range",
    "string_too_long": "out_of_range",
    "too_short": "out_of_range",
    "too_long": "out_of_range",
    "bad_date": "bad_date",
    "future_date": "future_date",
}


def field_errors_from_pydantic(exc: ValidationError, as_of: date | None = None) -> list[FieldError]:
    """pydantic's errors as `FieldError`s, worded exactly as `validate_frame` words them."""
    out = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
        field = loc[-1] if loc else "request"
        if err["type"] != "missing" and err.get("input", 0) is None:
            code = "null"
        else:
            code = _PYDANTIC_CODES.get(err["type"], "wrong_type")
        out.append(describe(field, code, as_of))
    return out
