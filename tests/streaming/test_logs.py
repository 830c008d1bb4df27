"""The bridge's JSON logs: kafka-python's shutdown race is not reported as an error."""

import json
import logging
from collections.abc import Iterator

import pytest

from streaming.logs import configure


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root, transport = logging.getLogger(), logging.getLogger("kafka.net.transport")
    saved = (root.handlers[:], root.level, transport.filters[:], logging.getLogger("kafka").level)
    try:
        yield
    finally:
        root.handlers[:], level, transport.filters[:], kafka_level = saved
        root.setLevel(level)
        logging.getLogger("kafka").setLevel(kafka_level)


def lines(text: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize(("level", "shown"), [("info", []), ("debug", ["debug"])])
def test_an_error_on_a_closed_transport_is_debug(restore_logging, capsys, level, shown):
    configure(level)
    transport = logging.getLogger("kafka.net.transport")
    transport.error(
        "%s: Error receiving network data closing socket", "<KafkaTCPTransport [none] (closed)>"
    )
    assert [entry["level"] for entry in lines(capsys.readouterr().err)] == shown


def test_an_error_on_an_open_transport_stays_an_error(restore_logging, capsys):
    configure("info")
    transport = logging.getLogger("kafka.net.transport")
    transport.error("%s: socket disconnected", "<KafkaTCPTransport [broker:9092]>")
    (entry,) = lines(capsys.readouterr().err)
    assert (entry["level"], entry["logger"]) == ("error", "kafka.net.transport")
    assert entry["msg"] == "<KafkaTCPTransport [broker:9092]>: socket disconnected"
