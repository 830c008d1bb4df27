"""The served API docs: `/docs.json` and the page at `/`, answered here (an ASGI middleware)
from BentoML's own document, `Service.openapi_spec`, with what it gets wrong set right.

BentoML 1.4.40's document
- declares every 400 as `{"error": str, "detail": str}`, while the 400s carry `detail` as a list
  of `{"loc", "msg", "type"}`: generated clients then fail to read the very errors that name the
  bad field, and schemathesis flags each such answer;
- describes BentoML rather than the service (title `churn_service`, version "None", a README with
  BentoML's badges and links);
- inlines each API's body schemas without their `anyOf` alternatives (no integer `customer_id`,
  no null in answers), and knows the request bodies only as the loose JSON the API methods take.

The GET routes and their answers come from the mounted FastAPI app (serving/app.py), which
BentoML merges in. BentoML's page loads a tag manager from Google; ours is the same Swagger UI,
from the assets BentoML serves, without it.
"""

import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import bentoml
from pydantic import BaseModel
from starlette.responses import HTMLResponse, JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from models.contract import DATE_COLUMN, DAYS_COLUMN, FEATURE_FIELDS, ID_COLUMN, MAX_BATCH_ITEMS
from models.schema import EXAMPLE_FEATURES, EXAMPLE_REQUEST, BatchRequest, PredictRequest
from serving import seed

TITLE = "Customer churn prediction"
REF = "#/components/schemas/{model}"
FIELD_ERROR = {
    "type": "object",
    "title": "FieldError",
    "properties": {
        "loc": {
            "type": "array",
            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "description": 'where: ["features", "age"]; [] for the body as a whole',
        },
        "msg": {"type": "string", "description": '"field: reason", as a batch item\'s `error`'},
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
RECORDS = {
    "type": "array",
    "title": "CustomerRecords",
    "items": {"type": "object", "description": "flat columns: " + ", ".join(FEATURE_FIELDS)},
    "example": DATAFRAME_EXAMPLE,
}
BODIES: dict[str, type[BaseModel] | dict[str, Any]] = {
    "/predict": PredictRequest,
    "/predict/batch": BatchRequest,
    "/predict/dataframe": RECORDS,
}
TAGS = {
    "Service APIs": "Churn predictions for one customer, a batch, or a table of customers.",
    "Infrastructure": "Health, model versions, probes and Prometheus metrics.",
    seed.TAG: "Deprecated routes of the services this one replaces (docs/migration.md).",
}
COLUMNS = ", ".join(f"`{name}`" for name in (ID_COLUMN, *FEATURE_FIELDS))
AUTH_ON = (
    "`Authorization: Bearer <token>` on `/predict*` and `/models/versions` (401 without a "
    "token, 403 for a wrong one). Probes, `/health`, `/metrics` and these docs are open."
)
AUTH_OFF = (
    "none on this deployment (`CHURN_API_TOKENS` is not set), so every endpoint is open. With "
    "tokens, `/predict*` and `/models/versions` need `Authorization: Bearer <token>`."
)


def description(model_version: str | None, auth: bool) -> str:
    """The page's introduction (Markdown); it opens with the title, which the page shows in
    place of `info.title`."""
    model = f"`{model_version}`" if model_version else "(starting)"
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


def package_version() -> str | None:
    try:
        return version("churn-serving")
    except PackageNotFoundError:  # a bento installs the dependencies, not this project
        return None


def patch_spec(spec: dict[str, Any], model_version: str | None, auth: bool) -> dict[str, Any]:
    """BentoML's document (`Service.openapi_spec.asdict()`) made to describe this service.

    The bearer tokens are described, not declared as a security scheme: with one declared,
    schema-driven clients (schemathesis) send made-up tokens on every generated request."""
    spec = json.loads(json.dumps(spec))  # a copy, whatever BentoML shares between calls
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    if "detail" in schemas.get("InvalidArgument", {}).get("properties", {}):
        schemas["InvalidArgument"]["properties"]["detail"] = DETAIL
    spec["info"] = {
        "title": TITLE,
        "version": package_version() or model_version or "unknown",
        "description": description(model_version, auth),
    }
    spec["tags"] = [{"name": name, "description": text} for name, text in TAGS.items()]
    for path, body in BODIES.items():
        operation = spec.get("paths", {}).get(path, {}).get("post")
        if operation is not None:
            media = operation["requestBody"]["content"]["application/json"]
            media["schema"] = _component(schemas, body)
            _answer_as_component(operation, schemas)
    # BentoML has no flag to keep an API out of the document: the aliases are marked here.
    for alias, ours in seed.ALIASES.items():
        operation = spec.get("paths", {}).get(alias, {}).get("post")
        if operation is not None:
            operation.update(
                tags=[seed.TAG],
                deprecated=True,
                description=f"The old BentoService's route: answers as `POST {ours}`.",
            )
    return spec


def _component(schemas: dict[str, Any], body: type[BaseModel] | dict[str, Any]) -> dict[str, Any]:
    """A reference to `body`'s schema, added to the components with the models it refers to."""
    if isinstance(body, dict):
        schemas[body["title"]] = body
        return {"$ref": REF.format(model=body["title"])}
    schema = body.model_json_schema(ref_template=REF)
    schemas.update(schema.pop("$defs", {}))
    schemas[body.__name__] = schema
    return {"$ref": REF.format(model=body.__name__)}


def _answer_as_component(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    """BentoML writes each answer's schema twice: as a component, faithful to the pydantic
    model, and inline, without its `anyOf` alternatives; point the answer at the component."""
    for media in operation.get("responses", {}).get("200", {}).get("content", {}).values():
        title = media.get("schema", {}).get("title")
        if title in schemas and title.endswith("IODescriptor"):
            media["schema"] = {"$ref": REF.format(model=title)}


PAGE = f"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>{TITLE}</title>
    <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="./static_content/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script>
      window.onload = () => {{
        window.ui = SwaggerUIBundle({{
          url: "./docs.json", dom_id: "#swagger-ui", deepLinking: true,
          presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
          layout: "StandaloneLayout",
        }});
      }};
    </script>
  </body>
</html>
"""


class DocsRoutes:
    """Answers `GET /docs.json` and `GET /` for `service` (a `bentoml.Service`); every other
    request passes through. The document is built once per worker: what it says (the model,
    whether tokens are needed) is fixed when the service starts."""

    def __init__(self, app: ASGIApp, service: Any) -> None:
        self.app = app
        self.service = service
        self._document: dict[str, Any] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or scope["method"] != "GET" or path not in ("/", "/docs.json"):
            await self.app(scope, receive, send)
            return
        if path == "/":
            await HTMLResponse(PAGE)(scope, receive, send)
            return
        await JSONResponse(self.document())(scope, receive, send)

    def document(self) -> dict[str, Any]:
        if self._document is None:
            instance = bentoml.get_current_service()
            auth = bool(instance.settings.tokens)
            spec = self.service.openapi_spec.asdict()
            self._document = patch_spec(spec, instance.predictor.tag, auth)
        return self._document
