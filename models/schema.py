"""The HTTP and message schema: pydantic models whose constraints come from `models.contract`."""

import math
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from models.contract import (
    AGE_MAX,
    AGE_MIN,
    CUSTOMER_ID_MAX_LENGTH,
    INCOME_MIN,
    MAX_BATCH_ITEMS,
    PURCHASE_HISTORY_MIN,
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


def _purchase_date(value: Any) -> Any:
    if value is None:
        return value
    try:
        return parse_purchase_date(value)
    except DateFieldError as exc:
        raise PydanticCustomError(exc.code, str(exc)) from None


CustomerId = Annotated[str, Field(min_length=1, max_length=CUSTOMER_ID_MAX_LENGTH, strict=True)]
Age = Annotated[
    float, BeforeValidator(_number_only), Field(ge=AGE_MIN, le=AGE_MAX, allow_inf_nan=False)
]
Income = Annotated[float, BeforeValidator(_number_only), Field(ge=INCOME_MIN, allow_inf_nan=False)]
PurchaseCount = Annotated[int, BeforeValidator(_number_only), Field(ge=PURCHASE_HISTORY_MIN)]
PurchaseDate = Annotated[
    date,
    BeforeValidator(_purchase_date),
    WithJsonSchema(
        {"type": "string", "description": "ISO 8601 date or datetime (naive means UTC)"}
    ),
]
ConfidenceLevel = Literal["high", "medium", "low"]


class CustomerFeatures(BaseModel):
    """The raw features of one customer, as the caller knows them."""

    model_config = ConfigDict(extra="forbid")

    age: Age
    income: Income
    purchase_history: PurchaseCount
    last_purchase_date: PurchaseDate


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: CustomerId
    features: CustomerFeatures
    request_id: Annotated[str, Field(max_length=200)] | None = None
    priority: Literal["low", "normal", "high"] | None = None


class Prediction(BaseModel):
    customer_id: str
    prediction: Literal[0, 1]
    churn_probability: float
    probability: float = Field(description="probability of the predicted class")
    confidence_level: ConfidenceLevel
    model_version: str
    request_id: str
    processing_time: float
    timestamp: datetime
    features_used: list[str]


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Items are checked one by one (each a PredictRequest) so one bad item fails only itself.
    requests: Annotated[
        list[Any],
        Field(max_length=MAX_BATCH_ITEMS, description="PredictRequest objects"),
    ]
    batch_id: Annotated[str, Field(max_length=200)] | None = None


class ItemError(BaseModel):
    index: int
    customer_id: str | None
    error: str
    field: str
    code: str


class BatchResponse(BaseModel):
    batch_id: str
    predictions: list[Prediction]
    errors: list[ItemError]
    total_processed: int
    success_count: int
    error_count: int
    processing_time: float
