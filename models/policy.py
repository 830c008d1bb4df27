"""The input policy, written once for every path: loose where producers are loose, strict where
the model needs it.

- Unknown fields and columns are ignored: they never change an answer, and each path reports
  them (a metric on the service and the bridge, a list in the batch report).
- A record is flat (`{"customer_id", "age", ...}`) or nested (`{"customer_id", "features": {...}}`);
  when `features` is present the record is nested and its top-level feature fields are ignored.
- `customer_id` is text or an integer (taken as its decimal text); absent, the answer carries no
  id. Floats, booleans, empty and over-long ids are errors.
- `days_since_purchase` (a whole number >= 0) stands in for an absent or null
  `last_purchase_date`; when both are present the date wins.
- Metadata never refuses a customer: an unusable `request_id` or `priority`, or an unreadable
  Kafka event time, is ignored (and reported) instead.

The feature rules themselves (types and ranges) are in `models.schema` and `models.frames`,
worded by `models.validation.describe`.
"""

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from models.contract import (
    EPOCH_MILLIS_FROM,
    EVENT_TIME_FIELD,
    FEATURE_FIELDS,
    ID_COLUMN,
    METADATA_FIELDS,
    NESTED_FIELD,
    PRIORITIES,
    REQUEST_ID_MAX_LENGTH,
)

# `explain` asks for reason codes (models.explain) on every path that answers per record.
OPTIONS = ("explain",)
REQUEST_FIELDS = frozenset((ID_COLUMN, NESTED_FIELD, *METADATA_FIELDS, *OPTIONS))
FLAT_FIELDS = frozenset((ID_COLUMN, *FEATURE_FIELDS, *METADATA_FIELDS, *OPTIONS))
_FEATURES = frozenset(FEATURE_FIELDS)


def is_integer(value: object) -> bool:
    """A Python or NumPy integer, not a boolean (JSON `true` is not an id or a count)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def customer_id_text(value: Any) -> Any:
    """An integer id as its decimal text (`17` and `"17"` are one customer); anything else as is,
    for the schema to accept or refuse."""
    return str(int(value)) if is_integer(value) else value


def usable_request_id(value: Any) -> str | None:
    """The caller's request id when it is one (text or an integer, 1..200 characters), else None."""
    if is_integer(value):
        value = str(int(value))
    if isinstance(value, str) and 0 < len(value) <= REQUEST_ID_MAX_LENGTH:
        return value
    return None


def usable_priority(value: Any) -> str | None:
    return value if isinstance(value, str) and value in PRIORITIES else None


_USABLE = {"request_id": usable_request_id, "priority": usable_priority}


def as_nested(record: Any) -> Any:
    """A flat record as the nested request the API takes (a new dict); a nested one unchanged."""
    if not isinstance(record, dict) or NESTED_FIELD in record:
        return record
    nested = {k: v for k, v in record.items() if k not in _FEATURES}
    nested[NESTED_FIELD] = {k: record[k] for k in FEATURE_FIELDS if k in record}
    return nested


def as_flat(record: dict[str, Any]) -> dict[str, Any]:
    """A nested record as one flat row (its `features` win over top-level namesakes); a flat
    one unchanged. A `features` that is not an object stays, to be reported as such."""
    nested = record.get(NESTED_FIELD)
    if not isinstance(nested, dict):
        return record
    flat = {k: v for k, v in record.items() if k != NESTED_FIELD and k not in _FEATURES}
    flat.update(nested)
    return flat


def ignored_fields(record: Any, extra_known: Iterable[str] = ()) -> tuple[str, ...]:
    """The fields of a record (flat or nested) that no path reads, and metadata too malformed to
    use; nested ones are named `features.NAME`. `extra_known`: names a path reads besides the
    request's own (the bridge's event time)."""
    if not isinstance(record, dict):
        return ()
    known = REQUEST_FIELDS if NESTED_FIELD in record else FLAT_FIELDS
    out = [k for k in record if k not in known and k not in extra_known]
    nested = record.get(NESTED_FIELD)
    if isinstance(nested, dict):
        out += [f"{NESTED_FIELD}.{k}" for k in nested if k not in _FEATURES]
    out += [k for k, ok in _USABLE.items() if record.get(k) is not None and not ok(record[k])]
    return tuple(out)


def ignored_columns(names: Iterable[str], extra_known: Iterable[str] = ()) -> list[str]:
    """The columns of a table that no path reads (request metadata included: files carry none).
    `extra_known`: columns a path reads besides the features (the DataFrame endpoint's
    `OPTIONS`)."""
    read = {ID_COLUMN, *FEATURE_FIELDS, *extra_known}
    return [n for n in names if n not in read]


class EventTimeError(ValueError):
    """An event time that cannot be read; `code` is `wrong_type`, `bad_date` or `out_of_range`."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(f"{EVENT_TIME_FIELD}: {code}")


def parse_event_time(value: Any) -> datetime:
    """An event time as an aware UTC datetime.

    Accepted: ISO 8601 text (naive means UTC), or epoch seconds or milliseconds as a number or
    as text of one. Magnitudes at or above `EPOCH_MILLIS_FROM` (1e11) are milliseconds.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                raise EventTimeError("bad_date") from None
        else:
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventTimeError("wrong_type")
    if not math.isfinite(value):
        raise EventTimeError("bad_date")
    seconds = value / 1000 if abs(value) >= EPOCH_MILLIS_FROM else value
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise EventTimeError("out_of_range") from None


MAX_IGNORED_LABELS = 50
_labels: set[str] = set()


def ignored_label(name: str) -> str:
    """A metric label for an ignored field: its name for the first `MAX_IGNORED_LABELS` names a
    process sees (cut to 64 characters), `other` after that, so that producers inventing names
    cannot create unbounded time series."""
    name = name[:64]
    if name in _labels:
        return name
    if len(_labels) < MAX_IGNORED_LABELS:
        _labels.add(name)
        return name
    return "other"
