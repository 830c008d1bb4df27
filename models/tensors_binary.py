"""The protocol's binary-data extension for inputs: tensors as raw bytes after the JSON.

A request using it carries the JSON's length in the `Inference-Header-Content-Length` header;
each input whose `parameters.binary_data_size` is set takes that many bytes, in input order, from
what follows the JSON: little-endian elements, or for BYTES a 4-byte little-endian length before
each element. tritonclient sends this by default (`binary_data=True`). The decoded elements
become the input's `data`, so everything after (models/tensors.py) is the JSON path's. Answers
stay JSON, which clients asking for binary outputs read as well.
"""

import struct
from typing import Final

import numpy as np

from models.errors import InvalidTensorError
from models.tensors import InferenceRequest, RequestInput, named

HEADER: Final = "inference-header-content-length"
# Datatype -> NumPy's little-endian dtype of one element.
DTYPES: Final = {
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


def split_body(body: bytes, json_length: str | None) -> tuple[bytes, bytes]:
    """(the JSON, the binary data after it) of a request body; all JSON without the header."""
    if json_length is None:
        return body, b""
    if not json_length.isdigit() or int(json_length) > len(body):
        message = f"must be the JSON's length, at most the body's {len(body)} bytes"
        raise InvalidTensorError(f"header {HEADER}", message)
    n = int(json_length)
    return body[:n], body[n:]


def attach_binary(request: InferenceRequest, binary: bytes) -> None:
    """Give each input sent as binary data its elements as `data`."""
    offset = 0
    for tensor in request.inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidTensorError(named(tensor.name), "binary_data_size must be an integer")
        if offset + size > len(binary):
            raise InvalidTensorError(named(tensor.name), f"{size} bytes of binary data expected")
        tensor.data = decode(tensor, binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise InvalidTensorError("request body", f"{len(binary) - offset} bytes no input claims")


def decode(tensor: RequestInput, chunk: bytes) -> list[object]:
    where = named(tensor.name)
    if tensor.datatype == "BYTES":
        return _strings(where, chunk)
    dtype = DTYPES.get(tensor.datatype)
    if dtype is None:
        raise InvalidTensorError(where, f"datatype {tensor.datatype[:64]!r} is not supported")
    if len(chunk) % np.dtype(dtype).itemsize:
        raise InvalidTensorError(where, f"{len(chunk)} bytes are not whole {tensor.datatype}s")
    values: list[object] = np.frombuffer(chunk, dtype).tolist()
    return values


def _strings(where: str, chunk: bytes) -> list[object]:
    out: list[object] = []
    offset = 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise InvalidTensorError(where, "BYTES data cut short")
        (n,) = struct.unpack_from("<I", chunk, offset)
        if offset + 4 + n > len(chunk):
            raise InvalidTensorError(where, "BYTES data cut short")
        try:
            out.append(chunk[offset + 4 : offset + 4 + n].decode())
        except UnicodeDecodeError:
            raise InvalidTensorError(where, "BYTES data must be UTF-8 text") from None
        offset += 4 + n
    return out
