"""Batch quality alarms: the share of rows rejected, and of records missing each input column's
value, against thresholds (the seed's validation warned above 10% nulls). Each share above its
threshold is an anomaly, so `--fail-on-anomaly` turns it into exit 3.

Missing values are counted on the rejected rows only: the input policy (`models.policy`)
rejects every row that misses a value the model needs, so a scored row misses none.
"""

import argparse
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.contract import (
    DATE_COLUMN,
    DAYS_COLUMN,
    ERROR_COLUMN,
    ID_COLUMN,
    INPUT_COLUMNS,
    NUMERIC_FIELDS,
)
from models.validation import describe

DEFAULT_MAX_REJECT_SHARE = 0.10
DEFAULT_MAX_NULL_SHARE = 0.10
# Rows that were not records at all (a JSON line that does not parse): rejected, but no column
# of theirs is missing.
_NOT_RECORDS = frozenset(describe("request", c).reason for c in ("not_json", "wrong_type"))
# An id column may be absent (the rows then carry no id); a null id is what counts as missing.
# The id is checked first, so a row with a null id always gives this reason.
_NULL_ID = describe(ID_COLUMN, "null").reason
# The rejects file keeps these under their own names (only its own columns' namesakes move).
READ_COLUMNS = (*INPUT_COLUMNS, DAYS_COLUMN)


def share(text: str) -> float:
    """An argparse type: a share between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share between 0 and 1")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-reject-share",
        type=share,
        default=DEFAULT_MAX_REJECT_SHARE,
        metavar="SHARE",
        help=f"anomaly above this share of rows rejected (default {DEFAULT_MAX_REJECT_SHARE})",
    )
    p.add_argument(
        "--max-null-share",
        type=share,
        default=DEFAULT_MAX_NULL_SHARE,
        metavar="SHARE",
        help="anomaly above this share of records missing an input column's value"
        f" (default {DEFAULT_MAX_NULL_SHARE})",
    )


def _missing(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Null or NaN; in text, also the `nan` of a float cast to text or of a JSON `NaN`."""
    mask = col.is_null(nan_is_null=True)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        mask = pc.or_kleene(mask, pc.is_in(col, pa.array(["nan", "NaN"], col.type)))
    return _mask(mask)


def _mask(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An arrow boolean result as NumPy, null (a null reason) as False."""
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), bool)


def null_counts(rejected: pa.Table | pa.RecordBatch) -> tuple[dict[str, int], int]:
    """(values missing per input column, rows that were not records) among rows of the rejects
    file: what the policy treats as missing, null, NaN or an absent key; for the date, only where
    `days_since_purchase` does not stand in for it; for the id, a null one (an absent id is
    allowed)."""
    reasons = rejected.column(ERROR_COLUMN)
    records = ~_mask(pc.is_in(reasons, pa.array(sorted(_NOT_RECORDS), reasons.type)))

    def missing(name: str) -> np.ndarray:
        if name not in rejected.schema.names:  # no input had the column
            return np.ones(rejected.num_rows, bool)
        return _missing(rejected.column(name))

    masks = {ID_COLUMN: _mask(pc.equal(reasons, pa.scalar(_NULL_ID, reasons.type)))}
    masks |= {name: missing(name) for name in NUMERIC_FIELDS}
    masks[DATE_COLUMN] = missing(DATE_COLUMN) & missing(DAYS_COLUMN)
    counts = {name: int(np.count_nonzero(masks[name] & records)) for name in INPUT_COLUMNS}
    return counts, int(np.count_nonzero(~records))


@dataclass(frozen=True)
class Limits:
    max_reject_share: float = DEFAULT_MAX_REJECT_SHARE
    max_null_share: float = DEFAULT_MAX_NULL_SHARE


def anomaly(code: str, message: str, **detail: Any) -> dict[str, Any]:
    """An anomaly as the report lists it: `kind` repeats the stable `code` for older readers."""
    return {"code": code, "kind": code, **detail, "message": message}


def quality(
    summary: dict[str, Any], nulls: dict[str, int], not_records: int, limits: Limits
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The report's `quality` section and its anomalies: the rejected share of the rows in, and
    each input column's missing share of the rows that were records."""
    rows, rejected = summary["rows_in"], summary["rows_rejected"]
    records = rows - not_records
    reject_share = rejected / rows if rows else None
    null_shares = {c: nulls.get(c, 0) / records if records else None for c in INPUT_COLUMNS}
    found = []
    if reject_share is not None and reject_share > limits.max_reject_share:
        found.append(
            anomaly(
                "rejected_share_high",
                f"{reject_share:.1%} of rows were rejected ({rejected:,} of {rows:,}),"
                f" above the threshold of {limits.max_reject_share:.1%}",
                column=None,
                observed=reject_share,
                threshold=limits.max_reject_share,
            )
        )
    for column, value in null_shares.items():
        if value is not None and value > limits.max_null_share:
            found.append(
                anomaly(
                    "null_share_high",
                    f"{column} is missing in {value:.1%} of records ({nulls[column]:,} of"
                    f" {records:,}), above the threshold of {limits.max_null_share:.1%}",
                    column=column,
                    observed=value,
                    threshold=limits.max_null_share,
                )
            )
    section = {
        "max_reject_share": limits.max_reject_share,
        "max_null_share": limits.max_null_share,
        "rejected_share": reject_share,
        "records": records,
        "null_counts": {c: nulls.get(c, 0) for c in INPUT_COLUMNS},
        "null_shares": null_shares,
    }
    return section, found
