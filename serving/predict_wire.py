"""PredictRequest bytes built without copying large tensors through protobuf.

Setting a 1 MiB `tensor_content` and serializing the request copies the bytes twice inside
the protobuf runtime and took ~2 ms per 256-image request here, against ~0.3 ms for
joining the same bytes directly: most of the client's CPU in a features pull. Protobuf's
wire format lets a message be sent as concatenated parts (a repeated map entry, a field
after the others), so the request is serialized by protobuf without the numeric tensors'
contents, and each such tensor is appended as one `inputs` map entry whose TensorProto ends
in its `tensor_content` field. Any protobuf parser reads the result as the same message.
"""

import numpy as np

from tfsp.serving import protos, tensors

# Field numbers and wire type 2 (length-delimited) of the fields written by hand.
_PREDICT_INPUTS = 2  # PredictRequest.inputs, map<string, TensorProto>
_MAP_KEY, _MAP_VALUE = 1, 2  # a map entry's key and value
_TENSOR_CONTENT = 4  # TensorProto.tensor_content


def _field_head(number: int, length: int) -> bytes:
    return tensors.length_delimited_head(number, length)


def _input_entry(name: str, array: np.ndarray) -> list[bytes]:
    """One `inputs` map entry for a numeric array, as parts to join."""
    header = protos.TensorProto(dtype=tensors.dtype_enum(array))
    for size in array.shape:
        header.tensor_shape.dim.add(size=size)
    content = np.ascontiguousarray(array).tobytes()
    tensor = header.SerializeToString() + _field_head(_TENSOR_CONTENT, len(content))
    key = name.encode()
    value_length = len(tensor) + len(content)
    entry_head = _field_head(_MAP_KEY, len(key)) + key + _field_head(_MAP_VALUE, value_length)
    entry_length = len(entry_head) + value_length
    return [_field_head(_PREDICT_INPUTS, entry_length), entry_head, tensor, content]


def predict_request_bytes(request: protos.PredictRequest, inputs: dict[str, np.ndarray]) -> bytes:
    """`request` (model spec, output filter) with `inputs` added, serialized.

    Strings and arrays without a TF dtype go through protobuf as usual (and get its errors).
    """
    parts: list[bytes] = []
    for name, value in inputs.items():
        array = np.asarray(value)
        if tensors.dtype_enum(array) in (tensors.DT_STRING, tensors.DT_INVALID):
            tensors.from_numpy(array, request.inputs[name], as_content=True)
        else:
            parts.extend(_input_entry(name, array))
    return b"".join([request.SerializeToString(), *parts])
