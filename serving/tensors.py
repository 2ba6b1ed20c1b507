"""TensorProto <-> numpy (requests are checked against their signature in dataplane.py).

Decoding follows TensorFlow's Tensor::FromProto: `tensor_content` must hold exactly the
shape's bytes; the repeated value field may hold fewer values than elements (the last value
repeats, none means zeros) but never more.
"""

import functools
import math

import grpc
import numpy as np

from tfsp.serving import protos
from tfsp.serving.errors import ServingError, invalid

# The DataType enum's numbers (DT_FLOAT = 1, ...), from the rebuilt protos: this module is
# shared by the server (TensorFlow's own message classes) and the light client (the rebuilt
# ones), and works on either, since both have the same fields.
_DT = {value.name: value.number for value in protos.DATA_TYPE.values}
DT_INVALID, DT_STRING = _DT["DT_INVALID"], _DT["DT_STRING"]

# dtype enum -> (numpy dtype, repeated value field)
_DTYPES: dict[int, tuple[np.dtype, str]] = {
    _DT["DT_FLOAT"]: (np.dtype(np.float32), "float_val"),
    _DT["DT_DOUBLE"]: (np.dtype(np.float64), "double_val"),
    _DT["DT_HALF"]: (np.dtype(np.float16), "half_val"),
    _DT["DT_INT8"]: (np.dtype(np.int8), "int_val"),
    _DT["DT_INT16"]: (np.dtype(np.int16), "int_val"),
    _DT["DT_INT32"]: (np.dtype(np.int32), "int_val"),
    _DT["DT_INT64"]: (np.dtype(np.int64), "int64_val"),
    _DT["DT_UINT8"]: (np.dtype(np.uint8), "int_val"),
    _DT["DT_UINT16"]: (np.dtype(np.uint16), "int_val"),
    _DT["DT_UINT32"]: (np.dtype(np.uint32), "uint32_val"),
    _DT["DT_UINT64"]: (np.dtype(np.uint64), "uint64_val"),
    _DT["DT_BOOL"]: (np.dtype(np.bool_), "bool_val"),
    DT_STRING: (np.dtype(object), "string_val"),
}
_BY_NUMPY = {dtype: enum for enum, (dtype, _) in _DTYPES.items()}
_VALUE_FIELDS = sorted({field for _, field in _DTYPES.values()})
# No single tensor may decode to more than this (a tiny proto can claim a huge shape). TF
# Serving allocates whatever the shape claims and reports a failed allocation as "tensor
# parsing error" (INVALID_ARGUMENT); a fixed cap refuses the same requests before any memory
# is touched, and a claim TF would satisfy by filling gigabytes with one repeated value too.
MAX_TENSOR_BYTES = 2**31 - 1
# numpy holds at most 64 dimensions (NPY_MAXDIMS); TensorFlow's TensorShape holds 254.
MAX_RANK = 64
TF_MAX_RANK = 254
_INDEX_MAX = 2**63 - 1
_SHOWN_DIMS = 8  # a refused shape's dimensions shown in a message (a status is one line)


def dtype_name(enum: int) -> str:
    """'DT_FLOAT' for 1, and so on."""
    value = protos.DATA_TYPE.values_by_number.get(enum)
    return value.name if value is not None else f"DT_<{enum}>"


def type_string(enum: int) -> str:
    """TensorFlow's DataTypeString, which its messages use: "float" for DT_FLOAT, "half"
    for DT_HALF, and so on."""
    return dtype_name(enum).removeprefix("DT_").lower()


def numpy_dtype(enum: int) -> np.dtype | None:
    """The numpy dtype for a TF dtype enum, None if we do not support it."""
    entry = _DTYPES.get(enum)
    return entry[0] if entry else None


def dtype_enum(array: np.ndarray) -> int:
    """The TF dtype enum of a numpy array (strings are object or bytes arrays)."""
    if array.dtype.kind in ("O", "S", "U"):
        return DT_STRING
    return _BY_NUMPY.get(array.dtype, DT_INVALID)


def shape_text(dims: tuple[int, ...]) -> str:
    """A shape as TensorFlow's messages write it ("[2,3]": TensorShape::DebugString, and
    json_tensor.cc's ShapeToString)."""
    return "[" + ",".join(map(str, dims)) + "]"


def _debug_string(dims: tuple[int, ...]) -> str:
    """`shape_text`, shortened past a few dimensions (a refused shape may have thousands)."""
    if len(dims) > _SHOWN_DIMS:
        return shape_text(dims[:_SHOWN_DIMS])[:-1] + f",...] ({len(dims)} dimensions)"
    return shape_text(dims)


def _shape(name: str, proto: protos.TensorShapeProto) -> tuple[tuple[int, ...], int]:
    """The dimensions and element count of a request tensor's shape, checked as
    TensorShape::IsValidShape checks it (tensor_shape.cc) and for what numpy can hold."""
    if proto.unknown_rank:
        raise invalid(f"input '{name}': tensor_shape has unknown rank")
    dims = tuple([d.size for d in proto.dim])
    if len(dims) > MAX_RANK:
        # TF's own limit is 254; shapes between the two are valid there and refused here.
        limit = f"at most {MAX_RANK} are supported" + (
            "" if len(dims) > TF_MAX_RANK else f" (TensorFlow allows {TF_MAX_RANK})"
        )
        raise invalid(
            f"input '{name}': Shape {_debug_string(dims)} has too many dimensions; {limit}"
        )
    if any(d < 0 for d in dims):
        raise invalid(
            f"input '{name}': tensor_shape {_debug_string(dims)} has a negative dimension"
        )
    # Python ints: a claimed shape may exceed 2**63 elements; also ~10x cheaper than np.prod.
    count = math.prod(dims)
    if count > _INDEX_MAX or (count == 0 and len(dims) > 1):
        # TF multiplies in order and refuses the shape once the running product overflows
        # int64, so [0, 2**40, 2**40] is valid there while [2**40, 2**40, 0] is not.
        product = 1
        for size in dims:
            product *= size
            if product > _INDEX_MAX:
                raise invalid(
                    f"input '{name}': Shape {_debug_string(dims)} is too large "
                    "(more than 2**63 - 1 entries)"
                )
    return dims, count


def to_numpy(name: str, proto: protos.TensorProto) -> np.ndarray:
    """Decode one request TensorProto; INVALID_ARGUMENT naming `name` if malformed."""
    entry = _DTYPES.get(proto.dtype)
    if entry is None:
        raise invalid(f"input '{name}': unsupported dtype {dtype_name(proto.dtype)}")
    dtype, field = entry
    shape, count = _shape(name, proto.tensor_shape)
    if count * max(dtype.itemsize, 1) > MAX_TENSOR_BYTES:
        raise invalid(
            f"input '{name}': Shape {_debug_string(shape)} of {dtype_name(proto.dtype)} is "
            f"larger than {MAX_TENSOR_BYTES} bytes"
        )
    if count == 0 and math.prod(d for d in shape if d) * max(dtype.itemsize, 1) > _INDEX_MAX:
        # A valid empty shape for TF, but numpy multiplies the non-zero dimensions (in bytes)
        # and cannot index past int64, so no array has it.
        raise invalid(
            f"input '{name}': Shape {_debug_string(shape)} cannot be held: its non-zero "
            "dimensions multiply past 2**63 - 1 bytes"
        )
    if count == 0:  # Tensor::FromProto reads no values at all for an empty shape
        return np.empty(shape, dtype=dtype)
    content = proto.tensor_content  # each read copies the bytes out of the message: once
    if content:
        if dtype.kind == "O":
            return _string_list(name, content, count).reshape(shape)
        expected = count * dtype.itemsize
        if len(content) != expected:
            raise invalid(
                f"input '{name}': tensor_content has {len(content)} bytes, "
                f"expected {expected} for shape {list(shape)} of {dtype_name(proto.dtype)}"
            )
        return np.frombuffer(content, dtype=dtype).reshape(shape)
    values = getattr(proto, field)
    given = len(values)
    if given == 0 and count:
        stray = [f for f in _VALUE_FIELDS if f != field and len(getattr(proto, f))]
        if stray:
            raise invalid(
                f"input '{name}': dtype {dtype_name(proto.dtype)} takes its values from "
                f"{field}, but the tensor has {stray[0]}"
            )
    # TensorFlow's FromProtoField: values past the element count are ignored, and a short
    # list is filled with its last value (zeros if it has none).
    if dtype.kind == "O":
        flat = np.empty(min(given, count), dtype=object)
        flat[:] = list(values[:count])
    elif proto.dtype in _PACKED_FIXED:
        flat = _packed_fixed_values(proto)[:count]
    elif field in ("int_val", "half_val"):
        # Narrower types are static_cast from the int32 field: out-of-range values wrap.
        wide = np.array(values[:count], dtype=np.int64)
        flat = (
            wide.astype(np.uint16).view(np.float16) if field == "half_val" else wide.astype(dtype)
        )
    else:
        flat = np.array(values[:count], dtype=dtype)
    if len(flat) == count:
        return flat.reshape(shape)
    full = np.empty(count, dtype=dtype) if dtype.kind == "O" else np.zeros(count, dtype=dtype)
    if dtype.kind == "O":
        full[:] = b""
    if given:
        full[:given] = flat
        full[given:] = flat[-1]
    return full.reshape(shape)


# Packed repeated fixed-width fields of TensorProto whose wire bytes are the array's own
# little-endian bytes: (field number, numpy dtype).
_PACKED_FIXED = {
    _DT["DT_FLOAT"]: (5, np.dtype("<f4")),
    _DT["DT_DOUBLE"]: (6, np.dtype("<f8")),
}


_ONE_BYTE_VARINTS = [bytes((value,)) for value in range(0x80)]


def _varint(value: int) -> bytes:
    if value < 0x80:  # tags, small lengths and dimensions: most varints written
        return _ONE_BYTE_VARINTS[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _string_list(name: str, content: bytes, count: int) -> np.ndarray:
    """A DT_STRING tensor_content as TensorFlow encodes it (port::EncodeStringList): each
    string's length as a varint, then the strings' bytes."""
    lengths, pos = [], 0
    try:
        if count > len(content):  # every length takes a byte at least
            raise IndexError
        for _ in range(count):
            length, pos = _read_varint(content, pos)
            lengths.append(length)
    except IndexError:
        raise invalid(f"input '{name}': tensor_content holds fewer than {count} strings") from None
    if sum(lengths) != len(content) - pos:
        raise invalid(
            f"input '{name}': tensor_content's {count} string lengths add up to "
            f"{sum(lengths)} bytes, not the {len(content) - pos} that follow them"
        )
    strings = np.empty(count, dtype=object)
    for index, length in enumerate(lengths):
        strings[index] = content[pos : pos + length]
        pos += length
    return strings


def _string_content(strings: list[bytes]) -> bytes:
    """port::EncodeStringList, as Tensor::AsProtoTensorContent writes a DT_STRING tensor."""
    return b"".join(map(_varint, map(len, strings))) + b"".join(strings)


def _packed_fixed_values(proto: protos.TensorProto) -> np.ndarray:
    """`float_val` or `double_val` read from the message's wire bytes.

    Iterating the repeated field makes a Python float per element: ~35 µs for one 32x32
    image, 15% of the server's interpreter time at 64 clients. Serializing the message is a
    copy, and the packed field's payload is the values' little-endian bytes.
    """
    number, wire_dtype = _PACKED_FIXED[proto.dtype]
    data = proto.SerializeToString()
    chunks, pos = [], 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire = key >> 3, key & 7
        start = pos
        if wire == 0:
            _, pos = _read_varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, start = _read_varint(data, pos)
            pos = start + length
        elif wire == 5:
            pos += 4
        else:  # a message protobuf itself just serialized has no other wire types
            raise ServingError(grpc.StatusCode.INTERNAL, f"unexpected wire type {wire}")
        if field == number:  # packed (wire type 2) or, never written so today, one value
            chunks.append(data[start:pos])
    return np.frombuffer(b"".join(chunks), dtype=wire_dtype).astype(
        wire_dtype.newbyteorder("="), copy=False
    )


def length_delimited_head(number: int, length: int) -> bytes:
    """The wire-format head of a length-delimited field (tag, then length): bytes follow."""
    return _varint(number << 3 | 2) + _varint(length)


# TensorProto fields written by hand (all wire type 2 but dtype) and TensorShapeProto's.
_DTYPE_TAG = bytes([1 << 3])  # TensorProto.dtype, a varint
_TENSOR_SHAPE, _TENSOR_CONTENT = 2, 4
_SHAPE_DIM, _DIM_SIZE_TAG = 2, bytes([1 << 3])  # TensorShapeProto.dim, Dim.size (a varint)


@functools.lru_cache(maxsize=1024)
def _head(enum: int, shape: tuple[int, ...]) -> bytes:
    """`dtype` and `tensor_shape` of a TensorProto, as wire bytes (few distinct per model)."""
    dims = b"".join(
        length_delimited_head(_SHAPE_DIM, len(dim)) + dim
        for dim in (_DIM_SIZE_TAG + _varint(size) if size else b"" for size in shape)
    )
    # TF Serving writes tensor_shape for a scalar too (TensorShape::AsProto): present, empty.
    return _DTYPE_TAG + _varint(enum) + length_delimited_head(_TENSOR_SHAPE, len(dims)) + dims


def tensor_parts(array: np.ndarray, *, as_content: bool = False) -> list[bytes]:
    """An output array as TensorProto wire bytes, in parts whose concatenation is the message
    (a large payload stays one uncopied part), encoded as TF Serving encodes it.

    TF Serving writes outputs with Tensor::AsProtoField (`float_val`, `int64_val`, ...) unless
    started with --enable_serialization_as_tensor_content (predict_util.cc), which writes
    every dtype, strings too, with AsProtoTensorContent. Written by hand where the field's
    payload is the array's own bytes (tensor_content; packed float_val/double_val, where
    protobuf would make a Python float per value); the other value fields are serialized by
    protobuf.
    """
    array = np.asarray(array)
    enum = dtype_enum(array)
    if enum == DT_INVALID:
        raise ServingError(
            grpc.StatusCode.INTERNAL, f"cannot encode dtype {array.dtype} as a TensorProto"
        )
    head = _head(enum, array.shape)
    if not array.size:
        return [head]
    if enum == DT_STRING:
        strings = [v if isinstance(v, bytes) else str(v).encode() for v in array.ravel().tolist()]
        if as_content:
            payload = _string_content(strings)
            return [head + length_delimited_head(_TENSOR_CONTENT, len(payload)), payload]
        return [head, protos.TensorProto(string_val=strings).SerializeToString()]
    if as_content or enum in _PACKED_FIXED:
        number, wire_dtype = (_TENSOR_CONTENT, None) if as_content else _PACKED_FIXED[enum]
        payload = np.ascontiguousarray(array, dtype=wire_dtype).tobytes()
        return [head + length_delimited_head(number, len(payload)), payload]
    if enum == _DT["DT_HALF"]:
        values = protos.TensorProto(half_val=array.ravel().view(np.uint16).tolist())
    else:
        values = protos.TensorProto(**{_DTYPES[enum][1]: array.ravel().tolist()})
    return [head, values.SerializeToString()]


def from_numpy(
    array: np.ndarray, proto: protos.TensorProto | None = None, *, as_content: bool = False
) -> protos.TensorProto:
    """`array` encoded by `tensor_parts` into `proto` (a new TensorProto if None)."""
    proto = proto if proto is not None else protos.TensorProto()
    proto.MergeFromString(b"".join(tensor_parts(array, as_content=as_content)))
    return proto
