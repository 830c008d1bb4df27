"""The Open Inference Protocol's REST routes (KServe V2; MLServer and Triton speak it too).

A FastAPI router, included in the app service.py mounts with `@bentoml.asgi_app` (BentoML's
documented way to add routes). Inference decodes the tensors (models/tensors.py) into the
records `/predict/batch` takes and scores them with its code (`ChurnEndpoints.score_requests`):
the same validation, cache, metrics and prediction log; the edge (serving/middleware.py) applies
the same tokens and body limit. Errors are `{"error": "..."}`, as the protocol has them.
"""

import functools
from typing import Any, NoReturn

import anyio.to_thread
import bentoml
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic_core import from_json

from models import tensors, tensors_binary
from models.contract import FEATURES
from models.errors import ChurnError, InvalidTensorError, ModelUnavailableError, UnknownModelError
from models.predict import Rejected
from models.schema import BatchRequest
from models.tensors import NAME_SHOWN, PROTOCOL_MODEL_NAME, InferenceResponse
from serving.app import running_service
from serving.bentoml_fixes import error_response

ENDPOINT = "infer"  # the label of the protocol's inference in metrics and the prediction log
TAGS: list[Any] = ["Open Inference Protocol"]
router = APIRouter(tags=TAGS)


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


INPUTS = [MetadataTensor(name=tensors.FEATURES_INPUT, datatype="FP64", shape=[-1, len(FEATURES)])]
OUTPUTS = [MetadataTensor(name=n, datatype=t, shape=[-1]) for n, t in tensors.OUTPUTS.items()]
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid tensors: the message names the input"},
    404: {"description": "Not the served model or version"},
}


def served_version(service: Any) -> str:
    """The protocol's model version: the served tag's version (`churn_model:VERSION`)."""
    return str(service.predictor.tag).rpartition(":")[2]


def serving(model_name: str, version: str | None) -> Any:
    """The running service, if it serves `model_name` (at `version`, when given)."""
    service = running_service()
    if service is None:
        raise ModelUnavailableError("the service is starting")
    if model_name != PROTOCOL_MODEL_NAME:
        shown = model_name[:NAME_SHOWN]
        raise UnknownModelError(f"unknown model {shown!r} (served: {PROTOCOL_MODEL_NAME!r})")
    if version is not None and version != served_version(service):
        served, shown = served_version(service), version[:NAME_SHOWN]
        raise UnknownModelError(
            f"model {model_name!r} version {shown!r} is not served (served: {served!r})"
        )
    return service


def failed(exc: ChurnError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status_code)


@router.get("/v2", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata() -> Any:
    # The server software, as Triton answers "triton"; no protocol extension is implemented.
    return ServerMetadata(name="bentoml", version=bentoml.__version__, extensions=[])


@router.get("/v2/health/live", summary="Server live")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/v2/health/ready", summary="Server ready (503 while the model is not loaded)")
async def ready() -> JSONResponse:
    service = running_service()
    up = service is not None and service.__is_ready__()
    return JSONResponse({"ready": up}, status_code=200 if up else 503)


@router.get("/v2/models/{model_name}", response_model=ModelMetadata, responses=ERRORS)
async def model_metadata(model_name: str) -> Any:
    return await _metadata(model_name, None)


@router.get(
    "/v2/models/{model_name}/versions/{model_version}",
    response_model=ModelMetadata,
    responses=ERRORS,
)
async def version_metadata(model_name: str, model_version: str) -> Any:
    return await _metadata(model_name, model_version)


async def _metadata(model_name: str, version: str | None) -> Any:
    try:
        service = serving(model_name, version)
    except ChurnError as exc:
        return failed(exc)
    return ModelMetadata(
        name=PROTOCOL_MODEL_NAME,
        versions=[served_version(service)],
        platform="scikit-learn",
        inputs=INPUTS,
        outputs=OUTPUTS,
    )


@router.get("/v2/models/{model_name}/ready", responses=ERRORS)
async def model_ready(model_name: str) -> Any:
    return await _model_ready(model_name, None)


@router.get("/v2/models/{model_name}/versions/{model_version}/ready", responses=ERRORS)
async def version_ready(model_name: str, model_version: str) -> Any:
    return await _model_ready(model_name, model_version)


async def _model_ready(model_name: str, version: str | None) -> JSONResponse:
    try:
        service = serving(model_name, version)
    except ChurnError as exc:
        return failed(exc)
    up = bool(service.__is_ready__())
    return JSONResponse({"name": model_name, "ready": up}, status_code=200 if up else 503)


@router.post("/v2/models/{model_name}/infer", response_model=InferenceResponse, responses=ERRORS)
async def infer(model_name: str, request: Request) -> Any:
    return await _infer(request, model_name, None)


@router.post(
    "/v2/models/{model_name}/versions/{model_version}/infer",
    response_model=InferenceResponse,
    responses=ERRORS,
)
async def version_infer(model_name: str, model_version: str, request: Request) -> Any:
    return await _infer(request, model_name, model_version)


async def _infer(request: Request, model_name: str, version: str | None) -> Any:
    try:
        service = serving(model_name, version)
        header = request.headers.get(tensors_binary.HEADER)
        text, binary = tensors_binary.split_body(await request.body(), header)
        try:
            body = from_json(text)
        except ValueError:
            raise InvalidTensorError("request body", "is not valid JSON") from None
        inference = tensors.parse_request(body)
        tensors_binary.attach_binary(inference, binary)
        names = tensors.requested_outputs(inference.outputs)
        decoded = tensors.requests_from_inputs(inference.inputs)
        score = functools.partial(
            service.score_requests,
            BatchRequest(requests=decoded.records),
            ENDPOINT,
            functools.partial(refuse, decoded),
        )
        # In a worker thread, as /predict/batch: its scoring reaches Redis through the loop.
        scored = await anyio.to_thread.run_sync(score)
    except ChurnError as exc:
        return error_response(exc, ENDPOINT, request.url.path)
    answer = InferenceResponse(
        model_name=PROTOCOL_MODEL_NAME,
        model_version=served_version(service),
        id=inference.id,
        outputs=tensors.output_tensors(scored.predictions, names),
    )
    return JSONResponse(answer.model_dump(exclude_none=True))


def refuse(decoded: tensors.Decoded, rejected: list[Rejected]) -> NoReturn:
    first = rejected[0]
    raise tensors.rejection_error(
        decoded, first.index, first.first.field, first.first.message, len(rejected) - 1
    )


# Last, so that it only sees what no route above matched (a model name holding a "/", say):
# the protocol's errors are JSON, where Starlette's own 404 is text.
@router.api_route("/v2/{path:path}", methods=["GET", "POST"], include_in_schema=False)
async def not_found(path: str) -> JSONResponse:
    return JSONResponse({"error": f"no route /v2/{path}"}, status_code=404)
