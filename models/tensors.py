"""The Open Inference Protocol's tensors (KServe V2, MLServer, Triton) as the contract's records.

An inference request carries the customers one of two ways (docs/oip.md):

- one FP64 tensor of shape [N, 4], the features in the contract's order (`FEATURES`), any name;
- one tensor of shape [N] (or [N, 1]) per named column: `age`, `income`, `purchase_history`
  (numeric), and `last_purchase_date` (BYTES, ISO 8601) or `days_since_purchase` (numeric).

`requests_from_inputs` turns either into the N flat records `/predict/batch` takes, and
`sources` says which input each field came from, so that a value the contract refuses is reported
against the tensor that carried it (`rejection_error`). Only the tensor's form is checked here;
the values are the contract's to check (`models.predict.split_requests`), as on every path.
"""

from collections.abc import Iterator, Sequence
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.contract import (
    DATE_COLUMN,
    DAYS_COLUMN,
    FEATURES,
    MAX_BATCH_ITEMS,
    NUMERIC_FIELDS,
)
from models.errors import InvalidTensorError

PROTOCOL_MODEL_NAME: Final = "churn"
FEATURES_INPUT: Final = "features"  # the [N, 4] tensor's name in the metadata (any name is taken)
NUMERIC_TYPES: Final = frozenset(
    [
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "FP16",
        "FP32",
        "FP64",
    ]
)
NAME_SHOWN: Final = 64  # characters of a client's tensor name an error quotes
COLUMN_INPUTS: Final = (*NUMERIC_FIELDS, DATE_COLUMN, DAYS_COLUMN)
# Every output, shape [N], and its datatype (confidence_level: one of CONFIDENCE_LEVELS).
OUTPUTS: Final = {
    "churn_probability": "FP64",
    "prediction": "INT64",
    "confidence_level": "BYTES",
}


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None  # None: sent as binary data (models/tensors_binary.py)


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


def named(name: str, kind: str = "input") -> str:
    """How an error names a tensor: quoted and escaped, and cut short, as the client chose it
    and the log line of the error shows it."""
    return f"{kind} {name[:NAME_SHOWN]!r}"


def parse_request(body: Any) -> InferenceRequest:
    """A decoded JSON body as an `InferenceRequest`; `InvalidTensorError` naming the input (or
    the request field) at fault otherwise."""
    if not isinstance(body, dict):
        raise InvalidTensorError("request body", "must be a JSON object")
    try:
        return InferenceRequest.model_validate(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = list(err["loc"])
        where = "request body" if not loc else ".".join(map(str, loc))
        if len(loc) >= 2 and loc[0] == "inputs" and isinstance(body, dict):
            raw = body["inputs"][loc[1]]
            if isinstance(raw, dict) and isinstance(raw.get("name"), str):
                where = named(raw["name"]) + "".join(f".{p}" for p in loc[2:])
        raise InvalidTensorError(where, err["msg"]) from None


def flat(data: Sequence[Any]) -> Iterator[Any]:
    """A tensor's elements in row-major order: the protocol allows nested or flattened data."""
    for item in data:
        if isinstance(item, list):
            yield from flat(item)
        else:
            yield item


def _rows(tensor: RequestInput, columns: int | None) -> int:
    """N, for a tensor that must be [N, columns] (or [N] / [N, 1] when columns is None)."""
    shape, where = tensor.shape, named(tensor.name)
    expected = f"[N, {columns}]" if columns else "[N] or [N, 1]"
    fits = (len(shape) == 2 and shape[1] == columns) if columns else shape[1:] in ([], [1])
    if not shape or not fits or shape[0] < 0:
        raise InvalidTensorError(where, f"shape {str(shape)[:NAME_SHOWN]} is not {expected}")
    if shape[0] > MAX_BATCH_ITEMS:
        raise InvalidTensorError(where, f"{shape[0]} rows, more than {MAX_BATCH_ITEMS}")
    return shape[0]


def elements(tensor: RequestInput, columns: int | None = None) -> list[Any]:
    """The tensor's elements, checked against its shape and datatype (not the contract)."""
    n, where = _rows(tensor, columns), named(tensor.name)
    if tensor.data is None:
        raise InvalidTensorError(where, "has no data (nor binary_data_size)")
    values = list(flat(tensor.data))
    if len(values) != n * (columns or 1):
        raise InvalidTensorError(
            where, f"{len(values)} elements for shape {str(tensor.shape)[:NAME_SHOWN]}"
        )
    if tensor.datatype == "BYTES":
        if not all(isinstance(v, str) for v in values):
            raise InvalidTensorError(where, "BYTES data must be strings")
    elif tensor.datatype in NUMERIC_TYPES:
        integral = not tensor.datatype.startswith("FP")
        for v in values:
            number = isinstance(v, int if integral else int | float) and not isinstance(v, bool)
            if not number:
                kind = "integers" if integral else "numbers"
                raise InvalidTensorError(where, f"{tensor.datatype} data must be {kind}")
    else:
        raise InvalidTensorError(
            where, f"datatype {tensor.datatype[:NAME_SHOWN]!r} is not supported"
        )
    return values


class Decoded(BaseModel):
    """The records of an inference request, and the input each of their fields came from."""

    records: list[dict[str, Any]]
    sources: dict[str, str]


def requests_from_inputs(inputs: Sequence[RequestInput]) -> Decoded:
    """The customers of an inference request as flat records (field names of the contract)."""
    if any(t.name in COLUMN_INPUTS for t in inputs):
        return _from_columns(inputs)
    if len(inputs) != 1:
        names = ", ".join(repr(t.name) for t in inputs)
        raise InvalidTensorError(
            "inputs", f"{names}: expected one [N, 4] FP64 tensor or the named columns"
        )
    tensor = inputs[0]
    if tensor.datatype != "FP64":
        raise InvalidTensorError(
            named(tensor.name), f"datatype {tensor.datatype[:NAME_SHOWN]!r} is not FP64"
        )
    values = elements(tensor, len(FEATURES))
    width = len(FEATURES)
    rows = [values[i : i + width] for i in range(0, len(values), width)]
    records = [dict(zip(FEATURES, row, strict=True)) for row in rows]
    return Decoded(records=records, sources=dict.fromkeys(FEATURES, tensor.name))


def _from_columns(inputs: Sequence[RequestInput]) -> Decoded:
    by_name: dict[str, RequestInput] = {}
    for t in inputs:
        if t.name not in COLUMN_INPUTS:
            known = ", ".join(COLUMN_INPUTS)
            raise InvalidTensorError(named(t.name), f"unknown input (expected {known})")
        if t.name in by_name:
            raise InvalidTensorError(named(t.name), "given twice")
        by_name[t.name] = t
    for name in NUMERIC_FIELDS:
        if name not in by_name:
            raise InvalidTensorError(named(name), "is missing")
    if DATE_COLUMN not in by_name and DAYS_COLUMN not in by_name:
        raise InvalidTensorError(f"input '{DATE_COLUMN}' (or '{DAYS_COLUMN}')", "is missing")
    columns: dict[str, list[Any]] = {}
    for name, t in by_name.items():
        wanted = "BYTES" if name == DATE_COLUMN else "numeric"
        is_bytes = t.datatype == "BYTES"
        if is_bytes != (name == DATE_COLUMN):
            raise InvalidTensorError(
                named(name), f"datatype {t.datatype[:NAME_SHOWN]!r} is not {wanted}"
            )
        columns[name] = elements(t)
    sizes = {name: len(v) for name, v in columns.items()}
    if len(set(sizes.values())) > 1:
        raise InvalidTensorError("inputs", f"the columns differ in length: {sizes}")
    n = next(iter(sizes.values()))
    records = [{name: values[i] for name, values in columns.items()} for i in range(n)]
    return Decoded(records=records, sources={name: name for name in columns})


def rejection_error(
    decoded: Decoded, index: int, field: str, message: str, more: int
) -> InvalidTensorError:
    """The 400 for the first row the contract refused (row `index`, `field`: `message`)."""
    source = decoded.sources.get(field, field)
    where = named(source) + (f" row {index}" if source == field else f" row {index} ({field})")
    rest = f" (and {more} more invalid row{'s' * (more > 1)})" if more else ""
    return InvalidTensorError(where, message + rest)


def requested_outputs(outputs: Sequence[RequestOutput] | None) -> list[str]:
    """The outputs to answer with: those asked for, in their order, or all of them."""
    if not outputs:
        return list(OUTPUTS)
    for o in outputs:
        if o.name not in OUTPUTS:
            known = ", ".join(OUTPUTS)
            raise InvalidTensorError(named(o.name, "output"), f"unknown output (expected {known})")
    return [o.name for o in outputs]


def output_tensors(predictions: Sequence[Any], names: Sequence[str]) -> list[ResponseOutput]:
    """The `names` outputs of the predictions (objects with those attributes), shape [N]."""
    n = len(predictions)
    return [
        ResponseOutput(
            name=name,
            shape=[n],
            datatype=OUTPUTS[name],
            data=[getattr(p, name) for p in predictions],
        )
        for name in names
    ]
