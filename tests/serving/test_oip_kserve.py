"""kserve's REST client (`InferenceRESTClient`, protocol v2), unchanged, against a served bento.

kserve 0.21.0 pins pandas<3 and psutil==5.9.8, which clash with the project, so it runs in a
virtualenv of its own (tests/venvs.py, built once and cached): the test hands a script the
customers' matrix as JSON and reads back what the client got, probabilities as their 64 bits.
JSON tensors (`binary_data=False`); the binary form is tested with tritonclient (test_oip.py).
"""

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.samples import records
from tests.conftest import AS_OF
from tests.expected import feature_matrix
from tests.serving.test_oip import batch_scores, bits
from tests.support import Process
from tests.venvs import cached_venv

KSERVE = "kserve==0.21.0"
CUSTOMERS = records(30, prefix="kserve")

CLIENT = """
import asyncio, json, sys

import httpx
import numpy as np
from kserve import InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest


def request(matrix, request_id):
    tensor = InferInput("input-0", list(matrix.shape), "FP64")
    tensor.set_data_from_numpy(matrix, binary_data=False)
    return InferRequest("churn", [tensor], request_id=request_id)


async def main(job):
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    url, headers = job["url"], job.get("headers")
    out = {
        "live": await client.is_server_live(url, headers=headers),
        "ready": await client.is_server_ready(url, headers=headers),
        "model_ready": await client.is_model_ready(url, "churn", headers=headers),
    }
    matrix = np.array(job["matrix"], np.float64)
    result = await client.infer(url, request(matrix, "k-1"), model_name="churn", headers=headers)
    out["id"] = result.id
    out["outputs"] = {
        o.name: (o.datatype, o.shape, o.as_numpy().tolist()) for o in result.outputs
    }
    probability = next(o for o in result.outputs if o.name == "churn_probability")
    out["bits"] = probability.as_numpy().astype(np.float64).view(np.uint64).tolist()
    try:
        await client.infer(url, request(matrix[:, :3], "k-2"), model_name="churn", headers=headers)
    except httpx.HTTPStatusError as exc:
        out["bad"] = [exc.response.status_code, exc.response.json()["error"]]
    await client.close()
    print(json.dumps(out))


asyncio.run(main(json.load(sys.stdin)))
"""


@pytest.fixture(scope="module")
def kserve_python() -> Path:
    try:
        return cached_venv("kserve", [KSERVE])
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"cannot build the kserve virtualenv ({KSERVE}): {exc}")


def run_client(python: Path, url: str, matrix: np.ndarray, **job: Any) -> dict[str, Any]:
    stdin = json.dumps({"url": url, "matrix": matrix.tolist(), **job})
    done = subprocess.run(
        [str(python), "-c", CLIENT], input=stdin, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_kserve_gets_the_batch_probabilities_to_the_last_bit(
    kserve_python, bento: Process, predictor
):
    matrix = feature_matrix(CUSTOMERS, AS_OF)
    got = run_client(kserve_python, bento.url, matrix)
    assert (got["live"], got["ready"], got["model_ready"]) == (True, True, True)
    assert got["id"] == "k-1"
    batch = batch_scores(bento.url, CUSTOMERS)
    expected = bits([p["churn_probability"] for p in batch])
    assert got["bits"] == expected.tolist()
    assert got["bits"] == bits(predictor.churn_probability(matrix)).tolist()
    datatype, shape, predictions = got["outputs"]["prediction"]
    assert (datatype, shape) == ("INT64", [len(CUSTOMERS)])
    assert predictions == [p["prediction"] for p in batch]
    assert got["outputs"]["confidence_level"][2] == [p["confidence_level"] for p in batch]
    status, error = got["bad"]
    assert status == 400
    assert error.startswith("input 'input-0': shape [30, 3]")
