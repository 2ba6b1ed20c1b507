"""TF Serving's REST JSON, as tensorflow_serving/util/json_tensor.cc reads and writes it.

Bodies are parsed by RapidJSON itself. Predict takes row ("instances") or columnar
("inputs") tensors, `{"b64": ...}` for bytes, and answers "predictions" or "outputs";
Classify/Regress take "examples" (+ "context") as tf.Example features, each typed by its
first value. Every check, its order and its message text follow that file; float32 values
go back as the decimals TF Serving writes. Outputs named `*_bytes` (or not valid UTF-8)
come back base64-encoded.

A key repeated in one object is read both ways RapidJSON reads it: a named lookup
("instances", "signature_name", "b64", ...) finds the first, as FindMember; an instance
object or an Example is walked member by member, every copy included, as GetObject().
"""

import base64
import re

import grpc
import numpy as np
import rapidjson
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2

from tfsp.serving import tensors
from tfsp.serving.errors import ServingError, invalid
from tfsp.serving.json_text import debug_string, float32_values, json_type

_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
MAX_TENSOR_DIMS = 64  # numpy's limit (TF's TensorShape allows 254)
# python-rapidjson's errors: "Parse error at offset N: <RapidJSON's GetParseError_En text>".
_RAPIDJSON_ERROR = re.compile(r"Parse error at offset (\d+): (.*)", re.DOTALL)
_TRAILING = "The document root must not be followed by other values."


class _RepeatedKeyObject(dict):
    """A JSON object with a repeated key, as RapidJSON keeps it: every member.

    Lookups (`obj[key]`, `get`, `in`) give the first member, as FindMember does; `items()`
    gives every member in document order, repeats included, as GetObject() iterates, and
    its length is MemberCount(). items() rather than a new name, so that every reader that
    walks an object's members (json_text.debug_string's quotes included, as
    JsonValueToDebugString writes every member) sees the repeats. An object without a
    repeated key stays a plain dict.
    """

    __slots__ = ("_members",)

    def __init__(self, pairs: list) -> None:
        super().__init__()
        for key, value in pairs:
            self.setdefault(key, value)
        self._members = tuple(pairs)

    def items(self) -> tuple:  # type: ignore[override]
        """Every (key, value) member in document order, as GetObject() visits them."""
        return self._members


class _RapidJsonDocument(rapidjson.Decoder):
    """RapidJSON itself (python-rapidjson): its numbers (int64/uint64, else a double; "Number
    too big to be stored in double"), NaN/Inf/Infinity, surrogate checks and error texts.

    RapidJSON's DOM keeps every member of an object, a repeated key included; such an
    object becomes a _RepeatedKeyObject, any other a plain dict.
    """

    def start_object(self) -> list:
        return []

    def end_object(self, pairs: list) -> dict:
        members: dict = {}
        for key, value in pairs:
            members[key] = value
        # Equal lengths: no key repeats, so the plain dict is the whole object (the common
        # case pays for one dict and one comparison).
        return members if len(members) == len(pairs) else _RepeatedKeyObject(pairs)


_rapidjson_loads = _RapidJsonDocument(number_mode=rapidjson.NM_NATIVE | rapidjson.NM_NAN)


def parse_body(body: bytes | bytearray) -> dict:
    """The request's JSON object, parsed as TF Serving parses it (json_tensor.cc ParseJson).

    RapidJSON with kParseNanAndInfFlag | kParseStopWhenDoneFlag: NaN and infinities are
    numbers, and bytes after the first complete JSON value are ignored. A parse error reads
    "JSON Parse error: <RapidJSON's text> at offset: <byte>", as there. Two refusals are
    ours: a body that is not UTF-8, and JSON nested more than 1,000 deep.
    """
    if not body:
        raise invalid("JSON Parse error: The document is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(
            f"JSON Parse error: the body is not valid UTF-8 (at byte offset {exc.start})"
        ) from None
    try:
        value = _rapidjson_loads(text)
    except RecursionError:
        raise invalid("JSON Parse error: the document is nested too deeply") from None
    except rapidjson.JSONDecodeError as exc:
        match = _RAPIDJSON_ERROR.fullmatch(str(exc))
        if match is None:
            raise invalid(f"JSON Parse error: {exc}") from None
        offset, message = int(match[1]), match[2]
        if message != _TRAILING:
            raise invalid(f"JSON Parse error: {message} at offset: {offset}") from None
        # kParseStopWhenDoneFlag: the document ended where the trailing value starts.
        value = _rapidjson_loads(body[:offset].decode("utf-8"))
    if not isinstance(value, dict):
        raise _format_error(value, "Is not object")
    return value


def may_hold_booleans(body: bytes | bytearray) -> bool:
    """False if the body cannot hold a JSON true/false (so numeric inputs need no scan)."""
    return b"true" in body or b"false" in body


def _format_error(doc: object, *message: str) -> ServingError:
    # json_tensor.cc FormatError: the offending JSON (here the whole body), then the text.
    return invalid(f"JSON Value: {debug_string(doc)} " + "".join(message))


def signature_name(body: dict) -> str:
    """The optional "signature_name" key (json_tensor.cc FillSignature)."""
    name = body.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid(
            f"JSON Value: {debug_string(body)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


# ---- Predict: JSON to tensors (json_tensor.cc FillPredictRequestFromJson) ----

_INT32 = (-(2**31), 2**31 - 1)
# What a JSON value must be for each dtype (AddValueToTensor: IsNumber, IsInt, ...). The
# narrow integer types take any int32, as TF Serving does: Tensor::FromProto casts it.
_INT_RANGES = {
    "DT_INT32": _INT32,
    "DT_INT16": _INT32,
    "DT_INT8": _INT32,
    "DT_UINT8": _INT32,
    "DT_INT64": (_INT64_MIN, 2**63 - 1),
    "DT_UINT32": (0, 2**32 - 1),
    "DT_UINT64": (0, _UINT64_MAX),
}
_JSON_DTYPES = {"DT_FLOAT", "DT_DOUBLE", "DT_STRING", "DT_BOOL", *_INT_RANGES}


def _is_b64(value: object) -> bool:
    """json_tensor.cc IsValBase64Object: an object whose one member, "b64", holds a string.

    Its MemberCount() counts a repeated key each time, so `{"b64": .., "b64": ..}` is not
    base64 data (len(items()), not len()).
    """
    return isinstance(value, dict) and len(value.items()) == 1 and isinstance(value.get("b64"), str)


_ASCII_SPACE = {ord(c): None for c in " \t\n\v\f\r"}
_BASE64_DATA = re.compile(r"[A-Za-z0-9+/]*")
_PADDING_AFTER = {0: 0, 2: 2, 3: 1}  # data characters mod 4 -> the '=' that complete them


def _absl_base64(text: str) -> bytes | None:
    """absl::Base64Unescape, which TF Serving decodes "b64" with: whitespace anywhere is
    skipped, the padding ('=' or '.') may be left out, and nothing else may follow it."""
    compact = text.translate(_ASCII_SPACE)
    data = _BASE64_DATA.match(compact).group()  # type: ignore[union-attr]
    padding = compact[len(data) :]
    needed = _PADDING_AFTER.get(len(data) % 4)
    if needed is None or padding.strip("=.") or len(padding) not in (0, needed):
        return None
    return base64.b64decode(data + "=" * needed)


def _b64(value: object) -> bytes:
    if not _is_b64(value):
        raise invalid(f"JSON Value: {debug_string(value)} not formatted correctly for base64 data")
    decoded = _absl_base64(value["b64"])  # type: ignore[index]
    if decoded is None:
        raise invalid("Unable to base64 decode")
    return decoded


def _type_error(value: object, enum: int) -> ServingError:
    return invalid(
        f"JSON Value: {debug_string(value)} Type: {json_type(value)} "
        f"is not of expected type: {tensors.type_string(enum)}"
    )


def _leaf(value: object, enum: int, kind: str) -> object:
    """One JSON value as an element of a tensor of dtype `enum` (AddValueToTensor)."""
    if isinstance(value, dict):
        if kind == "DT_STRING":
            return _b64(value)
        raise _type_error(value, enum)
    if kind not in _JSON_DTYPES:
        raise ServingError(
            grpc.StatusCode.UNIMPLEMENTED,
            f"Conversion of JSON Value: {debug_string(value)} to type: {tensors.type_string(enum)}",
        )
    if kind == "DT_STRING":
        if isinstance(value, str):
            return value.encode()
    elif kind == "DT_BOOL":
        if isinstance(value, bool):
            return value
    elif isinstance(value, bool) or not isinstance(value, int | float):
        pass
    elif kind in ("DT_FLOAT", "DT_DOUBLE"):
        return value
    elif isinstance(value, int):
        low, high = _INT_RANGES[kind]
        if low <= value <= high:
            return value
    raise _type_error(value, enum)


def _dense_shape(value: object) -> list[int]:
    """json_tensor.cc GetDenseTensorShape: the sizes of the first list at each depth."""
    shape: list[int] = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _exact_tensor(value: object, enum: int) -> np.ndarray:
    """A JSON value as a tensor, every value checked as FillTensorProto checks it."""
    kind = tensors.dtype_name(enum)
    shape = _dense_shape(value)
    rank = len(shape)
    flat: list = []

    def fill(item: object, level: int) -> None:
        if not isinstance(item, list):
            if level != rank:
                raise invalid(
                    f"JSON Value: {debug_string(item)} found at incorrect level: {level + 1} "
                    f"in the JSON DOM. Expected at level: {rank}"
                )
            flat.append(_leaf(item, enum, kind))
            return
        if level >= rank:
            raise invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
        if len(item) != shape[level]:
            raise invalid(
                f"Encountered list at unexpected size: {len(item)} at level: {level} "
                f"expected size: {shape[level]}"
            )
        for child in item:
            fill(child, level + 1)

    fill(value, 0)
    return _array(flat, shape, enum)


def _array(flat: list, shape: list[int], enum: int) -> np.ndarray:
    dtype = tensors.numpy_dtype(enum)
    if dtype is None:  # an empty tensor of a dtype neither JSON nor our codec carries
        raise invalid(f"dtype {tensors.dtype_name(enum)} is not supported")
    if dtype.kind == "O":
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    if dtype.kind in "iu" and dtype.itemsize < 4:
        # int8/int16/uint8 take an int32 and wrap, as Tensor::FromProto's cast does.
        return np.array(flat, dtype=np.int64).astype(dtype).reshape(shape)
    with np.errstate(over="ignore"):  # a double past float32's range is inf, as in C++
        return np.array(flat, dtype=dtype).reshape(shape)


# numpy kinds a fast conversion may accept for each dtype kind; anything else (a bool among
# numbers, a string, null, an object, a ragged list) goes to the exact check for its message.
_FAST_KINDS = {"f": "fiu", "i": "iu", "u": "iu", "b": "b"}


def _fast_tensor(value: object, enum: int, *, may_hold_booleans: bool) -> np.ndarray | None:
    """A JSON value of numbers or booleans as a tensor through numpy at once, when the result
    is certain to be what TF Serving makes of it; None when in any doubt."""
    kind = tensors.dtype_name(enum)
    dtype = tensors.numpy_dtype(enum)
    if dtype is None or dtype.kind not in _FAST_KINDS or kind not in _JSON_DTYPES:
        return None
    try:
        raw = np.array(value)
    except (ValueError, OverflowError):  # ragged, or an int numpy cannot hold
        return None
    if raw.dtype.kind not in _FAST_KINDS[dtype.kind]:
        return None
    if raw.dtype.kind != "b" and may_hold_booleans and _holds_boolean(value):
        return None
    if raw.dtype.kind not in "iu" or dtype.kind == "f":
        with np.errstate(over="ignore"):  # a double past float32's range is inf, as in C++
            return raw.astype(dtype)
    low, high = _INT_RANGES[kind]
    if raw.size and not (low <= raw.min() and raw.max() <= high):
        return None
    return _array(raw.ravel().tolist(), list(raw.shape), enum)


# numpy holds 64 dimensions; TF's TensorShape 254 (a known difference, in the README).
_TOO_DEEP = f"lists nested more than {MAX_TENSOR_DIMS} deep (at most {MAX_TENSOR_DIMS})"


def _check_depth(value: object) -> None:
    if len(_dense_shape(value)) > MAX_TENSOR_DIMS:
        raise invalid(_TOO_DEEP)


def _tensor(value: object, enum: int, *, may_hold_booleans: bool) -> np.ndarray:
    """A JSON value as a tensor of dtype `enum`, or INVALID_ARGUMENT as TF Serving words it:
    numpy at once where that is certain, else the value-by-value check, which is the rule."""
    _check_depth(value)
    fast = _fast_tensor(value, enum, may_hold_booleans=may_hold_booleans)
    return fast if fast is not None else _exact_tensor(value, enum)


def _holds_boolean(value: object) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            if any(v is True or v is False for v in item):
                return True
            stack.extend(v for v in item if isinstance(v, list))
    return False


def _status_text(error: ServingError) -> str:
    # absl::Status::ToString, which TF Serving puts inside its per-element messages.
    return f"{error.code.name}: {error.message}"


def _instances(rows: list, infos: dict, *, may_hold_booleans: bool) -> dict[str, np.ndarray]:
    """json_tensor.cc FillTensorMapFromInstancesList: one tensor per input, rows stacked."""
    if not isinstance(rows[0], dict) and len(infos) > 1:
        raise invalid(
            "instances is a plain list, but expecting list of objects as multiple input "
            "tensors required as per tensorinfo_map"
        )
    objects = isinstance(rows[0], dict) and not _is_b64(rows[0])
    names = sorted(infos)
    # `type(row) is dict`: a row with a repeated key (a _RepeatedKeyObject) feeds every copy.
    if not objects or all(type(row) is dict and row.keys() == infos.keys() for row in rows):
        # Well-formed rows stack at once; any doubt takes the per-element rule below.
        columns = {n: [row[n] for row in rows] for n in names} if objects else {names[0]: rows}
        arrays = {
            name: _fast_tensor(column, infos[name].dtype, may_hold_booleans=may_hold_booleans)
            for name, column in columns.items()
        }
        if all(array is not None for array in arrays.values()):
            return arrays  # type: ignore[return-value]
    # A plain list fills one input, even where the signature has more (a list of b64
    # objects passes the check above): Predict then reports the missing inputs.
    parts: dict[str, list[np.ndarray]] = {name: [] for name in (names if objects else names[:1])}
    for index, row in enumerate(rows):
        if objects != (isinstance(row, dict) and not _is_b64(row)):
            raise invalid(
                f"Expecting object but got list at item {index} of input list"
                if objects
                else f"Expecting value/list but got object at item {index} of input list"
            )
        # Every member, a repeated key each time (GetObject()): each copy is checked against
        # the input's first size and shape, and appends its values to the same tensor.
        items = row.items() if objects else [(names[0], row)]
        for name, value in items:
            try:
                if name not in infos:
                    raise invalid(f"JSON object: does not have named input: {name}")
                item = _tensor(value, infos[name].dtype, may_hold_booleans=may_hold_booleans)
                if item.ndim >= MAX_TENSOR_DIMS:  # stacking the rows adds one
                    raise invalid(_TOO_DEEP)
                if parts[name] and (first := parts[name][0]).shape != item.shape:
                    raise invalid(
                        f"Expecting tensor size: {first.size} but got: {item.size}"
                        if first.size != item.size
                        else f"Expecting shape {tensors.shape_text(first.shape)} "
                        f"but got: {tensors.shape_text(item.shape)}"
                    )
            except ServingError as exc:
                key = f" key: {name}" if objects else ""
                raise invalid(
                    f"Failed to process element: {index}{key} of 'instances' list. "
                    f"Error: {_status_text(exc)}"
                ) from None
            parts[name].append(item)
        if objects and set(row) != set(names):
            raise invalid(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{debug_string(row)} keys must be equal to: {','.join(names)}"
            )
    # The tensor's shape is [rows, ...] whatever number of copies filled it, and
    # Tensor::FromProto reads only that many values: the first len(rows) items, which a
    # repeated key shifts (rows [{x: 1, x: 2}, {x: 3}] give x = [1, 2]).
    return {name: np.stack(arrays[: len(rows)]) for name, arrays in parts.items()}


def _inputs(columns: object, infos: dict, *, may_hold_booleans: bool) -> dict[str, np.ndarray]:
    """json_tensor.cc FillTensorMapFromInputsMap: one value per input; other keys ignored."""
    if not isinstance(columns, dict) or _is_b64(columns):
        if len(infos) > 1:
            raise invalid(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map"
            )
        ((name, info),) = infos.items()
        return {name: _tensor(columns, info.dtype, may_hold_booleans=may_hold_booleans)}
    arrays = {}
    for name in sorted(infos):
        if name not in columns:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = _tensor(
            columns[name], infos[name].dtype, may_hold_booleans=may_hold_booleans
        )
    return arrays


def predict_inputs(
    body: dict, infos: dict[str, meta_graph_pb2.TensorInfo], *, may_hold_booleans: bool = True
) -> tuple[dict[str, np.ndarray], str]:
    """Decode "instances" (row) or "inputs" (columnar); returns (arrays, format).

    Checks and messages are json_tensor.cc's. `may_hold_booleans=False` (the body has no
    true/false) skips the scan for booleans mixed into numbers.
    """
    options = {"may_hold_booleans": may_hold_booleans}
    if "instances" in body:
        if "inputs" in body:
            raise _format_error(
                body,
                "Not formatted correctly expecting only one of 'inputs' or 'instances' keys "
                "to exist ",
            )
        rows = body["instances"]
        if not isinstance(rows, list):
            raise _format_error(body, "Expecting 'instances' to be an list/array")
        if not rows:
            raise _format_error(body, "No values in 'instances' array")
        return _instances(rows, infos, **options), "row"
    if "inputs" in body:
        return _inputs(body["inputs"], infos, **options), "columnar"
    raise invalid("Missing 'inputs' or 'instances' key")


# ---- Predict: tensors to JSON (json_tensor.cc MakeJsonFromTensors) ----


def _json_values(name: str, array: np.ndarray) -> object:
    enum = tensors.dtype_enum(array)
    kind = tensors.dtype_name(enum)
    if array.size and kind not in _JSON_DTYPES:
        raise invalid(f"Failed to write JSON value for tensor type: {tensors.type_string(enum)}")
    if kind == "DT_FLOAT":
        return float32_values(array)
    if array.dtype.kind == "O":
        as_b64 = name.endswith("_bytes")

        def encode(value: bytes) -> object:
            if not as_b64:
                try:
                    return value.decode()
                except UnicodeDecodeError:
                    pass
            return {"b64": base64.b64encode(value).decode()}

        flat = [encode(v) for v in array.ravel().tolist()]
        return np.array(flat + [None], dtype=object)[:-1].reshape(array.shape).tolist()
    return array.tolist()


def predict_response(outputs: dict[str, np.ndarray], fmt: str) -> dict:
    """{"predictions": ...} for row requests, {"outputs": ...} for columnar ones."""
    if not outputs:
        raise invalid("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if fmt == "columnar":
        if len(names) == 1:
            return {"outputs": _json_values(names[0], outputs[names[0]])}
        return {"outputs": {name: _json_values(name, outputs[name]) for name in names}}
    batch = None
    for name in names:
        array = outputs[name]
        if array.ndim == 0:
            raise invalid(f"Tensor name: {name} has no shape information ")
        if batch is not None and array.shape[0] != batch:
            raise invalid(
                f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} "
                f"expecting: {batch}"
            )
        batch = array.shape[0]
    if len(names) == 1:
        return {"predictions": _json_values(names[0], outputs[names[0]])}
    columns = {name: _json_values(name, outputs[name]) for name in names}
    return {"predictions": [{n: columns[n][i] for n in names} for i in range(batch)]}


# ---- Classify and Regress (json_tensor.cc FillClassifyRegressRequestFromJson) ----

_FEATURE_KINDS = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}


def _add_to_feature(value: object, name: str, feature: feature_pb2.Feature) -> None:
    """json_tensor.cc AddValueToFeature: the first value fixes the list's kind."""
    if value is None or isinstance(value, list) or (isinstance(value, dict) and not _is_b64(value)):
        raise invalid(f"Feature: {name} has element with unexpected JSON type: {json_type(value)}")
    if isinstance(value, str | dict):
        kind = "bytes_list"
    elif isinstance(value, float):
        kind = "float_list"
    else:  # an integer, true or false
        if not isinstance(value, bool) and value > 2**63 - 1:
            raise invalid(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        kind = "int64_list"
    held = feature.WhichOneof("kind")
    if held not in (None, kind):
        raise invalid(
            f"Unexpected element type in feature: {name} expecting type: {_FEATURE_KINDS[held]}"
        )
    if isinstance(value, str):
        item: object = value.encode()
    elif isinstance(value, dict):
        item = _b64(value)
    else:
        item = int(value) if kind == "int64_list" else value
    getattr(feature, kind).value.append(item)


def _example(value: object) -> example_pb2.Example:
    """json_tensor.cc MakeExampleFromJsonObject."""
    if not isinstance(value, dict):
        raise invalid(f"Example must be JSON object but got JSON {json_type(value)}")
    example = example_pb2.Example()
    # Every member, a repeated name each time: each copy is checked, starts a fresh
    # Feature and replaces the earlier in the map, so the last copy is the feature.
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if isinstance(content, list) else [content]:
            _add_to_feature(item, name, feature)
        example.features.feature[name].CopyFrom(feature)
    return example


def examples_input(body: dict) -> input_pb2.Input:
    """Classify/Regress "examples" (+ "context") as the `Input` proto gRPC carries.

    A feature in both the context and an example is the example's, as TF Serving merges
    them (the context's bytes, then the example's).
    """
    inp = input_pb2.Input()
    context = _example(body["context"]) if "context" in body else None
    if "examples" not in body:
        raise _format_error(
            body, "When method is classify, key 'examples' is expected and was not found"
        )
    examples = body["examples"]
    if not isinstance(examples, list):
        raise _format_error(body, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(body, "'examples' value is an empty array")
    if context is not None:
        inp.example_list_with_context.context.CopyFrom(context)
        target = inp.example_list_with_context.examples
    else:
        target = inp.example_list.examples
    for item in examples:
        target.add().CopyFrom(_example(item))
    return inp


def classify_response(result: classification_pb2.ClassificationResult) -> dict:
    """{"results": [[[label, score], ...], ...]} (kClassifyRegressResponseKey in json_tensor.cc)."""
    if not result.classifications:
        raise invalid("Cannot convert empty ClassificationResults to JSON")
    # Every score through WriteDecimal's rule in one pass, not one array per class.
    scores = iter(
        float32_values(
            np.array([c.score for item in result.classifications for c in item.classes], np.float32)
        )
    )
    return {
        "results": [
            [[c.label, next(scores)] for c in item.classes] for item in result.classifications
        ]
    }


def regress_response(result: regression_pb2.RegressionResult) -> dict:
    """{"results": [value, ...]}."""
    if not result.regressions:
        raise invalid("Cannot convert empty RegressionResults to JSON")
    return {"results": float32_values(np.array([r.value for r in result.regressions], np.float32))}
