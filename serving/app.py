"""GET routes mounted next to the BentoML APIs (whose routes are POST-only): health and versions.

The handlers find the running service instance with `bentoml.get_current_service()`.
"""

import time
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from models.contract import MODEL_NAME
from serving.cache import PredictionCache


async def health_report(
    model_version: str | None, cache: PredictionCache | None, started: float
) -> dict[str, Any]:
    """`status` is "ok", "degraded" (predicting, but Redis is unreachable) or "starting"."""
    cache_state = "disabled" if cache is None else "ok" if await cache.ping() else "unreachable"
    loaded = model_version is not None
    status = "starting" if not loaded else "degraded" if cache_state == "unreachable" else "ok"
    return {
        "status": status,
        "model_loaded": loaded,
        "model_version": model_version,
        "uptime_seconds": round(time.monotonic() - started, 3) if loaded else 0.0,
        "cache": cache_state,
    }


def model_versions(served: str) -> dict[str, Any]:
    """Every version of the model in the store, newest first, with its held-out metrics."""
    stored = sorted(
        bentoml.models.list(MODEL_NAME), key=lambda m: m.info.creation_time, reverse=True
    )
    return {
        "served": served,
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
        report = await health_report(service.predictor.tag, service.cache, service.started)
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
