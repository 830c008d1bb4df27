"""Make the served OpenAPI document describe the 400 bodies the service really sends.

BentoML 1.4.40 declares every 400 as `{"error": str, "detail": str}`, but its own pydantic
validation (and our `InvalidInputError`) answer with `detail` as a list of
`{"loc", "msg", "type"}` objects. Clients generated from the document then fail to read the
very errors that name the bad field, and schemathesis flags every such response. This
middleware rewrites that one schema in `/docs.json`; everything else passes through untouched.
"""

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_PATH = "/docs.json"
FIELD_ERROR = {
    "type": "object",
    "title": "FieldError",
    "properties": {
        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"type": "string"},
        "type": {"type": "string"},
    },
    "required": ["loc", "msg", "type"],
}
DETAIL = {
    "title": "Error Detail",
    "anyOf": [{"type": "string"}, {"type": "array", "items": FIELD_ERROR}],
}


def patch_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The document with `InvalidArgument.detail` widened to what 400 bodies carry."""
    schema = spec.get("components", {}).get("schemas", {}).get("InvalidArgument")
    if schema and "detail" in schema.get("properties", {}):
        schema["properties"]["detail"] = DETAIL
    return spec


class OpenAPIFix:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != DOCS_PATH:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body") or start is None:
                return
            body = b"".join(chunks)
            if start["status"] == 200:
                body = json.dumps(patch_spec(json.loads(body))).encode()
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)
