"""The settings every entry point shares, read from the environment in this one place.

`CHURN_MODEL_TAG` and `CHURN_AS_OF` mean the same to the service, the batch script and the Kafka
bridge. Each entry point builds its settings object once, where it starts, and hands it down:
the service's `ServiceSettings` (serving/settings.py), the bridge's `StreamSettings`
(streaming/settings.py), the batch script `SharedSettings` as it is.

Deprecated variable names are declared per class (`legacy_names`) and read by one settings
source: a value under an old name counts when the current name is unset, with one warning.
"""

import logging
import os
from datetime import date
from enum import Enum
from typing import Any, ClassVar

from pydantic import Field
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from models.contract import DEFAULT_MODEL_TAG, MODEL_TAG_ENV
from models.validation import today_utc

logger = logging.getLogger(__name__)

PREFIX = "CHURN_"
AS_OF_ENV = f"{PREFIX}AS_OF"
assert f"{PREFIX}MODEL_TAG" == MODEL_TAG_ENV


class SharedSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, extra="ignore", populate_by_name=True, protected_namespaces=()
    )
    # Deprecated environment variable -> the field it sets (see `LegacyNames`).
    legacy_names: ClassVar[dict[str, str]] = {}

    model_tag: str | None = Field(
        None,
        description="model store tag to serve (pinned by `bentoml build`) or score with; "
        f"unset: `{DEFAULT_MODEL_TAG}`",
    )
    as_of: date | None = Field(
        None,
        description="fixed as-of date for `days_since_purchase`, e.g. for replays; unset: today "
        "(UTC)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # After the current names, before the defaults: an old name never beats a new one.
        legacy = LegacyNames(settings_cls, cls.legacy_names, env_settings)
        return init_settings, env_settings, legacy, dotenv_settings, file_secret_settings

    def tag(self) -> str:
        return self.model_tag or DEFAULT_MODEL_TAG

    def as_of_or_today(self) -> date:
        return self.as_of or today_utc()


class LegacyNames(PydanticBaseSettingsSource):
    """Values under deprecated variable names, for fields the current names leave unset; one
    warning per old name used."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        names: dict[str, str],
        current: PydanticBaseSettingsSource,
    ) -> None:
        super().__init__(settings_cls)
        self.names = names
        self.current = current

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # `__call__` reads every old name at once

    def __call__(self) -> dict[str, Any]:
        given = self.current()
        values: dict[str, Any] = {}
        for old, field in self.names.items():
            if old in os.environ and field not in given:
                logger.warning("%s is deprecated: set %s%s instead", old, PREFIX, field.upper())
                values[field] = os.environ[old]
        return values


def markdown_table(settings: type[SharedSettings]) -> str:
    """The Markdown table of `settings`' environment variables: name, default, meaning (the
    fields' `description`), as the README shows them (`python -m serving.settings`)."""
    prefix = settings.model_config.get("env_prefix", PREFIX)
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, Enum):
            default = default.value
        shown = "unset" if default in (None, [], "") else f"`{default}`"
        rows.append(f"| `{prefix}{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows)
