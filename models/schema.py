"""The HTTP and message schema: pydantic models whose constraints come from `models.contract`."""

import math
from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from models.contract import (
    AGE_MAX,
    AGE_MIN,
    CUSTOMER_ID_MAX_LENGTH,
    DATE_COLUMN,
    DAYS_COLUMN,
    DAYS_SINCE_PURCHASE_MIN,
    ID_COLUMN,
    INCOME_MIN,
    MAX_BATCH_ITEMS,
    PRIORITIES,
    PURCHASE_HISTORY_MIN,
    REQUEST_ID_MAX_LENGTH,
)
from models.policy import (
    as_nested,
    customer_id_text,
    ignored_fields,
    usable_priority,
    usable_request_id,
)
from models.validation import DateFieldError, describe, parse_purchase_date


def _number_only(value: Any, info: ValidationInfo) -> Any:
    # pydantic's lax mode would turn "42" and true into numbers; the contract says numbers.
    # NaN counts as null and infinity as non-finite before any range check, as in columns.
    code = None
    if isinstance(value, (str, bool)):
        code = "wrong_type"
    elif isinstance(value, float) and math.isnan(value):
        code = "null"
    elif isinstance(value, float) and math.isinf(value):
        code = "not_finite"
    if code:
        raise PydanticCustomError(code, describe(info.field_name or "value", code).message)
    return value


class _Recency:
    """What `CustomerFeatures` puts in place of an absent date: the days were given instead
    (`FROM_DAYS`), or neither was (`ABSENT`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


FROM_DAYS, ABSENT = _Recency("from days_since_purchase"), _Recency("absent")


def _customer_id(value: Any) -> Any:
    # An absent id is allowed (the default, not validated); an explicit null is a producer's bug.
    if value is None:
        raise PydanticCustomError("null", describe(ID_COLUMN, "null").message)
    return customer_id_text(value)


def _purchase_date(value: Any) -> Any:
    if value is FROM_DAYS:
        return None
    if value is ABSENT or value is None:
        code = "missing" if value is ABSENT else "null"
        raise PydanticCustomError(code, describe(DATE_COLUMN, code).message)
    try:
        return parse_purchase_date(value)
    except DateFieldError as exc:
        raise PydanticCustomError(exc.code, str(exc)) from None


# `| None` for the default (an absent id); an explicit null never gets past `_customer_id`.
CustomerId = Annotated[
    Annotated[str, StringConstraints(min_length=1, max_length=CUSTOMER_ID_MAX_LENGTH, strict=True)]
    | None,
    BeforeValidator(_customer_id),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": CUSTOMER_ID_MAX_LENGTH},
                {"type": "integer"},
            ],
            "description": "text, or an integer (taken as its decimal text)",
        }
    ),
]
Age = Annotated[
    float, BeforeValidator(_number_only), Field(ge=AGE_MIN, le=AGE_MAX, allow_inf_nan=False)
]
Income = Annotated[float, BeforeValidator(_number_only), Field(ge=INCOME_MIN, allow_inf_nan=False)]
PurchaseCount = Annotated[int, BeforeValidator(_number_only), Field(ge=PURCHASE_HISTORY_MIN)]
PurchaseDate = Annotated[
    date | None,
    BeforeValidator(_purchase_date),
    WithJsonSchema(
        {"type": "string", "description": "ISO 8601 date or datetime (naive means UTC)"}
    ),
]
DaysCount = Annotated[int, BeforeValidator(_number_only), Field(ge=DAYS_SINCE_PURCHASE_MIN)]
RequestId = Annotated[
    str | None,
    BeforeValidator(usable_request_id),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": REQUEST_ID_MAX_LENGTH,
            "description": "echoed in the answer; an unusable value is ignored",
        }
    ),
]
Priority = Annotated[
    str | None,
    BeforeValidator(usable_priority),
    WithJsonSchema({"enum": list(PRIORITIES), "description": "an unknown value is ignored"}),
]
ConfidenceLevel = Literal["high", "medium", "low"]


EXAMPLE_FEATURES: JsonDict = {
    "age": 42,
    "income": 55000.0,
    "purchase_history": 12,
    "last_purchase_date": "2026-06-01",
}
EXAMPLE_REQUEST: JsonDict = {"customer_id": "c-1", "features": EXAMPLE_FEATURES}


class CustomerFeatures(BaseModel):
    """The raw features of one customer, as the caller knows them; other fields are ignored.

    Recency is `last_purchase_date`, or `days_since_purchase` where the date is absent or null.
    """

    model_config = ConfigDict(extra="ignore", json_schema_extra={"example": EXAMPLE_FEATURES})

    age: Age
    income: Income
    purchase_history: PurchaseCount
    last_purchase_date: PurchaseDate = None
    days_since_purchase: DaysCount | None = Field(
        None, description="used only where last_purchase_date is absent or null"
    )

    @model_validator(mode="before")
    @classmethod
    def _recency(cls, data: Any) -> Any:
        # The date wins where it is given; the days stand in only for an absent or null date.
        if not isinstance(data, dict):
            return data
        if DAYS_COLUMN not in data:
            return data if DATE_COLUMN in data else {**data, DATE_COLUMN: ABSENT}
        if data[DAYS_COLUMN] is not None and data.get(DATE_COLUMN) is None:
            return {**data, DATE_COLUMN: FROM_DAYS}
        rest = {k: v for k, v in data.items() if k != DAYS_COLUMN}
        return rest if DATE_COLUMN in data else {**rest, DATE_COLUMN: ABSENT}


class PredictRequest(BaseModel):
    """One customer, flat or nested (see `models.policy`); unknown fields are ignored and listed
    in `ignored_fields`."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"example": EXAMPLE_REQUEST})

    # Absent: the answer carries no id (the default is not validated); explicit null: an error.
    customer_id: CustomerId = Field(None, description="who the answer is for; may be absent")
    features: CustomerFeatures
    request_id: RequestId = None
    priority: Priority = None
    explain: bool = Field(False, description="add reason codes (`reasons`) to the answer")
    _ignored: tuple[str, ...] = PrivateAttr(())

    @model_validator(mode="wrap")
    @classmethod
    def _policy(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        request = handler(as_nested(data))
        if isinstance(data, dict):
            request._ignored = ignored_fields(data)
        return request

    @property
    def ignored_fields(self) -> tuple[str, ...]:
        return self._ignored


class Reason(BaseModel):
    """One feature's contribution to a customer's churn risk (see models.explain)."""

    feature: str
    value: float = Field(description="the feature as the model sees it")
    contribution: float = Field(description="log-odds, against the training-mean customer")
    effect: Literal["raises", "lowers"]


class Prediction(BaseModel):
    customer_id: str | None
    prediction: Literal[0, 1]
    churn_probability: float
    probability: float = Field(description="probability of the predicted class")
    confidence_level: ConfidenceLevel
    model_version: str
    request_id: str
    processing_time: float
    timestamp: datetime
    features_used: list[str]
    base_log_odds: float | None = Field(None, description='with "explain": true')
    reasons: list[Reason] | None = Field(
        None, description='with "explain": true: every feature, largest contribution first'
    )


class BatchRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"example": {"requests": [EXAMPLE_REQUEST]}}
    )

    # Items are checked one by one (each a PredictRequest) so one bad item fails only itself.
    requests: Annotated[
        list[Any],
        Field(max_length=MAX_BATCH_ITEMS, description="PredictRequest objects"),
    ]
    batch_id: Annotated[str, Field(max_length=200)] | None = None
    explain: bool = Field(False, description="add reason codes to every prediction")


class ItemError(BaseModel):
    index: int
    customer_id: str | None
    error: str
    field: str
    code: str


class BatchResponse(BaseModel):
    batch_id: str
    predictions: Sequence[Prediction]  # read-only: served responses narrow the item type
    errors: list[ItemError]
    total_processed: int
    success_count: int
    error_count: int
    processing_time: float
