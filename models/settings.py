"""The settings every entry point shares, read from the environment in this one place.

`CHURN_MODEL_TAG` and `CHURN_AS_OF` mean the same to the service, the batch script and the Kafka
bridge; each entry point's own settings class (serving/settings.py, streaming/settings.py)
extends `SharedSettings`, and the batch script uses it as is.
"""

import logging
from datetime import date

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.contract import DEFAULT_MODEL_TAG, MODEL_TAG_ENV
from models.validation import today_utc

logger = logging.getLogger(__name__)

PREFIX = "CHURN_"
AS_OF_ENV = f"{PREFIX}AS_OF"


class SharedSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, extra="ignore", populate_by_name=True, protected_namespaces=()
    )

    model_tag: str | None = Field(
        None,
        description=f"model store tag (default: {DEFAULT_MODEL_TAG})",
        validation_alias=AliasChoices(MODEL_TAG_ENV, "model_tag"),
    )
    as_of: date | None = Field(
        None,
        description="fixed as-of date for recency, e.g. for replays (default: today, UTC)",
        validation_alias=AliasChoices(AS_OF_ENV, "as_of"),
    )

    def tag(self) -> str:
        return self.model_tag or DEFAULT_MODEL_TAG

    def as_of_or_today(self) -> date:
        return self.as_of or today_utc()


def legacy(name: str, old: str) -> AliasChoices:
    """`CHURN_<NAME>`, or its deprecated unprefixed spelling (see `warn_legacy`)."""
    return AliasChoices(f"{PREFIX}{name.upper()}", old, name)


def warn_legacy(environ: dict[str, str], names: dict[str, str]) -> None:
    """One warning per deprecated variable still set (old name -> new name)."""
    for old, new in names.items():
        if old in environ and new not in environ:
            logger.warning("%s is deprecated: set %s instead", old, new)
