"""The service's configuration: one object, built once when service.py is imported.

Every variable is `CHURN_<NAME>`; the unprefixed names of earlier releases (`REDIS_URL`,
`API_TOKENS`, ...) still work and log a deprecation warning (`legacy_names`).
"""

from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from models.settings import SharedSettings

# Fields that earlier releases read under their unprefixed upper-case name.
_LEGACY_FIELDS = (
    "redis_url",
    "cache_ttl_seconds",
    "redis_timeout_seconds",
    "redis_retry_seconds",
    "api_tokens",
    "cors_origins",
    "max_body_bytes",
)


class ServiceSettings(SharedSettings):
    legacy_names: ClassVar[dict[str, str]] = {name.upper(): name for name in _LEGACY_FIELDS}

    redis_url: str | None = Field(
        None,
        description="Redis for the prediction cache, e.g. `redis://cache:6379/0`; unset: no cache",
    )
    cache_ttl_seconds: int = Field(3600, gt=0, description="how long a cached prediction lives")
    redis_timeout_seconds: float = Field(
        0.1, gt=0, description="connect and read timeout of each Redis call"
    )
    redis_retry_seconds: float = Field(
        2.0, ge=0, description="after a Redis failure, score without the cache this long"
    )
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="comma-separated bearer tokens for `/predict*` and `/models/versions`; "
        "unset: no authentication (a warning at start-up)",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated origins allowed to call from a browser; unset: no CORS",
    )
    max_body_bytes: int = Field(
        2 * 1024 * 1024, gt=0, description="larger request bodies get 413 before parsing"
    )
    workers: int = Field(
        1,
        ge=1,
        description="API worker processes; one busy worker keeps about one core busy, so give "
        "one per core the service may use (docs/performance.md)",
    )
    model_threads: int = Field(
        1,
        ge=1,
        description="threads the model's native code (OpenMP, BLAS) may use per call in each "
        "worker; a worker's parallelism comes from concurrent requests (docs/performance.md)",
    )
    prediction_log: Path | None = Field(
        None,
        description="directory of the prediction log, one JSON line per served prediction "
        "(docs/monitoring.md); unset or empty: off",
    )
    candidate_tag: str | None = Field(
        None,
        description="a second model from the store, e.g. `churn_model:<version>`, scored beside "
        "the served one (docs/rollout.md); unset: none",
    )
    shadow_sample: float = Field(
        1.0,
        ge=0,
        le=1,
        description="share of requests the candidate also scores, after the answer is built, "
        "off the request path",
    )
    canary_percent: float = Field(
        0.0,
        ge=0,
        le=100,
        description="percent of customers (stable hash of the customer id, else the request id) "
        "the candidate answers; 0: shadow only",
    )
    shadow_queue_size: int = Field(
        1000, gt=0, description="requests waiting for shadow scoring; past it they are dropped"
    )
    candidate_min_pairs: int = Field(
        500, gt=0, description="pairs compared before `/models/candidate` may say `promote`"
    )
    promote_min_agreement: float = Field(
        0.99, ge=0, le=1, description="promote: share of same decisions at least this"
    )
    promote_max_p95_delta: float = Field(
        0.05, ge=0, le=1, description="promote: p95 of the score change at most this"
    )
    promote_max_psi: float = Field(
        0.1, gt=0, description="promote: PSI between the two score distributions below this"
    )

    @field_validator("api_tokens", "cors_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("prediction_log", "candidate_tag", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def tokens(self) -> list[str]:
        return [token.get_secret_value() for token in self.api_tokens]


if __name__ == "__main__":  # the README's configuration table: python -m serving.settings
    from models.settings import markdown_table

    print(markdown_table(ServiceSettings))
