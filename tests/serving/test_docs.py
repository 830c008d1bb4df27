"""The API docs a client sees first: the served OpenAPI document (`/docs.json`) describes this
service, lists the GET routes with their response schemas, and carries an example per POST
endpoint that answers 200 when sent as it is."""

from importlib.metadata import version

import httpx
import pytest
import schemathesis

from tests.serving.conftest import AUTH

TITLE = "Customer churn prediction"
POSTS = ["/predict", "/predict/batch", "/predict/dataframe"]
GETS = {"/health": "Health", "/models/versions": "ModelVersions"}


@pytest.fixture(scope="module")
def docs(bento) -> dict:
    resp = httpx.get(f"{bento.url}/docs.json", timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def resolve(docs: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = docs["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def example_of(docs: dict, path: str):
    """The request example the docs page prefills: the media type's, else the schema's."""
    media = docs["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    if "example" in media:
        return media["example"]
    if media.get("examples"):
        return next(iter(media["examples"].values()))["value"]
    return resolve(docs, media["schema"])["example"]


def test_the_document_describes_this_service(docs, model_tag):
    info = docs["info"]
    assert info["title"] == TITLE
    assert info["version"] == version("churn-serving")
    text = info["description"]
    assert text.startswith(f"# {TITLE}\n")  # the page shows this heading, not `info.title`
    for words in ("churn", "/predict/batch", "/predict/dataframe", "/health", "/models/versions"):
        assert words in text
    assert model_tag in text
    assert "**Authentication**: none on this deployment" in text
    for default in ("created with BentoML", "twitter", "slack", "churn_service:dev"):
        assert default not in text.lower()
    assert "contact" not in info


def test_the_page_is_titled_for_this_service(bento):
    page = httpx.get(f"{bento.url}/", timeout=30)
    assert page.status_code == 200
    assert f"<title>{TITLE}</title>" in page.text
    assert int(page.headers["content-length"]) == len(page.content)


@pytest.mark.parametrize(("path", "schema"), GETS.items())
def test_get_routes_are_documented_as_they_answer(docs, bento, path, schema):
    operation = docs["paths"][path]["get"]
    documented = resolve(
        docs, operation["responses"]["200"]["content"]["application/json"]["schema"]
    )
    assert documented == docs["components"]["schemas"][schema]
    body = httpx.get(f"{bento.url}{path}", timeout=30).json()
    assert set(body) == set(documented["properties"]) == set(documented["required"])
    # And the answer validates against the document (types, nullability, enums, formats).
    api = schemathesis.openapi.from_url(f"{bento.url}/docs.json")
    (op,) = [r.ok() for r in api.get_all_operations() if r.ok().path == path]
    case = op.Case()
    case.validate_response(case.call(base_url=bento.url, timeout=30))


@pytest.mark.parametrize("path", POSTS)
def test_each_example_answers_200_as_it_is(docs, bento, path):
    example = example_of(docs, path)
    assert example, path
    resp = httpx.post(f"{bento.url}{path}", json=example, timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    if path == "/predict":
        assert body["customer_id"] == example["customer_id"]
    elif path == "/predict/batch":
        assert (body["success_count"], body["error_count"]) == (len(example["requests"]), 0)
    else:
        assert len(body) == len(example) >= 2
        assert [row["error"] for row in body] == [None] * len(example)


def post_schema(docs: dict, path: str, part: str) -> dict:
    """The resolved JSON schema of a POST endpoint's request body or 200 answer."""
    operation = docs["paths"][path]["post"]
    body = operation["requestBody"] if part == "request" else operation["responses"]["200"]
    return resolve(docs, body["content"]["application/json"]["schema"])


def test_the_documented_bodies_keep_their_alternatives(docs):
    request = post_schema(docs, "/predict", "request")
    id_types = {alt.get("type") for alt in request["properties"]["customer_id"]["anyOf"]}
    assert id_types == {"string", "integer"}
    answer = post_schema(docs, "/predict", "200")
    assert {"type": "null"} in answer["properties"]["customer_id"]["anyOf"]


def test_with_tokens_the_page_says_which_paths_need_one(production):
    docs = httpx.get(f"{production.url}/docs.json", timeout=30).json()  # open, like the page
    text = docs["info"]["description"]
    assert "`Authorization: Bearer <token>` on `/predict*` and `/models/versions`" in text
    assert "Probes, `/health`, `/metrics` and these docs are open" in text
    assert {*POSTS, *GETS} <= set(docs["paths"])
    assert httpx.get(f"{production.url}/health", timeout=10).status_code == 200
    example = example_of(docs, "/predict")
    assert httpx.post(f"{production.url}/predict", json=example, timeout=30).status_code == 401
    ok = httpx.post(f"{production.url}/predict", json=example, headers=AUTH, timeout=30)
    assert ok.status_code == 200, ok.text
