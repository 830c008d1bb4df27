"""GET routes mounted next to the BentoML APIs (whose routes are POST-only): health and versions.

A FastAPI app, BentoML's documented way to add routes (`@bentoml.asgi_app`): BentoML merges its
OpenAPI paths and response models into the service's document. The handlers find the running
service instance with `bentoml.get_current_service()`.
"""

import time
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal

import bentoml
from bentoml.exceptions import BentoMLException
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from models.contract import MODEL_NAME
from serving import seed
from serving.cache import PredictionCache
from serving.middleware import active_connections


class Health(BaseModel):
    status: Literal["healthy", "degraded", "starting"] = Field(
        description="healthy: the FastAPI service's word, which its clients compare "
        "(docs/migration.md); degraded: predictions are served, but Redis does not answer"
    )
    model_loaded: bool
    model_version: str | None = Field(description="the served tag")
    uptime_seconds: float = Field(ge=0)
    cache: Literal["disabled", "ok", "unreachable"]
    last_updated: datetime | None = Field(
        description="when the served model was saved to the model store"
    )
    active_connections: int = Field(
        ge=0, description="HTTP requests in flight on the worker that answered, this one included"
    )
    redis_connected: bool | None = Field(description="null when the cache is off")
    timestamp: datetime = Field(description="now (UTC)")


class ModelVersion(BaseModel):
    tag: str
    created_at: datetime
    classifier: str | None
    metrics: dict[str, float] = Field(
        description="held-out metrics: roc_auc, log_loss, brier_score, ..."
    )
    served: bool


class ModelVersions(BaseModel):
    served: str = Field(description="the served tag")
    current: str = Field(description="the served tag (same as `served`)")
    versions: list[ModelVersion] = Field(description="every version in the store, newest first")


class ServiceError(BaseModel):
    error: str


async def health_report(
    model_version: str | None,
    cache: PredictionCache | None,
    started: float,
    model_created_at: datetime | None = None,
) -> Health:
    """`status` is "healthy", "degraded" (predicting, but Redis is unreachable) or "starting"."""
    connected = None if cache is None else await cache.ping()
    cache_state = "disabled" if connected is None else "ok" if connected else "unreachable"
    loaded = model_version is not None
    status = "starting" if not loaded else "degraded" if cache_state == "unreachable" else "healthy"
    return Health(
        status=status,
        model_loaded=loaded,
        model_version=model_version,
        uptime_seconds=round(time.monotonic() - started, 3) if loaded else 0.0,
        cache=cache_state,
        last_updated=model_created_at,
        active_connections=active_connections(),
        redis_connected=connected,
        timestamp=datetime.now(UTC),
    )


def model_versions(served: str) -> ModelVersions:
    """Every version of the model in the store, newest first, with its held-out metrics."""
    stored = sorted(
        bentoml.models.list(MODEL_NAME), key=lambda m: m.info.creation_time, reverse=True
    )
    return ModelVersions(
        served=served,
        current=served,
        versions=[
            ModelVersion(
                tag=str(m.tag),
                created_at=m.info.creation_time,
                classifier=m.info.labels.get("classifier"),
                metrics=m.info.metadata.get("metrics", {}),
                served=str(m.tag) == served,
            )
            for m in stored
        ],
    )


def running_service() -> Any | None:
    try:
        return bentoml.get_current_service()
    except BentoMLException:
        return None


routes = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
routes.include_router(seed.router)  # the replaced services' retired routes
INFRASTRUCTURE: list[str | Enum] = ["Infrastructure"]


@routes.get(
    "/health",
    response_model=Health,
    tags=INFRASTRUCTURE,
    summary="Service health",
    description="Whether the model is loaded and the cache answers, the served model and when "
    "it was saved, and the requests in flight. 503 while starting.",
    responses={503: {"model": Health, "description": "Starting: the model is not loaded yet"}},
)
async def health() -> JSONResponse:
    service = running_service()
    if service is None:
        report = await health_report(None, None, 0.0)
    else:
        report = await health_report(
            service.predictor.tag, service.cache, service.started, service.model_created_at
        )
    status = 200 if report.model_loaded else 503
    return JSONResponse(report.model_dump(mode="json"), status_code=status)


@routes.get(
    "/models/versions",
    response_model=ModelVersions,
    tags=INFRASTRUCTURE,
    summary="Model versions in the store",
    description="Every version of the model in the store, newest first, with creation time, "
    "classifier and held-out metrics; `current` is the served tag. Roll-back: docs/api.md.",
    responses={503: {"model": ServiceError, "description": "The service is starting"}},
)
def versions() -> Any:
    # A plain function: FastAPI runs it in a thread, off the event loop, as it reads the store.
    service = running_service()
    if service is None:
        return JSONResponse({"error": "service is starting"}, status_code=503)
    return model_versions(service.predictor.tag)
