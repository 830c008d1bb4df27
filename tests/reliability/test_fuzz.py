"""Property-based tests against the served bento's own OpenAPI document (schemathesis).

Bounded for CI (`FUZZ_EXAMPLES`, default 60 per operation); a longer run is
`FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/reliability/test_fuzz.py`.
"""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.support import start_bento

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
PATHS = ["/predict", "/predict/batch", "/predict/dataframe"]
TOKEN = "fuzz-token"
BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
# A schema-valid purchase date can still lie after the as-of date, which the contract rejects
# with a 400: the schema cannot express "not after today".
NOT_CHECKED = [checks.positive_data_acceptance]


def operations(base_url: str):
    schema = schemathesis.openapi.from_url(f"{base_url}/docs.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_the_schema_lists_every_prediction_endpoint(bento):
    paths = {op.path for op in operations(bento.url)}
    assert {"/predict", "/predict/batch", "/predict/dataframe"} <= paths


# schemathesis' pytest plugin does not run under pytest 9, so each operation's strategy is driven
# by hypothesis directly; the checks are the same (status, response schema).
@pytest.mark.parametrize("path", PATHS)
def test_no_5xx_and_responses_match_the_schema(bento, path):
    (operation,) = [op for op in operations(bento.url) if op.path == path]

    @BOUNDED
    @given(case=operation.as_strategy())
    def check(case):
        response = case.call(base_url=bento.url, timeout=30)
        assert response.status_code < 500, f"{case.method} {case.path}: {response.text[:500]}"
        case.validate_response(response, excluded_checks=NOT_CHECKED)

    check()


@pytest.fixture(scope="module")
def bento_with_tokens(logs_dir, service_env):
    proc = start_bento(logs_dir, {**service_env, "CHURN_API_TOKENS": TOKEN})
    yield proc
    proc.stop()


@pytest.mark.parametrize("path", PATHS)
def test_auth_holds_for_every_generated_request(bento_with_tokens, path):
    url = bento_with_tokens.url
    (operation,) = [op for op in operations(url) if op.path == path]

    @BOUNDED
    @given(case=operation.as_strategy())
    def check(case):
        assert case.call(base_url=url, timeout=30).status_code == 401
        wrong = case.call(base_url=url, timeout=30, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        right = case.call(base_url=url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code < 500, right.text[:500]
        assert right.status_code not in (401, 403)
        case.validate_response(right, excluded_checks=NOT_CHECKED)

    check()
