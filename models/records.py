"""JSON records checked a block at a time: the batch script's JSON input and the bridge's
micro-batches go through the column-wise validator (`models.frames`), not one pydantic
validation per record.

A record that fails is checked again alone with `models.predict.check_request`, the per-record
path of `/predict/batch`: its reasons (all of them, in that path's order) are the API's word for
word, and a disagreement between the two validators can only ever let a customer through.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from models.contract import DAYS_COLUMN, INPUT_COLUMNS
from models.features import matrix_from_frame, matrix_from_records
from models.frames import customer_ids, validate_frame
from models.policy import as_flat
from models.predict import Rejected, check_request
from models.schema import PredictRequest

# What the validator reads: the contract's columns and the stand-in for the purchase date.
READ_COLUMNS = (*INPUT_COLUMNS, DAYS_COLUMN)


def records_frame(
    records: Sequence[Mapping[str, Any]], columns: Iterable[str]
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Flat records as an object frame of `columns`, each value as the record gives it, and, per
    contract field among them, the rows whose record lacks the key (absent is not null).

    Object columns, built directly: a frame inferred from records widens a column of integers
    with one gap to floats (an integer id 17 would become 17.0, not an id). A JSON NaN is taken
    as null, as pandas would.
    """
    names = list(columns)
    frame = pd.DataFrame(
        {
            name: pd.Series([None if (v := r.get(name)) != v else v for r in records], dtype=object)
            for name in names
        },
        index=pd.RangeIndex(len(records)),
    )
    absent: dict[str, np.ndarray] = {
        name: np.fromiter((name not in r for r in records), bool, len(records))
        for name in INPUT_COLUMNS
        if name in names
    }
    return frame, absent


@dataclass(frozen=True, slots=True)
class CheckedRecords:
    """`check_records`' answer, one entry per record in order."""

    valid: np.ndarray  # bool
    customer_ids: np.ndarray  # object: the id as the answer names it (text), or None
    matrix: np.ndarray  # float64 features of the valid records, in order
    rejected: dict[int, Rejected]  # by position: why a record is not valid


def check_records(bodies: Sequence[Any], as_of: date) -> CheckedRecords:
    """Parsed JSON values (flat or nested records, or anything else) checked as requests are,
    in one column-wise pass."""
    is_record = np.fromiter((isinstance(b, dict) for b in bodies), bool, len(bodies))
    flat = [as_flat(b) if ok else {} for b, ok in zip(bodies, is_record, strict=True)]
    frame, absent = records_frame(flat, READ_COLUMNS)
    not_records = np.full(len(bodies), None, object)
    not_records[~is_record] = "wrong_type"
    checked = validate_frame(frame, as_of, not_records, absent)
    valid, ids = checked.valid.copy(), customer_ids(frame)
    rejected: dict[int, Rejected] = {}
    rescued: list[tuple[int, PredictRequest]] = []
    for i in np.flatnonzero(~valid).tolist():
        outcome = check_request(bodies[i], i, as_of)
        if isinstance(outcome, Rejected):
            rejected[i] = outcome
        else:  # the per-record check accepts it: never refuse a customer the API would score
            rescued.append((i, outcome))
    matrix = matrix_from_frame(checked)
    if rescued:
        for i, request in rescued:
            valid[i], ids[i] = True, request.customer_id
        rows = np.flatnonzero(checked.valid)
        extra = matrix_from_records([r.features for _, r in rescued], as_of)
        order = np.argsort(np.concatenate([rows, [i for i, _ in rescued]]), kind="stable")
        matrix = np.concatenate([matrix, extra])[order]
    return CheckedRecords(valid, ids, matrix, rejected)
