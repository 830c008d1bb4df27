"""The service's configuration: one object, read from the environment when the service starts."""

from datetime import date

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.contract import DEFAULT_MODEL_TAG
from models.validation import today_utc


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    churn_model_tag: str = Field(DEFAULT_MODEL_TAG, description="model store tag to serve")
    churn_as_of: date | None = Field(
        None, description="fixed as-of date for recency (default: today, UTC, per request)"
    )

    def as_of(self) -> date:
        return self.churn_as_of or today_utc()
