"""Structured logs: one JSON object per line on stderr, with the event's fields as keys."""

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ClosedTransportNoise(logging.Filter):
    """kafka-python's network thread can still be reading a socket that `close()` has just shut,
    and logs that as an ERROR on a transport marked "(closed)". It is the shutdown race, not a
    fault: shown at DEBUG, so an operator's error count means something."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG and "(closed)>" in record.getMessage():
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def configure(level: str) -> None:
    """JSON lines on stderr; kafka-python and httpx (a line per request) start at WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for chatty in ("kafka", "httpx"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    transport = logging.getLogger("kafka.net.transport")
    transport.filters[:] = [ClosedTransportNoise()]


def log(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    logger.log(level, msg, extra={"fields": fields})
