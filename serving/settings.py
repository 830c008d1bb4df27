"""The service's configuration: one object, read from the environment when the service starts.

Every variable is `CHURN_<NAME>`; the unprefixed names of earlier releases (`REDIS_URL`,
`API_TOKENS`, ...) still work and log a deprecation warning at start-up.
"""

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from models.settings import SharedSettings, legacy, warn_legacy

# Deprecated name -> current name.
LEGACY_NAMES = {
    old: f"CHURN_{old}"
    for old in (
        "REDIS_URL",
        "CACHE_TTL_SECONDS",
        "REDIS_TIMEOUT_SECONDS",
        "REDIS_RETRY_SECONDS",
        "API_TOKENS",
        "CORS_ORIGINS",
        "MAX_BODY_BYTES",
    )
}


def _split(value: Any) -> Any:
    """A comma-separated variable as a list (a list passed in code stays as it is)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ServiceSettings(SharedSettings):
    redis_url: str | None = Field(
        None,
        validation_alias=legacy("redis_url", "REDIS_URL"),
        description="Redis for the prediction cache, e.g. redis://host:6379/0 (unset: none)",
    )
    cache_ttl_seconds: int = Field(
        3600,
        gt=0,
        validation_alias=legacy("cache_ttl_seconds", "CACHE_TTL_SECONDS"),
        description="how long a cached prediction lives",
    )
    redis_timeout_seconds: float = Field(
        0.1,
        gt=0,
        validation_alias=legacy("redis_timeout_seconds", "REDIS_TIMEOUT_SECONDS"),
        description="connect and read timeout of each Redis call",
    )
    redis_retry_seconds: float = Field(
        2.0,
        ge=0,
        validation_alias=legacy("redis_retry_seconds", "REDIS_RETRY_SECONDS"),
        description="after a Redis failure, score without the cache this long",
    )
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        validation_alias=legacy("api_tokens", "API_TOKENS"),
        description="comma-separated bearer tokens; unset: no authentication (a warning)",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=legacy("cors_origins", "CORS_ORIGINS"),
        description="comma-separated allowed origins; unset: no CORS",
    )
    max_body_bytes: int = Field(
        2 * 1024 * 1024,
        gt=0,
        validation_alias=legacy("max_body_bytes", "MAX_BODY_BYTES"),
        description="larger request bodies get 413 before parsing",
    )
    workers: int = Field(
        1,
        ge=1,
        description="API worker processes; one busy worker uses about one core, so raise it to "
        "the cores the service may use (docs/performance.md)",
    )
    model_threads: int = Field(
        1,
        ge=1,
        description="threads the model's native code (OpenMP, BLAS) may use per call in each "
        "worker; 1 because a worker's parallelism comes from concurrent "
        "requests (docs/performance.md)",
    )
    prediction_log: Path | None = Field(
        None,
        description="directory of the prediction log (docs/monitoring.md); unset or empty: off",
    )

    @field_validator("api_tokens", "cors_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("prediction_log", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @classmethod
    def load(cls) -> "ServiceSettings":
        """The settings from the environment, warning once per deprecated variable used."""
        warn_legacy(dict(os.environ), LEGACY_NAMES)
        return cls()

    @property
    def tokens(self) -> list[str]:
        return [token.get_secret_value() for token in self.api_tokens]

    @property
    def origins(self) -> list[str]:
        return self.cors_origins
