"""A small exception tree: each error knows its HTTP status and names the field at fault."""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldError:
    """Why one field of one record was rejected.

    `code` is a stable machine-readable category (`missing`, `null`, `wrong_type`, `not_finite`,
    `not_integer`, `out_of_range`, `bad_date`, `future_date`, `unexpected`); `reason` is the
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


class ChurnError(Exception):
    """Base of every error this project raises on purpose."""

    status_code = 500
    public_message = "internal error"

    def to_body(self) -> dict[str, Any]:
        return {"error": self.public_message}


class InvalidInputError(ChurnError):
    """A request or record failed validation; carries one `FieldError` per failing field."""

    status_code = 400

    def __init__(self, errors: list[FieldError], loc_prefix: tuple[str, ...] = ()) -> None:
        self.errors = errors
        self.loc_prefix = loc_prefix
        super().__init__("; ".join(e.reason for e in errors))

    def to_body(self) -> dict[str, Any]:
        return {
            "error": f"{len(self.errors)} validation error(s): {self}",
            "detail": [
                {"loc": [*self.loc_prefix, e.field], "msg": e.reason, "type": e.code}
                for e in self.errors
            ],
        }


class ModelUnavailableError(ChurnError):
    """No model under the requested tag, or its files do not load."""

    status_code = 503
    public_message = "model unavailable"


class IncompatibleModelError(ChurnError):
    """Artifacts that load but do not fit the contract (no predict_proba, wrong feature count)."""

    status_code = 422
    public_message = "model incompatible with the scoring contract"


class BatchInputError(ChurnError):
    """A batch input that does not exist, matches nothing or cannot be read (or bad usage of
    the batch script); the message names the file. `batch.reader.InputError` is this."""

    status_code = 400
    public_message = "batch input cannot be read"


class OutputConflictError(ChurnError):
    """A batch run's output directory exists and may not be replaced.
    `batch.output.OutputExistsError` is this."""

    status_code = 409
    public_message = "output already exists"
