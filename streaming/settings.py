"""The bridge's one settings object: flags over `CHURN_STREAM_*` variables over defaults.

Every field is a flag (`max_batch` -> `--max-batch`) and an environment variable
(`CHURN_STREAM_MAX_BATCH`); the as-of date and the model tag also read the service's own
`CHURN_AS_OF` and `CHURN_MODEL_TAG`, so a bridge next to the bento sees the same configuration.
"""

import argparse
from collections.abc import Sequence
from datetime import date
from typing import Literal

import kafka.codec
from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from models.contract import MAX_BATCH_ITEMS, MODEL_TAG_ENV
from models.settings import AS_OF_ENV, SharedSettings

ENV_PREFIX = "CHURN_STREAM_"
# The bridge's exit statuses (`churn-stream --help` lists them).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3
EXIT_STATUS_HELP = (
    f"exit status: {EXIT_OK} stopped by SIGTERM/SIGINT; {EXIT_FAILED} an unexpected error "
    f"(e.g. the broker refused a result); {EXIT_USAGE} bad flags or settings; {EXIT_REFUSED} the "
    "service refused the bridge's requests (401/403: check --service-token; any other 4xx but "
    "408/429), logged once, nothing of the batches in hand committed. A service that is down, "
    "times out or answers 5xx/429 is retried, never an exit."
)


Compression = Literal["auto", "none", "gzip", "snappy", "lz4", "zstd"]


class StreamSettings(SharedSettings):
    """The bridge's own settings over the shared ones (`model_tag` and `as_of` also answer to
    `CHURN_STREAM_MODEL_TAG` and `CHURN_STREAM_AS_OF`)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", populate_by_name=True, protected_namespaces=()
    )

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka brokers, comma-separated")
    input_topic: str = Field("customer-events", description="topic of customer events (JSON)")
    output_topic: str = Field("predictions", description="topic the predictions go to")
    error_topic: str = Field("prediction-errors", description="dead-letter topic")
    group: str = Field("churn-stream-predictor", description="consumer group id")
    service_url: str = Field("http://127.0.0.1:3000", description="the running churn bento")
    service_token: str | None = Field(
        None, description="bearer token when the bento requires one (its CHURN_API_TOKENS)"
    )
    in_process: bool = Field(
        False, description="load the model from the BentoML store and score in this process"
    )
    explain: bool = Field(
        False, description="add reason codes (base_log_odds, reasons) to each result"
    )
    model_tag: str | None = Field(
        None,
        description=f"model store tag for --in-process (default: ${MODEL_TAG_ENV} or latest)",
        validation_alias=AliasChoices(f"{ENV_PREFIX}MODEL_TAG", MODEL_TAG_ENV),
    )
    as_of: date | None = Field(
        None,
        description="as-of date for validation and recency (default: today, UTC)",
        validation_alias=AliasChoices(f"{ENV_PREFIX}AS_OF", AS_OF_ENV),
    )
    max_batch: int = Field(
        500, ge=1, le=MAX_BATCH_ITEMS, description="most messages scored in one call"
    )
    max_wait_ms: int = Field(
        20, ge=0, description="longest wait for a batch to fill once it has a message"
    )
    metrics_port: int = Field(9400, ge=0, le=65535, description="Prometheus port (0: none)")
    health_port: int = Field(
        9401, ge=0, le=65535, description="port of the /livez and /readyz probes (0: none)"
    )
    live_timeout_s: float = Field(
        180.0,
        gt=0,
        description="/livez fails once the loop has not polled for this long (above the 30 s "
        "service timeout plus the producer's 2-minute delivery timeout, its longest waits)",
    )
    partitions: int = Field(3, ge=1, description="partitions of topics this bridge creates")
    replication_factor: int = Field(1, ge=1, description="replication of topics it creates")
    session_timeout_ms: int = Field(10_000, ge=1000, description="consumer group session timeout")
    heartbeat_interval_ms: int = Field(2_000, ge=100, description="consumer heartbeat interval")
    service_timeout_s: float = Field(30.0, gt=0, description="timeout of one scoring call")
    retry_backoff_ms: int = Field(200, ge=1, description="first wait after a failed call")
    retry_max_backoff_ms: int = Field(5_000, ge=1, description="longest wait between retries")
    stats_interval_s: float = Field(10.0, gt=0, description="seconds between throughput logs")
    # gzip by default: kafka-python reads it with the standard library, so does every other
    # client; lz4 (faster, and what `auto` picks when installed) crashes a kafka-python consumer
    # that lacks the lz4 package, so it is an opt-in for topics whose every consumer has it.
    compression: Compression = Field(
        "gzip",
        description="codec of the result and dead-letter batches (every client reads gzip); "
        "lz4 and the others when asked and installed; auto: lz4 when installed (the `fast` "
        "extra), else gzip, only where every consumer of the topics has lz4",
    )
    no_idempotence: bool = Field(
        False,
        description="a producer without idempotence, for a broker that mishandles it (tansu "
        "0.6 on S3 loses acknowledged batches retried across its restart); a retried batch may "
        "then be written twice, its order kept by one request in flight",
    )
    max_error_payload_bytes: int = Field(
        256 * 1024, ge=0, description="longest original message copied into a dead letter"
    )
    log_level: str = Field("INFO", description="logging level")

    @field_validator("compression")
    @classmethod
    def _codec_installed(cls, codec: str) -> str:
        if codec == "auto":
            return "lz4" if kafka.codec.has_lz4() else "gzip"
        if codec != "none" and not getattr(kafka.codec, f"has_{codec}")():
            raise ValueError(f"{codec} needs its Python library (lz4: the `fast` extra)")
        return codec


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from the settings fields, so a flag and its variable cannot drift apart."""
    parser = argparse.ArgumentParser(
        prog="churn-stream",
        description="Score customer events from Kafka with the churn model, at least once.",
        epilog=EXIT_STATUS_HELP,
    )
    for name, field in StreamSettings.model_fields.items():
        env = f"{ENV_PREFIX}{name.upper()}"
        help_text = f"{field.description} [env {env}; default {field.default}]"
        if field.annotation is bool:
            parser.add_argument(_flag(name), action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(_flag(name), default=None, metavar=name.upper(), help=help_text)
    return parser


def load_settings(argv: Sequence[str] | None = None) -> StreamSettings:
    """Flags given on the command line win over the environment, which wins over defaults."""
    parser = build_parser()
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    try:
        return StreamSettings(**given)
    except ValidationError as exc:
        parser.error(str(exc))  # exits with status 2 and the usage line
