"""Make the served API docs (`/docs.json` and the page at `/`) describe this service.

BentoML 1.4.40 generates a document that
- declares every 400 as `{"error": str, "detail": str}`, but its own pydantic validation (and
  our `InvalidInputError`) answer with `detail` as a list of `{"loc", "msg", "type"}` objects:
  clients generated from the document then fail to read the very errors that name the bad
  field, and schemathesis flags every such response;
- describes BentoML rather than the service (title `churn_service`, version "None", a README
  with BentoML's badges and links), and knows neither the GET routes of the mounted app
  (`/health`, `/models/versions`) nor the bearer tokens;
- inlines each API's body schemas without their `anyOf` alternatives (no integer
  `customer_id`, no null in answers);
- gives the DataFrame endpoint no example, so its "Try it out" form starts empty.

This middleware rewrites the document (`patch_spec`) and the page's `<title>`; every other
response passes through untouched. The examples of /predict and /predict/batch come from the
pydantic models (`models.schema`), which BentoML copies into the document.
"""

import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.contract import DATE_COLUMN, DAYS_COLUMN, FEATURE_FIELDS, ID_COLUMN, MAX_BATCH_ITEMS
from models.schema import EXAMPLE_FEATURES, EXAMPLE_REQUEST

DOCS_PATH = "/docs.json"
PAGE_PATH = "/"
PACKAGE = "churn-serving"
TITLE = "Customer churn prediction"
FIELD_ERROR = {
    "type": "object",
    "title": "FieldError",
    "properties": {
        "loc": {
            "type": "array",
            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "description": 'where: ["features", "age"]; [] for the body as a whole',
        },
        "msg": {
            "type": "string",
            "description": '"field: reason"; on /predict worded as a batch item\'s `error`',
        },
        "type": {
            "type": "string",
            "description": "a code: missing, null, wrong_type, not_finite, not_integer, "
            "out_of_range, bad_date, future_date, not_json",
        },
    },
    "required": ["loc", "msg", "type"],
}
DETAIL = {
    "title": "Error Detail",
    "anyOf": [{"type": "string"}, {"type": "array", "items": FIELD_ERROR}],
}

# The DataFrame endpoint takes JSON records: the canonical example, flat, and a row that gives
# `days_since_purchase` instead of the date.
DATAFRAME_EXAMPLE = [
    {ID_COLUMN: EXAMPLE_REQUEST[ID_COLUMN], **EXAMPLE_FEATURES},
    {ID_COLUMN: "c-2", "age": 29, "income": 31000.0, "purchase_history": 2, DAYS_COLUMN: 140},
]

COLUMNS = ", ".join(f"`{name}`" for name in (ID_COLUMN, *FEATURE_FIELDS))
AUTH_ON = (
    "`Authorization: Bearer <token>` on `/predict*` and `/models/versions` (401 without a "
    "token, 403 for a wrong one). Probes, `/health`, `/metrics` and these docs are open."
)
AUTH_OFF = (
    "none on this deployment (`API_TOKENS` is not set), so every endpoint is open. With "
    "tokens, `/predict*` and `/models/versions` need `Authorization: Bearer <token>`."
)


def description(model_version: str | None, auth: bool) -> str:
    """The page's introduction (Markdown)."""
    model = f"`{model_version}`" if model_version else "(starting)"
    # BentoML's page hides `info.title` (its CSS expects the description to open with the
    # heading), so the description carries the title as its own first line.
    return f"""\
# {TITLE}

Predicts whether a customer will churn, with P(churn) and a confidence level, from four facts:
`age`, `income`, `purchase_history` (purchases so far) and recency (`{DATE_COLUMN}`, or
`{DAYS_COLUMN}` where the date is absent). One packaged scikit-learn model, served model
**{model}**; the batch script and the Kafka bridge give the same customer the same answer, to
the last bit.

**Endpoints**
- `POST /predict`: one customer, `{{"customer_id": ..., "features": {{...}}}}`.
- `POST /predict/batch`: up to {MAX_BATCH_ITEMS} customers in `requests`; invalid items are
  listed in `errors` (index, field, reason), the others are scored.
- `POST /predict/dataframe`: JSON records with the flat columns {COLUMNS}; one output row per
  input row, with the reason in `error` for the invalid ones.
- `GET /health`: status, the served model and its date, the cache, requests in flight.
  `GET /models/versions`: the versions in the model store, with held-out metrics.
- `/livez`, `/readyz`: probes; `/metrics`: Prometheus metrics.

**Input**: unknown fields are ignored (and counted in `churn_ignored_fields_total`);
`customer_id` is text or an integer, and may be absent. Bad input is a 400 whose `detail` names
each failing field. The examples work as they are: "Try it out", then "Execute".

**Authentication**: {AUTH_ON if auth else AUTH_OFF}
"""


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, dict[str, Any]] = {
    "Health": {
        "type": "object",
        "title": "Health",
        "properties": {
            "status": {
                "type": "string",
                "enum": ["ok", "degraded", "starting"],
                "description": "degraded: predictions are served, but Redis does not answer",
            },
            "model_loaded": {"type": "boolean"},
            "model_version": _nullable({"type": "string", "description": "the served tag"}),
            "uptime_seconds": {"type": "number", "minimum": 0},
            "cache": {"type": "string", "enum": ["disabled", "ok", "unreachable"]},
            "last_updated": _nullable(
                {
                    "type": "string",
                    "format": "date-time",
                    "description": "when the served model was saved to the model store",
                }
            ),
            "active_connections": {
                "type": "integer",
                "minimum": 0,
                "description": "HTTP requests in flight on the worker that answered, this one "
                "included",
            },
            "redis_connected": _nullable(
                {"type": "boolean", "description": "null when the cache is off (no REDIS_URL)"}
            ),
            "timestamp": {"type": "string", "format": "date-time", "description": "now (UTC)"},
        },
    },
    "ModelVersion": {
        "type": "object",
        "title": "ModelVersion",
        "properties": {
            "tag": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "classifier": _nullable({"type": "string"}),
            "metrics": {
                "type": "object",
                "description": "held-out metrics: roc_auc, log_loss, brier_score, ...",
                "additionalProperties": {"type": "number"},
            },
            "served": {"type": "boolean"},
        },
    },
    "ModelVersions": {
        "type": "object",
        "title": "ModelVersions",
        "properties": {
            "served": {"type": "string", "description": "the served tag"},
            "current": {"type": "string", "description": "the served tag (same as `served`)"},
            "versions": {
                "type": "array",
                "items": _ref("ModelVersion"),
                "description": "every version in the model store, newest first",
            },
        },
    },
    "ServiceError": {
        "type": "object",
        "title": "ServiceError",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    },
}
for _schema in SCHEMAS.values():
    if _schema["title"] != "ServiceError":
        _schema["required"] = list(_schema["properties"])


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


GET_PATHS: dict[str, dict[str, Any]] = {
    "/health": {
        "get": {
            "tags": ["Infrastructure"],
            "summary": "Service health",
            "description": "Whether the model is loaded and the cache answers, the served "
            "model and when it was saved, and the requests in flight. 503 while starting.",
            "operationId": "churn_service__health",
            "responses": {
                "200": _json("Serving", _ref("Health")),
                "503": _json("Starting: the model is not loaded yet", _ref("Health")),
            },
        }
    },
    "/models/versions": {
        "get": {
            "tags": ["Infrastructure"],
            "summary": "Model versions in the store",
            "description": "Every version of the model in the store, newest first, with "
            "creation time, classifier and held-out metrics; `current` is the served tag. To "
            "roll back, restart with `CHURN_MODEL_TAG` set to an older tag.",
            "operationId": "churn_service__model_versions",
            "responses": {
                "200": _json("The stored versions", _ref("ModelVersions")),
                "503": _json("The service is starting", _ref("ServiceError")),
            },
        }
    },
}
TAGS = {
    "Service APIs": "Churn predictions for one customer, a batch, or a table of customers.",
    "Infrastructure": "Health, model versions, probes and Prometheus metrics.",
}


def package_version() -> str | None:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # a bento installs the dependencies, not this project
        return None


PACKAGE_VERSION = package_version()


def patch_spec(
    spec: dict[str, Any], model_version: str | None = None, auth: bool = False
) -> dict[str, Any]:
    """The document describing this service: `InvalidArgument.detail` widened to what 400
    bodies carry; our title, description (saying whether tokens are needed: `auth`) and
    version (the project's, else the served model tag); the GET routes; the DataFrame
    example; and the APIs' body schemas as faithful as their components.

    The bearer tokens are described, not declared as a security scheme: with one declared,
    schema-driven clients (schemathesis) send made-up tokens on every generated request."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    error = schemas.get("InvalidArgument")
    if error and "detail" in error.get("properties", {}):
        error["properties"]["detail"] = DETAIL
    spec["info"] = {
        "title": TITLE,
        "version": PACKAGE_VERSION or model_version or "unknown",
        "description": description(model_version, auth),
    }
    spec["tags"] = [{"name": name, "description": text} for name, text in TAGS.items()]
    schemas.update(json.loads(json.dumps(SCHEMAS)))
    paths = spec.setdefault("paths", {})
    paths.update(json.loads(json.dumps(GET_PATHS)))
    frame = paths.get("/predict/dataframe", {}).get("post", {})
    body = frame.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        body["schema"] = {**body.get("schema", {}), "example": DATAFRAME_EXAMPLE}
    for item in paths.values():
        _use_components(item.get("post", {}), schemas)
    return spec


def _use_components(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Point an API's inline request and 200 schemas at their components.

    BentoML writes each API's body schema twice: as a component, faithful to the pydantic
    model, and inline, where it drops every `anyOf` branch but the first (an integer
    `customer_id`, `null` for an absent one). The inline copy is what the page and
    client generators read, so it is replaced by a reference to the component.
    """
    bodies = [operation.get("requestBody", {}), operation.get("responses", {}).get("200", {})]
    for body in bodies:
        for media in body.get("content", {}).values():
            title = media.get("schema", {}).get("title")
            if title in schemas and title.endswith("IODescriptor"):
                media["schema"] = {"$ref": f"#/components/schemas/{title}"}


def patch_page(html: str) -> str:
    return html.replace("<title>BentoML Prediction Service</title>", f"<title>{TITLE}</title>")


def _served() -> tuple[str | None, bool]:
    """The running service's model tag and whether it checks tokens."""
    try:
        service = bentoml.get_current_service()
    except BentoMLException:
        return None, False
    return service.predictor.tag, bool(service.settings.tokens)


def _rewrite(path: str, body: bytes) -> bytes:
    if path == DOCS_PATH:
        model_version, auth = _served()
        return json.dumps(patch_spec(json.loads(body), model_version, auth)).encode()
    return patch_page(body.decode()).encode()


class OpenAPIFix:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or scope["path"] not in (DOCS_PATH, PAGE_PATH)
        ):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                # Not a body we can rewrite (e.g. a file sent by path): pass it on as it is.
                if start is not None:
                    await send(start)
                    start = None
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            encoded = any(k.lower() == b"content-encoding" for k, _ in start["headers"])
            if start["status"] == 200 and not encoded:
                body = _rewrite(path, body)
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)
