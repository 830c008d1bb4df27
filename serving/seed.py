"""The routes of the two services this one replaces (docs/migration.md): the old BentoService's
prediction routes answer as aliases of ours, its health check with a 404 naming the route to use.

- `POST /batch_predict` took a bare JSON list of customers: it is `/predict/batch` with that
  list as `requests`, so its answers are `/predict/batch`'s.
- `POST /predict_dataframe` took a DataFrame as BentoML 0.x read JSON: records, or what
  `DataFrame.to_json()` writes by default (`{"column": {"index": value}}`) or with
  `orient="split"`; it is `/predict/dataframe` on the same rows.
- `POST /health_check` is not an alias: its answer is not known here, and a probe that keeps
  passing against a new service while meaning something else is worse than one that fails once
  with the fix named. Probes use `GET /readyz`; the JSON report is `GET /health`.
"""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from models.errors import RetiredRouteError

ALIASES = {"/batch_predict": "/predict/batch", "/predict_dataframe": "/predict/dataframe"}
RETIRED = {"/health_check": "GET /readyz"}
TAG = "Seed compatibility"


def batch_body(body: Any) -> Any:
    """A bare list of customers as the batch envelope; anything else as it came, for the batch
    endpoint to accept or refuse."""
    return {"requests": body} if isinstance(body, list) else body


def frame_records(body: Any) -> Any:
    """A DataFrame body in pandas' `split` or `columns` JSON layout as records, in row order;
    records (a list) or anything else as it came. A cell absent from a column reads as null, and
    a `split` row that is no list as a row without cells (each is answered, with its reason)."""
    if not isinstance(body, dict) or not body:
        return body
    columns, data = body.get("columns"), body.get("data")
    names = isinstance(columns, list) and all(isinstance(c, str) for c in columns)
    if isinstance(columns, list) and names and isinstance(data, list):
        return [dict(zip(columns, r, strict=False)) if isinstance(r, list) else {} for r in data]
    if all(isinstance(cells, dict) for cells in body.values()):
        index = list(dict.fromkeys(key for cells in body.values() for key in cells))
        return [{name: cells.get(i) for name, cells in body.items()} for i in index]
    return body


class RetiredRoute(BaseModel):
    error: str
    use: str


router = APIRouter()


@router.post(
    "/health_check",
    tags=[TAG],
    deprecated=True,
    summary="The old BentoService's health check: a 404 naming GET /readyz",
    status_code=404,
    responses={404: {"model": RetiredRoute, "description": "Use the route named in `use`"}},
)
def health_check() -> JSONResponse:
    error = RetiredRouteError("/health_check", RETIRED["/health_check"])
    return JSONResponse(error.to_body(), status_code=error.status_code)
