"""The Open Inference Protocol's own OpenAPI document, fuzzed against a served bento (schemathesis).

The document is the one MLServer publishes in its wheel on PyPI (`mlserver/rest/openapi/
dataplane.json`), downloaded once with pip and cached; MLServer is not installed. Its defects
get the smallest fixes that let schemathesis generate requests (`fixed`); the operations that
are MLServer's own extensions (`infer_stream`, `generate*`) are left out. Every generated request
is sent twice: with the model name and version as generated (mostly unknown: 404s) and with the
served ones (the decoding and the contract at work). Bounded as tests/reliability/test_fuzz.py.
"""

import copy
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.venvs import CACHE_ROOT, run_logged

MLSERVER = "mlserver==1.7.1"
SPEC_MEMBER = "mlserver/rest/openapi/dataplane.json"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
EXTENSIONS = ("/infer_stream", "/generate", "/generate_stream")
# A request the document calls valid can still be refused: it cannot say that `data` must hold
# shape's product of elements, nor the contract's ranges. The document lists only 200 for the
# probes and metadata, where the protocol's text has 404 for an unknown model and 503 while not
# ready.
NOT_CHECKED = [checks.positive_data_acceptance, checks.status_code_conformance]


def dataplane() -> dict[str, Any]:
    """MLServer's dataplane.json as published, from the cache or downloaded (pip) into it."""
    cached = CACHE_ROOT / f"{MLSERVER.replace('==', '-')}-dataplane.json"
    if not cached.is_file():
        CACHE_ROOT.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE_ROOT) as tmp:
            pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
            run_logged([*pip, "--only-binary=:all:", MLSERVER, "-d", tmp], Path(tmp) / "log", 600)
            (wheel,) = Path(tmp).glob("mlserver-*.whl")
            partial = Path(tmp) / "dataplane.json"
            partial.write_bytes(zipfile.ZipFile(wheel).read(SPEC_MEMBER))
            partial.replace(cached)  # complete or absent, never half-written
    return json.loads(cached.read_text())


def fixed(spec: dict[str, Any]) -> dict[str, Any]:
    """The document with its defects fixed, each fix checked to still be needed."""
    spec = copy.deepcopy(spec)
    schemas = spec["components"]["schemas"]
    # 1. `TensorData` is `oneOf: [{"type": "array"}, {"type": "bytes"}]`, and "bytes" is no
    #    JSON Schema type (schemathesis: UnsupportedSchema). JSON data is an array; raw bytes
    #    are the binary extension, outside JSON.
    assert {"type": "bytes"} in schemas["TensorData"]["oneOf"]
    schemas["TensorData"] = {"title": "TensorData", "type": "array"}
    return spec


@pytest.fixture(scope="module")
def operations() -> list[Any]:
    schema = schemathesis.openapi.from_dict(fixed(dataplane()))
    found = [result.ok() for result in schema.get_all_operations()]
    return [op for op in found if not op.path.endswith(EXTENSIONS)]


def test_the_document_has_every_route_of_the_protocol(operations):
    assert {(op.method.upper(), op.path) for op in operations} == {
        ("GET", "/v2"),
        ("GET", "/v2/health/live"),
        ("GET", "/v2/health/ready"),
        ("GET", "/v2/models/{model_name}"),
        ("GET", "/v2/models/{model_name}/versions/{model_version}"),
        ("GET", "/v2/models/{model_name}/ready"),
        ("GET", "/v2/models/{model_name}/versions/{model_version}/ready"),
        ("POST", "/v2/models/{model_name}/infer"),
        ("POST", "/v2/models/{model_name}/versions/{model_version}/infer"),
    }


def test_the_defects_are_in_the_published_document():
    """What `fixed` works around, and what it leaves as it is (listed in docs/oip.md)."""
    spec = dataplane()
    assert {"type": "bytes"} in spec["components"]["schemas"]["TensorData"]["oneOf"]
    examples = spec["components"]["schemas"]["InferenceRequest"]["x-examples"]
    # A request example shaped like a response (outputs with data, no inputs): unused here.
    assert "inputs" not in examples["Example 2"]
    assert "data" in examples["Example 2"]["outputs"][0]


def reaches_the_app(case: Any) -> bool:
    """Starlette's Mount matches its path with `.*`, without DOTALL: a path holding a newline
    never reaches an app mounted at "/" (ours), and Starlette answers its own text 404.
    (schemathesis holds path parameters percent-encoded.)"""
    return not any("%0A" in str(v).upper() for v in (case.path_parameters or {}).values())


ROUTES = [
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/{model_name}",
    "/v2/models/{model_name}/versions/{model_version}",
    "/v2/models/{model_name}/ready",
    "/v2/models/{model_name}/versions/{model_version}/ready",
    "/v2/models/{model_name}/infer",
    "/v2/models/{model_name}/versions/{model_version}/infer",
]


@pytest.mark.parametrize("path", ROUTES)
def test_no_5xx_and_responses_match_the_document(bento, model_tag, operations, path):
    (operation,) = [op for op in operations if op.path == path]
    version = model_tag.rpartition(":")[2]

    @BOUNDED
    @given(case=operation.as_strategy().filter(reaches_the_app))
    def check(case):
        for served in (False, True):
            if served and case.path_parameters:
                case.path_parameters["model_name"] = "churn"
                if "model_version" in case.path_parameters:
                    case.path_parameters["model_version"] = version
            response = case.call(base_url=bento.url, timeout=30)
            assert response.status_code < 500, f"{case.formatted_path}: {response.text[:500]}"
            case.validate_response(response, excluded_checks=NOT_CHECKED)
            if served and path.endswith("/infer"):
                assert response.status_code in (200, 400), response.text[:500]

    check()
