"""Every deliberate error is a `ChurnError`: a BentoML exception with a true status and a
public body that names the field at fault."""

import json
from http import HTTPStatus

import pytest
from bentoml.exceptions import BentoMLException

from batch.output import OutputExistsError, check_target
from batch.reader import InputError, resolve_inputs
from models.errors import ChurnError, FieldError, IncompatibleModelError, InvalidInputError
from models.validation import describe
from serving.bentoml_fixes import error_response


def test_incompatible_model_answers_422_with_its_own_public_message():
    exc = IncompatibleModelError("model expects 3 features, not the 4 of ...")
    assert isinstance(exc, BentoMLException)
    assert exc.error_code is HTTPStatus.UNPROCESSABLE_ENTITY
    response = error_response(exc, "predict", "/predict")
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


def test_an_invalid_input_names_each_field_where_it_was_found():
    errors = [describe("age", "out_of_range"), describe("income", "missing")]
    exc = InvalidInputError(errors, [("features", "age"), ("features", "income")])
    assert exc.error_code is HTTPStatus.BAD_REQUEST
    assert exc.to_body() == {
        "error": "2 invalid fields: age: must be between 0 and 120; income: is missing",
        "detail": [
            {"loc": ["features", "age"], "msg": "age: must be between 0 and 120",
             "type": "out_of_range"},
            {"loc": ["features", "income"], "msg": "income: is missing", "type": "missing"},
        ],
    }  # fmt: skip
    # The log gets where and which code, never a message (which may quote the input).
    assert exc.log_reason() == "features.age: out_of_range; features.income: missing"


def test_an_error_about_the_whole_body_says_request_body():
    exc = InvalidInputError([FieldError("request", "not_json", "is not valid JSON")])
    assert exc.to_body() == {
        "error": "request body: is not valid JSON",
        "detail": [{"loc": [], "msg": "request: is not valid JSON", "type": "not_json"}],
    }
    assert exc.log_reason("line 1") == "request: not_json (line 1)"
