"""Reading served predictions back: prediction-log files and the Kafka bridge's results dumped
to JSON lines, one JSON record a line, for the drift report (`monitoring.drift`)."""

import fnmatch
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batch.reader import InputError, InputKind
from models.contract import FEATURES, ID_COLUMN

# BentoML's monitor data files (`data.<worker>.log`, rotated: `data.<worker>.log.<date>`) and
# JSON-lines dumps; its schema files (`schema.<worker>.log`) are not records.
LOG_FILE_PATTERN = "data.*.log*"
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
TIME_FIELDS = ("scored_at", "timestamp")  # the prediction log's, else the bridge results'
PROBABILITY = "churn_probability"
MODEL_FIELD = "model_version"


def utc(text: str) -> datetime:
    """An ISO 8601 date or datetime (a trailing Z allowed); naive means UTC."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# Files named directly or matched by a glob are read whatever their name.
LOG_INPUTS = InputKind(
    f"prediction-log ({LOG_FILE_PATTERN}) or {'/'.join(JSON_SUFFIXES)}",
    lambda p: fnmatch.fnmatch(p.name, LOG_FILE_PATTERN) or p.suffix.lower() in JSON_SUFFIXES,
    recursive=True,
    strict=False,
)


def lines(path: Path) -> Iterator[tuple[dict[str, Any] | None, str | None]]:
    """(record, None) per JSON-object line, or (None, why not) per other non-blank line."""
    try:
        with path.open("rb") as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except ValueError:
                    yield None, "record: is not valid JSON"
                    continue
                if isinstance(value, dict):
                    yield value, None
                else:
                    yield None, "record: must be a JSON object"
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def problem(record: dict[str, Any]) -> str | None:
    """Why a record cannot be counted as a prediction, or None."""
    p = record.get(PROBABILITY)
    if p is None:
        return f"{PROBABILITY}: is missing"
    if not _number(p) or not 0.0 <= p <= 1.0:
        return f"{PROBABILITY}: must be a number between 0 and 1"
    for name in FEATURES:
        value = record.get(name)
        if value is not None and not _number(value):
            return f"{name}: must be a number"
    return None


@dataclass
class Selection:
    """Which records count: a time window and one model version (fixed by --model, else by
    the first record that names one)."""

    since: datetime | None
    until: datetime | None
    model: str | None
    fixed: bool
    outside_window: int = 0
    other_model: int = 0
    other_models: set[str] = field(default_factory=set)
    first: datetime | None = None
    last: datetime | None = None

    def keep(self, record: dict[str, Any]) -> bool:
        """Whether `record` counts; the skipped ones are tallied."""
        moment = self._time(record)
        if moment is None:
            if self.since or self.until:
                self.outside_window += 1
                return False
        elif (self.since and moment < self.since) or (self.until and moment >= self.until):
            self.outside_window += 1
            return False
        version = record.get(MODEL_FIELD)
        if isinstance(version, str) and version != self.model:
            if self.model is None and not self.fixed:
                self.model = version
            else:
                self.other_model += 1
                self.other_models.add(version)
                return False
        if moment is not None:
            self.first = moment if self.first is None else min(self.first, moment)
            self.last = moment if self.last is None else max(self.last, moment)
        return True

    @staticmethod
    def _time(record: dict[str, Any]) -> datetime | None:
        for name in TIME_FIELDS:
            text = record.get(name)
            if isinstance(text, str):
                try:
                    return utc(text)
                except ValueError:
                    return None
        return None


class Chunk:
    """Counted records of one file, gathered column by column until `flush`."""

    def __init__(self) -> None:
        self.probability: list[float] = []
        self.ids: list[str] = []
        self.features: dict[str, list[float]] = {name: [] for name in FEATURES}
        self.reasons: list[str] = []
        self.as_of: set[str] = set()

    def __len__(self) -> int:
        return len(self.probability) + len(self.reasons)

    def add(self, record: dict[str, Any]) -> None:
        self.probability.append(float(record[PROBABILITY]))
        cid = record.get(ID_COLUMN)
        if cid is not None:
            self.ids.append(str(cid))
        for name in FEATURES:
            value = record.get(name)
            if value is not None:
                self.features[name].append(float(value))
        as_of = record.get("as_of")
        if isinstance(as_of, str):
            self.as_of.add(as_of)
