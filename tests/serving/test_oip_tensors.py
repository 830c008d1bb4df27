"""The protocol's tensors as the contract's records, without a server (models/tensors.py)."""

import struct
from typing import Any

import numpy as np
import pytest

from models.errors import InvalidTensorError
from models.tensors import (
    flat,
    parse_request,
    rejection_error,
    requested_outputs,
    requests_from_inputs,
)
from models.tensors_binary import attach_binary, split_body


def tensor(name: str, shape: list[int], datatype: str, data: list[Any]) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def decode(*inputs: dict[str, Any]):
    return requests_from_inputs(parse_request({"inputs": list(inputs)}).inputs)


ROWS = [[42.0, 55000.0, 12.0, 29.0], [30.0, 20000.0, 1.0, 400.0]]
COLUMNS = [
    tensor("age", [2], "FP64", [42.0, 30]),
    tensor("income", [2, 1], "FP32", [[55000.0], [20000.0]]),
    tensor("purchase_history", [2], "INT64", [12, 1]),
    tensor("last_purchase_date", [2], "BYTES", ["2026-06-01", "2025-05-26"]),
]


def test_a_matrix_becomes_one_record_per_row_in_the_contracts_order():
    decoded = decode(tensor("input-0", [2, 4], "FP64", [x for row in ROWS for x in row]))
    assert decoded.records == [
        {"age": 42.0, "income": 55000.0, "purchase_history": 12.0, "days_since_purchase": 29.0},
        {"age": 30.0, "income": 20000.0, "purchase_history": 1.0, "days_since_purchase": 400.0},
    ]
    assert set(decoded.sources.values()) == {"input-0"}


def test_nested_data_reads_as_its_flattened_form():
    assert (
        decode(tensor("x", [2, 4], "FP64", ROWS)).records
        == decode(tensor("x", [2, 4], "FP64", [x for row in ROWS for x in row])).records
    )
    assert list(flat([[1, [2, 3]], 4])) == [1, 2, 3, 4]


def test_named_columns_become_records_with_their_names():
    decoded = decode(*COLUMNS)
    assert decoded.records[1] == {
        "age": 30,
        "income": 20000.0,
        "purchase_history": 1,
        "last_purchase_date": "2025-05-26",
    }
    assert decoded.sources["income"] == "income"


def test_days_stand_in_for_the_date():
    days = tensor("days_since_purchase", [2], "INT32", [29, 400])
    assert decode(*COLUMNS[:3], days).records[0]["days_since_purchase"] == 29


@pytest.mark.parametrize(
    ("inputs", "named", "words"),
    [
        ([tensor("x", [2, 3], "FP64", [0.0] * 6)], "input 'x'", "not [N, 4]"),
        ([tensor("x", [8], "FP64", [0.0] * 8)], "input 'x'", "not [N, 4]"),
        ([tensor("x", [2, 4], "FP64", [0.0] * 7)], "input 'x'", "7 elements"),
        ([tensor("x", [1, 4], "FP32", [0.0] * 4)], "input 'x'", "not FP64"),
        ([tensor("x", [1, 4], "FP64", [1, 2, "3", 4])], "input 'x'", "must be numbers"),
        ([tensor("x", [1, 4], "FP64", [1, 2, True, 4])], "input 'x'", "must be numbers"),
        ([tensor("x", [1001, 4], "FP64", [0.0] * 4004)], "input 'x'", "more than 1000"),
        ([tensor("x", [1, 4], "FP64", [0.0] * 4)] * 2, "inputs", "expected one"),
        (COLUMNS[:2] + COLUMNS[3:], "input 'purchase_history'", "is missing"),
        (COLUMNS[:3], "input 'last_purchase_date' (or 'days_since_purchase')", "is missing"),
        ([*COLUMNS, tensor("tenure", [2], "FP64", [1, 2])], "input 'tenure'", "unknown input"),
        ([*COLUMNS, COLUMNS[0]], "input 'age'", "given twice"),
        ([tensor("age", [2], "BYTES", ["1", "2"]), *COLUMNS[1:]], "input 'age'", "not numeric"),
        (
            [*COLUMNS[:3], tensor("last_purchase_date", [2], "FP64", [1, 2])],
            "input 'last_purchase_date'",
            "not BYTES",
        ),
        (
            [*COLUMNS[:3], tensor("last_purchase_date", [2], "BYTES", [1, 2])],
            "input 'last_purchase_date'",
            "must be strings",
        ),
        (
            [*COLUMNS[:2], tensor("purchase_history", [2], "INT64", [1.5, 2]), COLUMNS[3]],
            "input 'purchase_history'",
            "must be integers",
        ),
        ([tensor("age", [3], "FP64", [1, 2, 3]), *COLUMNS[1:]], "inputs", "differ in length"),
        ([tensor("age", [2, 2], "FP64", [1, 2, 3, 4]), *COLUMNS[1:]], "input 'age'", "[N]"),
        ([tensor("x", [1, 4], "BOOL", [True] * 4)], "input 'x'", "not FP64"),
        ([{"name": "x", "shape": [1, 4], "datatype": "FP64"}], "input 'x'", "has no data"),
    ],
)
def test_a_bad_tensor_is_an_error_naming_the_input(inputs, named, words):
    with pytest.raises(InvalidTensorError) as caught:
        decode(*inputs)
    assert caught.value.status_code == 400
    assert caught.value.name == named
    assert words in str(caught.value)
    assert caught.value.to_body() == {"error": str(caught.value)}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "inputs"),
        ({"inputs": []}, "inputs"),
        ([], "request body"),
        ({"inputs": [{"name": "x", "shape": "1", "datatype": "FP64", "data": []}]}, "input 'x'"),
        ({"inputs": [{"shape": [1], "datatype": "FP64", "data": [1]}]}, "inputs.0.name"),
    ],
)
def test_a_malformed_request_names_what_is_wrong(body, named):
    with pytest.raises(InvalidTensorError) as caught:
        parse_request(body)
    assert caught.value.name.startswith(named)


def test_parameters_and_unknown_fields_are_tolerated():
    body = {"id": "r-1", "parameters": {"binary_data_output": True}, "inputs": COLUMNS, "x": 1}
    assert parse_request(body).id == "r-1"


def test_outputs_are_all_of_them_or_those_asked_for_in_their_order():
    assert requested_outputs(None) == ["churn_probability", "prediction", "confidence_level"]
    asked = parse_request({"inputs": COLUMNS, "outputs": [{"name": "prediction"}]}).outputs
    assert requested_outputs(asked) == ["prediction"]
    unknown = parse_request({"inputs": COLUMNS, "outputs": [{"name": "probability"}]}).outputs
    with pytest.raises(InvalidTensorError, match="output 'probability'"):
        requested_outputs(unknown)


def test_a_refused_value_is_reported_against_the_tensor_that_carried_it():
    matrix = decode(tensor("input-0", [2, 4], "FP64", ROWS))
    error = rejection_error(matrix, 1, "age", "must be between 0 and 120", 2)
    expected = "input 'input-0' row 1 (age): must be between 0 and 120 (and 2 more invalid rows)"
    assert str(error) == expected
    columns = decode(*COLUMNS)
    error = rejection_error(columns, 0, "last_purchase_date", "is not a valid date", 0)
    assert str(error) == "input 'last_purchase_date' row 0: is not a valid date"


def test_a_clients_name_is_quoted_escaped_and_cut_short_in_an_error():
    name = "bad\nname" + "x" * 1000
    with pytest.raises(InvalidTensorError) as caught:
        decode(*COLUMNS, tensor(name, [2], "FP64", [1, 2]))
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("input 'bad\\nname")
    assert len(str(caught.value)) < 200


# --- the binary-data extension (models/tensors_binary.py) ---------------------------------------


def binary_request(*inputs: tuple[str, list[int], str, bytes]):
    """A request whose inputs are all binary, and the bytes after its JSON, as tritonclient
    lays them out."""
    tensors = [
        {"name": n, "shape": s, "datatype": t, "parameters": {"binary_data_size": len(b)}}
        for n, s, t, b in inputs
    ]
    return parse_request({"inputs": tensors}), b"".join(b for *_, b in inputs)


def strings(*texts: str) -> bytes:
    return b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)


def test_binary_inputs_decode_to_the_same_records_as_json():
    matrix = np.array(ROWS, np.float64)
    request, binary = binary_request(("x", [2, 4], "FP64", matrix.astype("<f8").tobytes()))
    attach_binary(request, binary)
    assert requests_from_inputs(request.inputs) == decode(tensor("x", [2, 4], "FP64", ROWS))
    dates = ("2026-06-01", "2025-05-26")
    request, binary = binary_request(
        ("age", [2], "FP32", np.array([42, 30], "<f4").tobytes()),
        ("income", [2], "FP64", np.array([55000, 20000], "<f8").tobytes()),
        ("purchase_history", [2], "INT64", np.array([12, 1], "<i8").tobytes()),
        ("last_purchase_date", [2], "BYTES", strings(*dates)),
    )
    attach_binary(request, binary)
    assert requests_from_inputs(request.inputs).records == decode(*COLUMNS).records


@pytest.mark.parametrize(
    ("inputs", "extra", "named", "words"),
    [
        ([("x", [1, 4], "FP64", b"\0" * 31)], b"", "input 'x'", "not whole FP64s"),
        ([("d", [1], "BYTES", b"\5\0\0\0abc")], b"", "input 'd'", "cut short"),
        ([("d", [1], "BYTES", b"\2\0")], b"", "input 'd'", "cut short"),
        ([("d", [1], "BYTES", strings("a")[:-1] + b"\xff")], b"", "input 'd'", "UTF-8"),
        ([("x", [1, 4], "BOOL", b"\1" * 4)], b"", "input 'x'", "not supported"),
        ([("x", [1, 4], "FP64", b"\0" * 32)], b"\0", "request body", "1 bytes no input claims"),
    ],
)
def test_bad_binary_data_is_an_error_naming_the_input(inputs, extra, named, words):
    request, binary = binary_request(*inputs)
    with pytest.raises(InvalidTensorError) as caught:
        attach_binary(request, binary + extra)
    assert caught.value.name == named
    assert words in str(caught.value)


def test_binary_data_larger_than_sent_is_an_error_naming_the_input():
    request, _ = binary_request(("x", [1, 4], "FP64", b"\0" * 32))
    with pytest.raises(InvalidTensorError, match="input 'x'"):
        attach_binary(request, b"\0" * 8)


@pytest.mark.parametrize("header", ["x", "-1", "1000"])
def test_a_bad_json_length_header_is_an_error(header):
    with pytest.raises(InvalidTensorError, match="inference-header-content-length"):
        split_body(b"{}", header)


def test_without_the_header_the_body_is_all_json():
    assert split_body(b'{"inputs": []}', None) == (b'{"inputs": []}', b"")
    assert split_body(b'{"a": 1}XYZ', "8") == (b'{"a": 1}', b"XYZ")
