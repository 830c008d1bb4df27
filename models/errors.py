"""A small exception tree: each error knows its HTTP status and names the field at fault.

Every error is a `BentoMLException` carrying its status in `error_code`, BentoML's documented
way for a service's own errors; the service renders them as `to_body()` (serving/bentoml_fixes.py
says why BentoML's own rendering is not used), the batch script maps them to exit codes.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from bentoml.exceptions import BentoMLException

REQUEST = "request"  # the field name of an error about a body or record as a whole


@dataclass(frozen=True, slots=True)
class FieldError:
    """Why one field of one record was rejected.

    `code` is a stable machine-readable category (`missing`, `null`, `wrong_type`, `not_finite`,
    `not_integer`, `out_of_range`, `bad_date`, `future_date`, `not_json`); `reason` is the
    human-readable text every path (HTTP, batch, Kafka) reports for it.
    """

    field: str
    code: str
    message: str

    @property
    def reason(self) -> str:
        return f"{self.field}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "code": self.code, "msg": self.reason}


class ChurnError(BentoMLException):
    """Base of every error this project raises on purpose."""

    error_code = HTTPStatus.INTERNAL_SERVER_ERROR
    public_message = "internal error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.public_message)

    @property
    def status_code(self) -> int:
        return self.error_code.value

    def to_body(self) -> dict[str, Any]:
        return {"error": self.public_message}


Loc = tuple[str | int, ...]


class InvalidInputError(ChurnError):
    """A request failed validation: one `FieldError` per failing field, each with where it was
    found (`locs`, e.g. `("features", "age")`; `()` for the body as a whole)."""

    error_code = HTTPStatus.BAD_REQUEST

    def __init__(self, errors: Sequence[FieldError], locs: Sequence[Loc] | None = None) -> None:
        self.errors = list(errors)
        self.locs = list(locs) if locs is not None else [_loc(e) for e in self.errors]
        super().__init__(self.summary())

    def summary(self) -> str:
        """`2 invalid fields: age: must be between 0 and 120; income: is missing`, or
        `request body: is not valid JSON` for the body as a whole."""
        parts = [f"request body: {e.message}" for e in self.errors if e.field == REQUEST]
        fields = [e.reason for e in self.errors if e.field != REQUEST]
        if fields:
            plural = "s" if len(fields) > 1 else ""
            parts.append(f"{len(fields)} invalid field{plural}: " + "; ".join(fields))
        return "; ".join(parts)

    def to_body(self) -> dict[str, Any]:
        return {
            "error": self.summary(),
            "detail": [
                {"loc": list(loc), "msg": e.reason, "type": e.code}
                for loc, e in zip(self.locs, self.errors, strict=True)
            ],
        }

    def log_reason(self, note: str = "", limit: int = 300) -> str:
        """`loc: code` pairs for the log (never a message, which might quote the input)."""
        pairs = "; ".join(
            f"{'.'.join(map(str, loc)) or REQUEST}: {e.code}"
            for loc, e in zip(self.locs, self.errors, strict=True)
        )
        return f"{pairs} ({note})"[:limit] if note else pairs[:limit]


def _loc(error: FieldError) -> Loc:
    return () if error.field == REQUEST else (error.field,)


class RetiredRouteError(ChurnError):
    """A route of a replaced service that this one does not answer: the 404 names the route to
    use instead (docs/migration.md), so a client moved over fails once, with the fix in hand."""

    error_code = HTTPStatus.NOT_FOUND

    def __init__(self, route: str, use: str) -> None:
        self.use = use
        super().__init__(f"{route} is not served here: use {use}")

    def to_body(self) -> dict[str, Any]:
        return {"error": str(self), "use": self.use}


class ModelUnavailableError(ChurnError):
    """No model under the requested tag, or its files do not load."""

    error_code = HTTPStatus.SERVICE_UNAVAILABLE
    public_message = "model unavailable"


class IncompatibleModelError(ChurnError):
    """Artifacts that load but do not fit the contract (no predict_proba, wrong feature count)."""

    error_code = HTTPStatus.UNPROCESSABLE_ENTITY
    public_message = "model incompatible with the scoring contract"


class BatchInputError(ChurnError):
    """A batch input that does not exist, matches nothing or cannot be read (or bad usage of
    the batch script); the message names the file. `batch.reader.InputError` is this."""

    error_code = HTTPStatus.BAD_REQUEST
    public_message = "batch input cannot be read"


class OutputConflictError(ChurnError):
    """A batch run's output directory exists and may not be replaced.
    `batch.output.OutputExistsError` is this."""

    error_code = HTTPStatus.CONFLICT
    public_message = "output already exists"


class InvalidTensorError(ChurnError):
    """An inference request of the Open Inference Protocol (models/tensors.py) whose tensors do
    not fit the contract: wrong shape, datatype or value, or an input missing. The message names
    the input (or the request field) at fault, and is the whole body, as the protocol has it."""

    error_code = HTTPStatus.BAD_REQUEST

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(f"{name}: {message}")

    def to_body(self) -> dict[str, Any]:
        return {"error": str(self)}


class UnknownModelError(ChurnError):
    """A protocol path naming a model or a version this server does not serve."""

    error_code = HTTPStatus.NOT_FOUND

    def to_body(self) -> dict[str, Any]:
        return {"error": str(self)}
