"""Scoring a micro-batch in one call: through the served bento over HTTP, or in this process.

Both return one outcome per message, in order: the prediction fields (`RESULT_FIELDS`) or the
`Problem` the scorer found. A scorer that cannot answer now raises `ScoringUnavailableError`; the
bridge then retries the same messages, so a failure never drops or skips anything.
"""

from collections.abc import Sequence
from datetime import date
from typing import Any, Protocol

import bentoml
import httpx
from bentoml.exceptions import BentoMLException

from models.contract import ID_COLUMN
from models.errors import ChurnError
from models.predict import score_requests
from models.predictor import ChurnPredictor
from streaming.messages import RESULT_FIELDS, Message, Problem

Outcome = dict[str, Any] | Problem
BATCH_ENDPOINT = "predict_batch"


class ScoringUnavailableError(ChurnError):
    """The scorer cannot answer now (service down, overloaded, timing out); try again later.

    `kind` is a short label for metrics: `connect`, `timeout`, `http_503`, ...
    """

    status_code = 503
    public_message = "scoring unavailable"

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {detail}")


class Scorer(Protocol):
    name: str

    def score(self, messages: Sequence[Message], as_of: date) -> list[Outcome]: ...

    def close(self) -> None: ...


class HttpScorer:
    """The served bento's `/predict/batch`, through BentoML's `SyncHTTPClient`.

    The client is created on first use (it reads the service's schema), so a bridge can start
    before the service does. The service validates the items again with its own as-of date;
    an item it rejects is reported with the service's reason.
    """

    name = "http"

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._client: bentoml.SyncHTTPClient | None = None

    def _connected(self) -> bentoml.SyncHTTPClient:
        if self._client is None:
            # server_ready_timeout=0: fail fast when the service is down; the bridge retries.
            self._client = bentoml.SyncHTTPClient(
                self.url, server_ready_timeout=0, timeout=self.timeout
            )
        return self._client

    def score(self, messages: Sequence[Message], as_of: date) -> list[Outcome]:
        try:
            body = self._connected().call(
                BATCH_ENDPOINT, {"requests": [m.payload for m in messages]}
            )
        except BentoMLException as exc:
            code = getattr(exc, "error_code", None)
            kind = f"http_{int(code)}" if code is not None else "bentoml"
            raise ScoringUnavailableError(kind, str(exc)[:500]) from exc
        except httpx.TimeoutException as exc:
            raise ScoringUnavailableError("timeout", repr(exc)) from exc
        except httpx.TransportError as exc:
            raise ScoringUnavailableError("connect", repr(exc)) from exc
        return outcomes_from_batch(body, len(messages))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def outcomes_from_batch(body: Any, n: int) -> list[Outcome]:
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
                outcomes.append({k: prediction[k] for k in RESULT_FIELDS})
    except (KeyError, TypeError, StopIteration) as exc:
        raise ScoringUnavailableError("bad_response", f"unexpected batch answer: {exc!r}") from exc
    if next(predictions, None) is not None:
        raise ScoringUnavailableError("bad_response", "more predictions than requests")
    return outcomes


class InProcessScorer:
    """The model loaded from the BentoML store, scored here with the service's own code."""

    name = "in-process"

    def __init__(self, predictor: ChurnPredictor) -> None:
        self.predictor = predictor

    def score(self, messages: Sequence[Message], as_of: date) -> list[Outcome]:
        requests = [m.request for m in messages if m.request is not None]
        if len(requests) != len(messages):
            raise ValueError("only valid messages can be scored")
        scores = score_requests(self.predictor, requests, as_of)
        return [
            {ID_COLUMN: r.customer_id, **scores.row(i), "model_version": self.predictor.tag}
            for i, r in enumerate(requests)
        ]

    def close(self) -> None:
        """Nothing to release: the model lives as long as the process."""
