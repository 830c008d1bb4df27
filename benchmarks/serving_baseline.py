"""The two reference servers of the serving benchmark, run with uvicorn on loopback.

- `baseline`: what our users' hand-written services do: FastAPI, a pydantic request model, a
  `def` endpoint, one `predict` and one `predict_proba` call per request, on the same stored
  model and scaler the service serves (`CHURN_MODEL_TAG`).
- `baseline-async`: the same with an `async def` endpoint (the strongest hand-written peer).
- `ceiling`: a bare Starlette endpoint that parses the same JSON and returns a constant, the
  most this machine's Python HTTP stack gives one worker.
"""

import json
from collections.abc import Callable
from datetime import UTC, date, datetime

import bentoml
import joblib
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models.contract import MODEL_FILE, SCALER_FILE
from models.settings import SharedSettings


class Features(BaseModel):
    age: float
    income: float
    purchase_history: int
    last_purchase_date: date


class Customer(BaseModel):
    customer_id: str
    features: Features
    request_id: str | None = None


class Answer(BaseModel):
    customer_id: str
    prediction: int
    churn_probability: float
    probability: float
    timestamp: datetime


def _answer() -> Callable[[Customer], Answer]:
    """One customer scored the hand-written way: the stored scaler and model, called directly."""
    # The project's own settings (CHURN_MODEL_TAG, CHURN_AS_OF), so both servers score alike.
    settings = SharedSettings()
    stored = bentoml.models.get(settings.tag())
    model = joblib.load(stored.path_of(MODEL_FILE))
    scaler = joblib.load(stored.path_of(SCALER_FILE))

    def answer(customer: Customer) -> Answer:
        f = customer.features
        as_of = settings.as_of or datetime.now(UTC).date()
        days = (as_of - f.last_purchase_date).days
        row = scaler.transform(np.array([[f.age, f.income, f.purchase_history, days]]))
        label = int(model.predict(row)[0])
        proba = model.predict_proba(row)[0]
        return Answer(
            customer_id=customer.customer_id,
            prediction=label,
            churn_probability=float(proba[1]),
            probability=float(proba[label]),
            timestamp=datetime.now(UTC),
        )

    return answer


def make_baseline() -> FastAPI:
    """A `def` endpoint: FastAPI runs it in its thread pool."""
    answer, api = _answer(), FastAPI()

    @api.post("/predict")
    def predict(customer: Customer) -> Answer:
        return answer(customer)

    return api


def make_baseline_async() -> FastAPI:
    """An `async def` endpoint: the model called on the event loop, no thread hop (the strongest
    hand-written way here for a sub-millisecond model)."""
    answer, api = _answer(), FastAPI()

    @api.post("/predict")
    async def predict(customer: Customer) -> Answer:
        return answer(customer)

    return api


async def constant(request: Request) -> Response:
    json.loads(await request.body())
    return JSONResponse({"customer_id": "c-1", "prediction": 0, "churn_probability": 0.1})


def make_ceiling() -> Starlette:
    return Starlette(routes=[Route("/predict", constant, methods=["POST"])])
