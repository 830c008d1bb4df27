"""GET routes mounted next to the BentoML APIs (whose routes are POST-only): health and versions.

The handlers find the running service instance with `bentoml.get_current_service()`.
"""

import time
from datetime import UTC, datetime
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from models.contract import MODEL_NAME
from serving.cache import PredictionCache
from serving.middleware import active_connections


async def health_report(
    model_version: str | None,
    cache: PredictionCache | None,
    started: float,
    model_created_at: datetime | None = None,
) -> dict[str, Any]:
    """`status` is "ok", "degraded" (predicting, but Redis is unreachable) or "starting".

    `last_updated` is when the served model was saved to the store, `active_connections` the
    HTTP requests this worker is answering (this one included), `redis_connected` null without
    a cache, `timestamp` now; times are ISO 8601 in UTC.
    """
    connected = None if cache is None else await cache.ping()
    cache_state = "disabled" if connected is None else "ok" if connected else "unreachable"
    loaded = model_version is not None
    status = "starting" if not loaded else "degraded" if cache_state == "unreachable" else "ok"
    return {
        "status": status,
        "model_loaded": loaded,
        "model_version": model_version,
        "uptime_seconds": round(time.monotonic() - started, 3) if loaded else 0.0,
        "cache": cache_state,
        "last_updated": model_created_at.isoformat() if model_created_at else None,
        "active_connections": active_connections(),
        "redis_connected": connected,
        "timestamp": datetime.now(UTC).isoformat(),
    }


def model_versions(served: str) -> dict[str, Any]:
    """Every version of the model in the store, newest first, with its held-out metrics."""
    stored = sorted(
        bentoml.models.list(MODEL_NAME), key=lambda m: m.info.creation_time, reverse=True
    )
    return {
        "served": served,
        "current": served,
        "versions": [
            {
                "tag": str(m.tag),
                "created_at": m.info.creation_time.isoformat(),
                "classifier": m.info.labels.get("classifier"),
                "metrics": m.info.metadata.get("metrics", {}),
                "served": str(m.tag) == served,
            }
            for m in stored
        ],
    }


def running_service() -> Any | None:
    try:
        return bentoml.get_current_service()
    except BentoMLException:
        return None


async def health(_: Request) -> JSONResponse:
    service = running_service()
    if service is None:
        report = await health_report(None, None, 0.0)
    else:
        report = await health_report(
            service.predictor.tag, service.cache, service.started, service.model_created_at
        )
    return JSONResponse(report, status_code=200 if report["model_loaded"] else 503)


def versions(_: Request) -> JSONResponse:
    # A plain function: Starlette runs it in a thread, off the event loop, as it reads the store.
    service = running_service()
    if service is None:
        return JSONResponse({"error": "service is starting"}, status_code=503)
    return JSONResponse(model_versions(service.predictor.tag))


routes = Starlette(
    routes=[
        Route("/health", health, methods=["GET"]),
        Route("/models/versions", versions, methods=["GET"]),
    ]
)
