"""The churn model's contract, defined once: names, feature order, valid ranges and thresholds.

The service, the batch script and the Kafka bridge all import these; none of them spells a
column name or a threshold as a literal of its own.
"""

from typing import Final

MODEL_NAME: Final = "churn_model"
DEFAULT_MODEL_TAG: Final = f"{MODEL_NAME}:latest"
MODEL_TAG_ENV: Final = "CHURN_MODEL_TAG"
MODEL_FILE: Final = "model.joblib"
SCALER_FILE: Final = "scaler.joblib"

ID_COLUMN: Final = "customer_id"
DATE_COLUMN: Final = "last_purchase_date"
NUMERIC_FIELDS: Final = ("age", "income", "purchase_history")
RAW_FEATURES: Final = (*NUMERIC_FIELDS, DATE_COLUMN)
INPUT_COLUMNS: Final = (ID_COLUMN, *RAW_FEATURES)
# Accepted in place of the date where the date is absent (see models.policy).
DAYS_COLUMN: Final = "days_since_purchase"
# The order the scaler and the classifier were fitted on.
FEATURES: Final = ("age", "income", "purchase_history", DAYS_COLUMN)
# Every field a record may carry that some path reads; anything else is ignored.
FEATURE_FIELDS: Final = (*RAW_FEATURES, DAYS_COLUMN)
NESTED_FIELD: Final = "features"
METADATA_FIELDS: Final = ("request_id", "priority")
REQUEST_ID_MAX_LENGTH: Final = 200
PRIORITIES: Final = ("low", "normal", "high")
EVENT_TIME_FIELD: Final = "timestamp"
# Epoch event times at or above this magnitude are milliseconds, below it seconds: 1e11 s is the
# year 5138, 1e11 ms is March 1973, so neither reading of a real event time is ambiguous.
EPOCH_MILLIS_FROM: Final = 1e11

CUSTOMER_ID_MAX_LENGTH: Final = 100
AGE_MIN: Final = 0.0
AGE_MAX: Final = 120.0
INCOME_MIN: Final = 0.0
PURCHASE_HISTORY_MIN: Final = 0
DAYS_SINCE_PURCHASE_MIN: Final = 0

DECISION_THRESHOLD: Final = 0.5
HIGH_CONFIDENCE: Final = 0.9
MEDIUM_CONFIDENCE: Final = 0.7
# Confidence bands, lowest first: `Scores.band` indexes this tuple.
CONFIDENCE_LEVELS: Final = ("low", "medium", "high")
MAX_BATCH_ITEMS: Final = 1000

PREDICTION_COLUMNS: Final = (
    ID_COLUMN,
    "prediction",
    "churn_probability",
    "probability",
    "confidence_level",
)
ERROR_COLUMN: Final = "error"
