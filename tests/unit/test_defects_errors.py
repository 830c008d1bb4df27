"""Every deliberate error is a `ChurnError` with a true status and public message."""

import json

import pytest

from batch.output import OutputExistsError, check_target
from batch.reader import InputError, resolve_inputs
from models.errors import ChurnError, IncompatibleModelError
from serving.http import error_response


def test_incompatible_model_answers_422_with_its_own_public_message():
    exc = IncompatibleModelError("model expects 3 features, not the 4 of ...")
    response = error_response(exc)
    assert response.status_code == 422
    body = json.loads(response.body)
    assert body == {"error": "model incompatible with the scoring contract"}
    # The private detail stays out of the public body.
    assert "3 features" not in response.body.decode()


def test_batch_input_errors_are_churn_errors(tmp_path):
    with pytest.raises(InputError) as info:
        resolve_inputs([str(tmp_path / "missing.parquet")])
    exc = info.value
    assert isinstance(exc, ChurnError)
    assert "missing.parquet: no such file" in str(exc)
    assert exc.status_code == 400
    assert exc.to_body() == {"error": "batch input cannot be read"}


def test_existing_output_errors_are_churn_errors(tmp_path):
    with pytest.raises(OutputExistsError) as info:
        check_target(tmp_path, overwrite=False)
    exc = info.value
    assert isinstance(exc, ChurnError)
    assert f"{tmp_path} already exists" in str(exc)
    assert exc.status_code == 409
    assert exc.to_body() == {"error": "output already exists"}
