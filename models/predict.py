"""Prediction logic shared by every path: validate records, score the valid ones in one call."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError
from pydantic_core import to_json

from models.contract import DATE_COLUMN, ERROR_COLUMN, ID_COLUMN, PREDICTION_COLUMNS
from models.errors import REQUEST, FieldError, InvalidInputError, Loc
from models.explain import REASON_COLUMNS, explain
from models.features import future_date_error, matrix_from_frame
from models.frames import customer_ids, validate_frame
from models.policy import customer_id_text
from models.prediction import FEATURE_NAMES, Predictions, reason_columns
from models.predictor import ChurnPredictor, MatrixScorer
from models.schema import BatchRequest, PredictRequest
from models.validation import describe, field_errors_from_pydantic


@dataclass(frozen=True, slots=True)
class Rejected:
    """One record that failed validation: where it was, who it was (if known) and why."""

    index: int
    customer_id: str | None
    errors: list[FieldError]
    locs: list[Loc]  # where each error was found, e.g. ("features", "age")

    @property
    def first(self) -> FieldError:
        return self.errors[0]


def check_request(item: Any, index: int, as_of: date) -> PredictRequest | Rejected:
    """A request-shaped object as a valid `PredictRequest`, or why it is not one."""
    try:
        request = PredictRequest.model_validate(item)
    except ValidationError as exc:
        cid = customer_id_text(item.get(ID_COLUMN)) if isinstance(item, dict) else None
        errors = field_errors_from_pydantic(exc, as_of)
        locs = [tuple(e["loc"]) for e in exc.errors(include_url=False)]
        return Rejected(index, cid if isinstance(cid, str) else None, errors, locs)
    if err := future_date_error(request.features, as_of):
        return Rejected(index, request.customer_id, [err], [("features", DATE_COLUMN)])
    return request


def parse_request(body: Any, as_of: date) -> PredictRequest:
    """One request body (any JSON value) as a valid `PredictRequest`; `InvalidInputError`
    naming every failing field, in the words every path uses, otherwise."""
    checked = check_request(body, 0, as_of)
    if isinstance(checked, Rejected):
        raise InvalidInputError(checked.errors, checked.locs)
    return checked


def parse_batch(body: Any) -> BatchRequest:
    """A batch body as its envelope (items are checked one by one by `split_requests`)."""
    try:
        return BatchRequest.model_validate(body)
    except ValidationError:
        pass
    # Validated again as the JSON it came as, for pydantic's words in JSON's terms ("a valid
    # array", not "a valid list"): only a refused envelope pays for it.
    try:
        return BatchRequest.model_validate_json(to_json(body))
    except ValidationError as exc:
        errors, locs = [], []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            names = [p for p in loc if isinstance(p, str)]
            # The envelope's own fields keep pydantic's words; the body as a whole, the contract's.
            if names:
                errors.append(FieldError(names[-1], err["type"], err["msg"]))
            else:
                errors.append(describe(REQUEST, "null" if body is None else "wrong_type"))
            locs.append(loc)
        raise InvalidInputError(errors, locs) from None


def frame_from_records(body: Any) -> pd.DataFrame:
    """A DataFrame request body (JSON records) as a DataFrame, one row per record."""
    # Every item an object: pandas raises on some mixes of objects and other values.
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        message = "must be a JSON array of records"
        raise InvalidInputError([FieldError(REQUEST, "wrong_type", message)])
    return pd.DataFrame(body)


def split_requests(
    items: Sequence[Any], as_of: date
) -> tuple[list[tuple[int, PredictRequest]], list[Rejected]]:
    """Valid requests with their positions, and the rejected; one bad item fails only itself."""
    valid: list[tuple[int, PredictRequest]] = []
    rejected: list[Rejected] = []
    for i, item in enumerate(items):
        checked = check_request(item, i, as_of)
        if isinstance(checked, Rejected):
            rejected.append(checked)
        else:
            valid.append((i, checked))
    return valid, rejected


def score_frame(
    predictor: MatrixScorer,
    frame: pd.DataFrame,
    as_of: date,
    explainer: ChurnPredictor | None = None,
) -> tuple[pd.DataFrame, Predictions]:
    """`PREDICTION_COLUMNS` plus `error` for every row of `frame`, in input order, and the
    prediction record of its valid rows.

    Valid rows are scored in one call; invalid rows keep their `customer_id` (as given, an
    integer as its text), get null scores and the reason in `error`. Other columns are ignored.
    With an `explainer` (the predictor itself), rows whose `explain` column is true also get
    `reason_1..3` and `contribution_1..3` (models.explain).
    """
    checked = validate_frame(frame, as_of)
    matrix = matrix_from_frame(checked)
    scores = predictor.score(matrix)
    n, ok = len(frame), checked.valid
    ids = customer_ids(frame)
    wanted = ok & _asks_for_reasons(frame)
    reasons = explain(explainer, matrix) if explainer is not None and wanted.any() else None
    predictions = Predictions(ids[ok].tolist(), matrix, scores, predictor.tag, as_of, reasons)
    out = pd.DataFrame({ID_COLUMN: ids})
    out["prediction"] = pd.array(np.zeros(n, np.int64), dtype="Int64")
    out.loc[~ok, "prediction"] = pd.NA
    out.loc[ok, "prediction"] = scores.prediction
    for name in ("churn_probability", "probability"):
        col = np.full(n, np.nan)
        col[ok] = getattr(scores, name)
        out[name] = col
    confidence = np.full(n, None, object)
    confidence[ok] = scores.confidence_level
    # object dtype keeps None as None (pandas 3 would infer a string dtype with NaN).
    out["confidence_level"] = pd.Series(confidence, dtype=object)
    out[ERROR_COLUMN] = pd.Series(checked.errors, dtype=object)
    columns = [*PREDICTION_COLUMNS, ERROR_COLUMN]
    if reasons is not None:
        keep = wanted[ok]
        for name, values in reason_columns(reasons).items():
            full = np.full(n, None if name in REASON_COLUMNS else np.nan, object)
            full[wanted] = FEATURE_NAMES[values[keep]] if name in REASON_COLUMNS else values[keep]
            out[name] = pd.Series(full, dtype=object if name in REASON_COLUMNS else float)
            columns.append(name)
    return out[columns], predictions


def _asks_for_reasons(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose `explain` column is true (JSON true, 1, or the text "true")."""
    if "explain" not in frame.columns:
        return np.zeros(len(frame), bool)
    return np.array([v is True or v == 1 or v == "true" for v in frame["explain"].tolist()], bool)
