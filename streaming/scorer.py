"""Scoring a micro-batch in one call: through the served bento over HTTP, or in this process.

Both return one outcome per message, in order: the prediction fields (`RESULT_FIELDS`) or the
`Problem` the scorer found. Two ways to fail, never dropping or skipping a message:

- `ScoringUnavailableError`: cannot answer now (connection refused, timeout, 5xx, 429 or 408):
  the bridge retries the same messages until the service answers.
- `ScoringRefusedError`: the service answered with any other 4xx (401/403: no or wrong token;
  404: wrong URL; 413 or 400: a request it will never take). Retrying cannot help; the bridge
  stops without committing and exits non-zero (`streaming.bridge.EXIT_REFUSED`).
"""

from collections.abc import Sequence
from datetime import date
from http import HTTPStatus
from typing import Any, Protocol

import bentoml
import httpx
import numpy as np
from bentoml.exceptions import BentoMLException
from pydantic_core import from_json, to_json

from models.contract import FEATURES
from models.errors import ChurnError
from models.explain import explain
from models.prediction import Predictions
from models.predictor import ChurnPredictor, load_predictor
from streaming.messages import REASON_FIELDS, RESULT_FIELDS, Message, Problem
from streaming.settings import StreamSettings

Outcome = dict[str, Any] | Problem
BATCH_ENDPOINT = "predict_batch"
JSON = {"content-type": "application/json"}


class ScoringUnavailableError(ChurnError):
    """The scorer cannot answer now (service down, overloaded, timing out); try again later.

    `kind` is a short label for metrics: `connect`, `timeout`, `http_503`, ...
    """

    error_code = HTTPStatus.SERVICE_UNAVAILABLE
    public_message = "scoring unavailable"

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {detail}")


# 4xx that say "not now" rather than "never": retried like an outage.
RETRYABLE_4XX = frozenset({httpx.codes.REQUEST_TIMEOUT, httpx.codes.TOO_MANY_REQUESTS})
_TOKEN_HINT = "check --service-token / CHURN_STREAM_SERVICE_TOKEN (the bento's CHURN_API_TOKENS)"
_URL_HINT = "check --service-url / CHURN_STREAM_SERVICE_URL"
_SIZE_HINT = "lower --max-batch, or raise the bento's CHURN_MAX_BODY_BYTES"
_CONTRACT_HINT = "check that the bridge and the bento are the same version"
_HINTS = {401: _TOKEN_HINT, 403: _TOKEN_HINT, 404: _URL_HINT, 413: _SIZE_HINT}


class ScoringRefusedError(ChurnError):
    """The service refused the bridge's requests (a 4xx other than 408/429): a configuration or
    contract error, not an outage, so retrying would only repeat it.

    `status` is the HTTP status, `body` what the service said (its `error` text when it sent
    one, cut at 500 characters), `request` the one refused (`POST /predict/batch`); `str()` is
    the whole explanation, with what to check.
    """

    error_code = HTTPStatus.BAD_GATEWAY
    public_message = "scoring refused"

    def __init__(self, status: int, body: str, request: str) -> None:
        self.status, self.body, self.request = status, body, request
        hint = _HINTS.get(status, _CONTRACT_HINT)
        super().__init__(
            f"the service refused the bridge's requests: {status} {body} ({request}); {hint}"
        )

    @property
    def kind(self) -> str:
        return f"http_{self.status}"


def _said(answer: httpx.Response) -> str:
    """The service's words: the `error` of a JSON error body, else the body's text (cut)."""
    try:
        body = from_json(answer.content)
    except ValueError:
        return answer.text[:500]
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"][:500]
    return answer.text[:500]


def check_answer(answer: httpx.Response) -> None:
    """Raise unless `answer` is a 200: refused (4xx) or unavailable (5xx, 408, 429, other)."""
    status = answer.status_code
    if status == httpx.codes.OK:
        return
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        request = f"{answer.request.method} {answer.request.url.path}"
        raise ScoringRefusedError(status, _said(answer), request)
    raise ScoringUnavailableError(f"http_{status}", answer.text[:500])


class Scorer(Protocol):
    name: str

    def score(self, messages: Sequence[Message], as_of: date) -> list[Outcome]: ...

    def close(self) -> None: ...


class HttpScorer:
    """The served bento's batch endpoint, through BentoML's `SyncHTTPClient`.

    The client is created on first use (it reads the service's schema, where `predict_batch`
    publishes its route), so a bridge can start before the service does. The body goes out and
    the answer comes back as plain JSON (pydantic-core, exact for floats): the client's
    schema-driven conversion, made for files and models, cost more than the service's scoring.
    The service validates the items again with its own as-of date; an item it rejects is
    reported with the service's reason.
    """

    name = "http"

    def __init__(
        self, url: str, timeout: float, token: str | None = None, explain: bool = False
    ) -> None:
        self.url, self.timeout, self.token = url, timeout, token
        self.fields = RESULT_FIELDS + REASON_FIELDS if explain else RESULT_FIELDS
        self.envelope = {"explain": True} if explain else {}
        self._client: bentoml.SyncHTTPClient | None = None
        self._route = ""

    def _connect(self) -> bentoml.SyncHTTPClient:
        # server_ready_timeout=0: fail fast when the service is down; the bridge retries.
        try:
            client = bentoml.SyncHTTPClient(
                self.url, server_ready_timeout=0, timeout=self.timeout, token=self.token
            )
        except BentoMLException as exc:  # the schema could not be read: why?
            self._explain_schema_failure()
            raise ScoringUnavailableError("schema", str(exc)[:500]) from exc
        try:
            self._route = client.endpoints[BATCH_ENDPOINT].route
        except KeyError:
            client.close()
            raise ScoringUnavailableError(
                "no_endpoint", f"{self.url} has no {BATCH_ENDPOINT} endpoint"
            ) from None
        return client

    def _explain_schema_failure(self) -> None:
        """The client says only "Failed to fetch schema": ask once more to learn the status, and
        raise `ScoringRefusedError` when it is a refusal (with a token set, /schema.json needs
        it like the endpoints do). Anything else stays an outage, to retry."""
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            answer = httpx.get(f"{self.url.rstrip('/')}/schema.json", headers=headers,
                               timeout=self.timeout)  # fmt: skip
        except httpx.HTTPError:
            return
        check_answer(answer)

    def score(self, messages: Sequence[Message], as_of: date) -> list[Outcome]:
        body = to_json({"requests": [m.payload for m in messages], **self.envelope})
        try:
            self._client = self._client or self._connect()
            answer = self._client.request("POST", self._route, content=body, headers=JSON)
        except httpx.TimeoutException as exc:
            raise ScoringUnavailableError("timeout", repr(exc)) from exc
        except httpx.TransportError as exc:
            raise ScoringUnavailableError("connect", repr(exc)) from exc
        check_answer(answer)
        try:
            parsed = from_json(answer.content)
        except ValueError as exc:
            raise ScoringUnavailableError("bad_response", f"not JSON: {exc}") from exc
        return outcomes_from_batch(parsed, len(messages), self.fields)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def outcomes_from_batch(body: Any, n: int, fields: Sequence[str] = RESULT_FIELDS) -> list[Outcome]:
    """The `/predict/batch` answer as one outcome per item: `predictions` are the accepted items in
    order, `errors` name the rejected ones by index."""
    try:
        rejected = {e["index"]: Problem(e["field"], e["code"], e["error"]) for e in body["errors"]}
        predictions = iter(body["predictions"])
        outcomes: list[Outcome] = []
        for i in range(n):
            if i in rejected:
                outcomes.append(rejected[i])
            else:
                prediction = next(predictions)
                outcomes.append({k: prediction[k] for k in fields})
    except (KeyError, TypeError, StopIteration) as exc:
        raise ScoringUnavailableError("bad_response", f"unexpected batch answer: {exc!r}") from exc
    if next(predictions, None) is not None:
        raise ScoringUnavailableError("bad_response", "more predictions than requests")
    return outcomes


class InProcessScorer:
    """The model loaded from the BentoML store, scored here with the service's own code."""

    name = "in-process"

    def __init__(self, predictor: ChurnPredictor, explain: bool = False) -> None:
        self.predictor = predictor
        self.explain = explain

    def score(self, messages: Sequence[Message], as_of: date) -> list[Outcome]:
        rows = [m.features for m in messages if m.features is not None]
        if len(rows) != len(messages):
            raise ValueError("only valid messages can be scored")
        # Checked and computed as of the batch's date when the messages were decoded.
        matrix = np.vstack(rows) if rows else np.empty((0, len(FEATURES)))
        reasons = explain(self.predictor, matrix) if self.explain else None
        ids = [m.customer_id for m in messages]
        scored = Predictions(ids, matrix, self.predictor.score(matrix), self.predictor.tag,
                             as_of, reasons)  # fmt: skip
        return [scored.row(i) for i in range(len(messages))]

    def close(self) -> None:
        """Nothing to release: the model lives as long as the process."""


def scorer_for(settings: StreamSettings) -> Scorer:
    if settings.in_process:
        return InProcessScorer(load_predictor(settings.tag()), settings.explain)
    return HttpScorer(
        settings.service_url, settings.service_timeout_s, settings.service_token, settings.explain
    )
