"""The TensorProto codec, checked against TensorFlow's own tensor_util."""

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf.internal.encoder import _VarintBytes
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from tfsp.serving import tensors
from tfsp.serving.errors import ServingError
from tfsp.serving.predict_wire import predict_request_bytes, predict_response_bytes

ARRAYS = [
    np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
    np.arange(4, dtype=np.float64),
    np.array([1.5, -2.25], dtype=np.float16),
    np.array([[-3, 4]], dtype=np.int8),
    np.array([300, -300], dtype=np.int16),
    np.array([[1, 2], [3, 4]], dtype=np.int32),
    np.array([2**40, -1], dtype=np.int64),
    np.array([255, 0], dtype=np.uint8),
    np.array([65535], dtype=np.uint16),
    np.array([2**32 - 1], dtype=np.uint32),
    np.array([2**63], dtype=np.uint64),
    np.array([True, False]),
    np.array([[b"a", b"\x00\xff"]], dtype=object),
    np.float32(2.5),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(np.shape(a))}")
@pytest.mark.parametrize("content", [True, False], ids=["tensor_content", "value_field"])
def test_decode_matches_tensorflow(array, content):
    proto = tf.make_tensor_proto(array)
    if not content and proto.tensor_content:
        # rebuild with the repeated value field TF would otherwise use
        dtype = tensors.numpy_dtype(proto.dtype)
        field = {np.dtype(np.float16): "half_val"}.get(dtype)
        proto = tensor_pb2.TensorProto(dtype=proto.dtype, tensor_shape=proto.tensor_shape)
        values = np.asarray(array).ravel()
        if field == "half_val":
            proto.half_val.extend(values.view(np.uint16).tolist())
        else:
            getattr(proto, tensors._DTYPES[proto.dtype][1]).extend(values.tolist())
    decoded = tensors.to_numpy("t", proto)
    expected = tf.make_ndarray(proto)
    assert decoded.shape == expected.shape
    assert decoded.tolist() == expected.tolist()


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(np.shape(a))}")
@pytest.mark.parametrize("content", [True, False], ids=["tensor_content", "value_field"])
def test_encode_is_read_back_by_tensorflow(array, content):
    proto = tensors.from_numpy(np.asarray(array), as_content=content)
    # tf.io.parse_tensor runs Tensor::FromProto (strings in tensor_content included).
    read = tf.io.parse_tensor(proto.SerializeToString(), tf.dtypes.as_dtype(proto.dtype))
    assert read.numpy().tolist() == np.asarray(array).tolist()


def _built_by_protobuf(array: np.ndarray, proto: tensor_pb2.TensorProto, *, content: bool):
    """The reference encoding, field by field through protobuf's own API, filled as TF
    Serving's Tensor::AsProtoField / AsProtoTensorContent fill it."""
    array = np.asarray(array)
    proto.dtype = tensors.dtype_enum(array)
    proto.tensor_shape.SetInParent()  # TensorShape::AsProto: present for a scalar too
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if proto.dtype == types_pb2.DT_STRING and content:
        # port::EncodeStringList: the lengths as varints, then the bytes.
        strings = array.ravel().tolist()
        lengths = b"".join(_VarintBytes(len(value)) for value in strings)
        proto.tensor_content = lengths + b"".join(strings)
    elif proto.dtype == types_pb2.DT_STRING:
        proto.string_val.extend(array.ravel().tolist())
    elif content:
        proto.tensor_content = array.tobytes()
    elif array.dtype == np.float16:
        proto.half_val.extend(array.ravel().view(np.uint16).tolist())
    else:
        getattr(proto, tensors._DTYPES[proto.dtype][1]).extend(array.ravel().tolist())
    return proto


# Every dtype, plus an empty tensor and one whose dimensions and lengths take 2-byte varints.
ENCODED = [*ARRAYS, np.zeros((0, 3), np.float32), np.arange(600, dtype=np.float64).reshape(300, 2)]


@pytest.mark.parametrize("array", ENCODED, ids=lambda a: f"{a.dtype}{list(np.shape(a))}")
@pytest.mark.parametrize("content", [True, False], ids=["tensor_content", "value_field"])
def test_wire_encoding_is_the_protobuf_built_tensor(array, content):
    written = b"".join(tensors.tensor_parts(array, as_content=content))
    expected = _built_by_protobuf(array, tensor_pb2.TensorProto(), content=content)
    assert tensor_pb2.TensorProto.FromString(written) == expected


@pytest.mark.parametrize("content", [True, False], ids=["tensor_content", "value_field"])
def test_predict_response_bytes_parse_as_the_protobuf_built_response(content):
    outputs = {f"out{i}": array for i, array in enumerate(ENCODED)} | {"k" * 200: np.int64(5)}
    expected = predict_pb2.PredictResponse()
    expected.model_spec.name = "m"
    expected.model_spec.version.value = 2**40
    expected.model_spec.signature_name = "predict_images"
    for name, value in outputs.items():
        _built_by_protobuf(value, expected.outputs[name], content=content)
    written = predict_response_bytes("m", 2**40, "predict_images", outputs, as_content=content)
    assert predict_pb2.PredictResponse.FromString(written) == expected


def test_a_dtype_the_codec_does_not_carry_is_refused_by_name_on_either_side():
    # tensor_parts writes the server's outputs and the client's inputs alike. TensorFlow has
    # DT_COMPLEX128; our codec does not (README, known differences from TF Serving).
    with pytest.raises(ServingError, match="cannot encode dtype complex128 as a TensorProto"):
        predict_request_bytes(_request(), {"x": np.zeros(2, np.complex128)})
    with pytest.raises(ServingError, match="cannot encode dtype complex128"):
        predict_response_bytes("m", 1, "s", {"y": np.zeros(2, np.complex128)}, as_content=False)


def _request() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(output_filter=["codes"])
    request.model_spec.name = "m"
    request.model_spec.version.value = 7
    request.model_spec.signature_name = "predict_images"
    return request


@pytest.mark.parametrize(
    "inputs",
    [
        {f"in{i}": array for i, array in enumerate(ARRAYS)},  # every dtype, strings too
        {"images": np.random.default_rng(0).random((256, 32, 32, 1), dtype=np.float32)},
        {"empty": np.zeros((0, 3), np.float32), "k" * 200: np.int64(5)},  # 2-byte varints
        {"images": np.arange(24, dtype=np.float32).reshape(2, 3, 4)[:, ::2]},  # not contiguous
    ],
    ids=["all-dtypes", "1MiB", "empty-and-long-key", "strided"],
)
def test_predict_request_bytes_parse_as_the_protobuf_built_request(inputs):
    expected = _request()
    for name, value in inputs.items():
        _built_by_protobuf(value, expected.inputs[name], content=True)
    parsed = predict_pb2.PredictRequest.FromString(predict_request_bytes(_request(), inputs))
    assert parsed == expected
    for name, value in inputs.items():
        assert tensors.to_numpy(name, parsed.inputs[name]).tolist() == np.asarray(value).tolist()


def test_short_value_fields_follow_tensorflow_fill_rules():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0, 2.0])
    proto.tensor_shape.dim.add(size=2)
    proto.tensor_shape.dim.add(size=2)
    assert tensors.to_numpy("t", proto).tolist() == tf.make_ndarray(proto).tolist()
    empty = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32)
    empty.tensor_shape.dim.add(size=3)
    assert tensors.to_numpy("t", empty).tolist() == [0, 0, 0]


def _proto(dtype, dims, **fields):
    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    return proto


LENIENT = [
    ("more values than elements", _proto(types_pb2.DT_FLOAT, [3], float_val=[1, 2, 3, 4])),
    ("values on a zero-element shape", _proto(types_pb2.DT_FLOAT, [0, 2], float_val=[1, 2])),
    ("bytes on a zero-element shape", _proto(types_pb2.DT_FLOAT, [0, 4], tensor_content=b"\0" * 5)),
    ("strings on a zero-element shape", _proto(types_pb2.DT_STRING, [0], tensor_content=b"\x05a")),
    ("int8 past its range", _proto(types_pb2.DT_INT8, [3], int_val=[300, -200, 127])),
    ("uint8 past its range", _proto(types_pb2.DT_UINT8, [2], int_val=[256, -1])),
    ("uint16 past its range", _proto(types_pb2.DT_UINT16, [2], int_val=[70000, -1])),
    ("half bits past 16", _proto(types_pb2.DT_HALF, [2], half_val=[70000, 15360])),
    ("strings past the count", _proto(types_pb2.DT_STRING, [1], string_val=[b"a", b"b"])),
    (
        "strings in tensor_content",
        _proto(types_pb2.DT_STRING, [3], tensor_content=b"\x02\x00\x81\x01ab" + b"x" * 129),
    ),
]


@pytest.mark.parametrize("proto", [c[1] for c in LENIENT], ids=[c[0] for c in LENIENT])
def test_value_fields_are_read_as_tensorflows_from_proto_reads_them(proto):
    # tf.io.parse_tensor runs Tensor::FromProto, as TF Serving does on every request tensor.
    expected = tf.io.parse_tensor(proto.SerializeToString(), tf.dtypes.as_dtype(proto.dtype))
    decoded = tensors.to_numpy("t", proto)
    assert decoded.shape == tuple(expected.shape)
    if decoded.dtype.kind == "O":
        assert decoded.tolist() == expected.numpy().tolist()
    else:
        assert decoded.dtype == expected.numpy().dtype
        assert decoded.tobytes() == expected.numpy().tobytes()


@pytest.mark.parametrize(
    "content",
    [b"\x02\x00ab" + b"extra", b"\x05ab", b"\x02", b"\x81"],
    ids=["bytes left over", "bytes missing", "a length missing", "a varint cut short"],
)
def test_string_tensor_content_tensorflow_cannot_read_is_refused(content):
    proto = _proto(types_pb2.DT_STRING, [2], tensor_content=content)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.parse_tensor(proto.SerializeToString(), tf.string)
    with pytest.raises(ServingError, match="input 't': tensor_content"):
        tensors.to_numpy("t", proto)


@pytest.mark.parametrize("dtype", [types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE])
def test_float_fields_read_from_wire_bytes_keep_every_value(dtype):
    # Values sent unpacked (one tag per value, as an old or hand-written client may) and
    # split around other fields; special values must survive bit for bit.
    number, width = (5, "<f4") if dtype == types_pb2.DT_FLOAT else (6, "<f8")
    tag = bytes([number << 3 | (5 if width == "<f4" else 1)])
    values = np.array([np.nan, np.inf, -0.0, 1e-30, -2.5], dtype=width)
    shape = tensor_pb2.TensorProto()
    shape.tensor_shape.dim.add(size=5)
    wire = (
        tensor_pb2.TensorProto(dtype=dtype, version_number=3).SerializeToString()
        + b"".join(tag + v.tobytes() for v in values[:2])
        + shape.SerializeToString()
        + b"".join(tag + v.tobytes() for v in values[2:])
    )
    proto = tensor_pb2.TensorProto.FromString(wire)
    decoded = tensors.to_numpy("t", proto)
    assert decoded.dtype == values.dtype.newbyteorder("=")
    assert decoded.tobytes() == tf.make_ndarray(proto).tobytes() == values.tobytes()
