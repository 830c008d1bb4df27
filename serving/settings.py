"""The service's configuration: one object, read from the environment when the service starts."""

from datetime import date
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.contract import DEFAULT_MODEL_TAG
from models.validation import today_utc


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    churn_model_tag: str = Field(DEFAULT_MODEL_TAG, description="model store tag to serve")
    churn_as_of: date | None = Field(
        None, description="fixed as-of date for recency (default: today, UTC, per request)"
    )
    redis_url: str | None = Field(
        None, description="Redis for the prediction cache, e.g. redis://host:6379/0 (unset: none)"
    )
    cache_ttl_seconds: int = Field(3600, gt=0, description="how long a cached prediction lives")
    redis_timeout_seconds: float = Field(
        0.1, gt=0, description="connect and read timeout of each Redis call"
    )
    redis_retry_seconds: float = Field(
        2.0, ge=0, description="after a Redis failure, score without the cache this long"
    )
    api_tokens: str = Field(
        "", description="comma-separated bearer tokens; unset: no authentication (a warning)"
    )
    cors_origins: str = Field("", description="comma-separated allowed origins; unset: no CORS")
    max_body_bytes: int = Field(
        2 * 1024 * 1024, gt=0, description="larger request bodies get 413 before parsing"
    )
    prediction_log: Path | None = Field(
        None,
        validation_alias="CHURN_PREDICTION_LOG",
        description="directory of the prediction log (README, Monitoring); unset or empty: off",
    )

    @field_validator("prediction_log", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def as_of(self) -> date:
        return self.churn_as_of or today_utc()

    @property
    def tokens(self) -> list[str]:
        return _split(self.api_tokens)

    @property
    def origins(self) -> list[str]:
        return _split(self.cors_origins)
