"""TF Serving's REST JSON formats: request bodies to arrays/Examples, results back to JSON.

Row ("instances") and columnar ("inputs") Predict requests; `{"b64": ...}` for bytes;
outputs named `*_bytes` (or not valid UTF-8) come back base64-encoded; Classify/Regress
take "examples" (+ optional "context") turned into tf.Example features: whole numbers become
int64_list, any decimal float_list, strings bytes_list, as TF Serving does.
"""

import base64
import binascii
import json
import math
import re

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2

from tfsp.serving import tensors
from tfsp.serving.errors import invalid

# TF Serving parses with RapidJSON (json_tensor.cc ParseJson: kParseIterativeFlag |
# kParseNanAndInfFlag | kParseStopWhenDoneFlag), which refuses a number a double cannot
# hold ("Number too big to be stored in double"), while Python's float() quietly makes it
# inf. Only a number with a 3-digit exponent or 20 digits in a row can overflow (or not
# fit int64/uint64), so the costlier hooked decoder runs only when the body has one.
_MAYBE_BIG_NUMBER = re.compile(rb"[eE][-+]?[0-9]{3}|[0-9]{20}")
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SURROGATE = re.compile("[\ud800-\udfff]")
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
MAX_TENSOR_DIMS = 64  # numpy's limit (TF's TensorShape allows 254)


class _NumberTooBig(ValueError):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _rapidjson_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NumberTooBig(text)
    return value


def _rapidjson_int(text: str) -> int | float:
    # RapidJSON keeps an integer that fits int64 or uint64 and makes any other a double.
    if len(text) <= 21:
        value = int(text)
        if _INT64_MIN <= value <= _UINT64_MAX:
            return value
    return _rapidjson_float(text)


_DECODER = json.JSONDecoder()
_BIG_NUMBER_DECODER = json.JSONDecoder(parse_float=_rapidjson_float, parse_int=_rapidjson_int)


def _lone_surrogate(value: object) -> str | None:
    """The first string (key or value) in `value` holding a lone UTF-16 surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return item
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def parse_body(body: bytes | bytearray) -> dict:
    """The request's JSON object, parsed as TF Serving's RapidJSON settings do.

    NaN/Infinity are allowed and bytes after the first complete JSON value are ignored
    (kParseStopWhenDoneFlag); a number too big for a double, a lone surrogate escape, JSON
    nested deeper than Python's parser goes, or a body that is not UTF-8 is a 400.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(
            f"JSON Parse error: the body is not valid UTF-8 (at byte offset {exc.start})"
        ) from None
    start = _WHITESPACE.match(text).end()  # type: ignore[union-attr]
    if start == len(text):
        raise invalid("JSON Parse error: The document is empty")
    decoder = _BIG_NUMBER_DECODER if _MAYBE_BIG_NUMBER.search(body) else _DECODER
    try:
        value, _ = decoder.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise invalid(f"JSON Parse error: {exc.msg} at offset: {exc.pos}") from None
    except _NumberTooBig as exc:
        raise invalid(
            f"JSON Parse error: Number too big to be stored in double: {exc.text[:40]}"
        ) from None
    except RecursionError:
        raise invalid("JSON Parse error: the document is nested too deeply") from None
    except ValueError as exc:  # e.g. Python's int-string digit limit
        raise invalid(f"JSON Parse error: a number cannot be read ({str(exc)[:80]})") from None
    if "\\u" in text and (bad := _lone_surrogate(value)) is not None:
        raise invalid(
            f"JSON Parse error: The surrogate pair in string is invalid: {json.dumps(bad)[:40]}"
        )
    if not isinstance(value, dict):
        raise invalid("JSON Parse error: the request body must be a JSON object")
    return value


def may_hold_booleans(body: bytes | bytearray) -> bool:
    """False if the body cannot hold a JSON true/false (so numeric inputs need no scan)."""
    return b"true" in body or b"false" in body


def signature_name(body: dict) -> str:
    """The optional "signature_name" key."""
    name = body.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid("'signature_name' key must be a string value.")
    return name


def _is_b64(value: object) -> bool:
    return isinstance(value, dict) and list(value) == ["b64"]


def _b64(name: str, value: dict) -> bytes:
    text = value["b64"]
    if not isinstance(text, str):
        raise invalid(f"input '{name}': 'b64' must hold a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"input '{name}': 'b64' value is not valid base64") from None


def _string_leaves(name: str, value: object) -> object:
    if isinstance(value, list):
        return [_string_leaves(name, item) for item in value]
    if isinstance(value, str):
        return value.encode()
    if _is_b64(value):
        return _b64(name, value)
    raise invalid(f"input '{name}': {json.dumps(value)[:50]} is not of expected type: string")


def _shape_of(value: object) -> list[int]:
    shape: list[int] = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _to_string_array(name: str, value: object) -> np.ndarray:
    leaves = _string_leaves(name, value)
    shape = _shape_of(leaves)
    flat: list[bytes] = []

    def walk(item: object, depth: int) -> None:
        if depth == len(shape):
            if isinstance(item, list):
                raise invalid(f"input '{name}': ragged nested lists")
            flat.append(item)  # type: ignore[arg-type]
            return
        if not isinstance(item, list) or len(item) != shape[depth]:
            raise invalid(f"input '{name}': ragged nested lists")
        for child in item:
            walk(child, depth + 1)

    walk(leaves, 0)
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)


_KINDS = {"f": "iu", "i": "iu", "u": "iu", "b": ""}
_JSON_TYPE = {"f": "float", "i": "int", "u": "unsigned int", "b": "bool"}


def _holds_boolean(value: object) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            if any(v is True or v is False for v in item):
                return True
            stack.extend(v for v in item if isinstance(v, list))
    return False


def to_array(
    name: str, value: object, info: meta_graph_pb2.TensorInfo, *, may_hold_booleans: bool = True
) -> np.ndarray:
    """A JSON (nested) value as the array the signature input `info` expects.

    As json_tensor.cc AddValueToTensor: numeric inputs take numbers only (a JSON true/false
    is refused, not read as 1/0), bool inputs take true/false only. `may_hold_booleans=False`
    (the body has no true/false) skips the scan for booleans mixed into numbers.
    """
    dtype = tensors.numpy_dtype(info.dtype)
    if dtype is None:
        raise invalid(f"input '{name}': dtype {tensors.dtype_name(info.dtype)} is not supported")
    if len(_shape_of(value)) > MAX_TENSOR_DIMS:
        raise invalid(
            f"input '{name}': lists nested more than {MAX_TENSOR_DIMS} deep "
            f"(at most {MAX_TENSOR_DIMS} dimensions)"
        )
    if dtype.kind == "O":
        return _to_string_array(name, value)
    try:
        raw = np.array(value)
    except ValueError:
        raise invalid(f"input '{name}': ragged nested lists") from None
    accepted = _KINDS[dtype.kind] + dtype.kind
    expected = f"{_JSON_TYPE[dtype.kind]} ({tensors.dtype_name(info.dtype)})"
    if raw.size and raw.dtype.kind not in accepted:
        shown = json.dumps(value)[:60] if raw.size < 8 else "a value"
        raise invalid(f"input '{name}': {shown} is not of expected type: {expected}")
    # numpy turns [1.5, true] into floats: find booleans mixed into numbers ourselves.
    if dtype.kind != "b" and raw.size and may_hold_booleans and _holds_boolean(value):
        raise invalid(
            f"input '{name}': a JSON boolean (true/false) is not of expected type: {expected}"
        )
    if dtype.kind in "iu" and raw.size:
        info_range = np.iinfo(dtype)
        if raw.min() < info_range.min or raw.max() > info_range.max:
            raise invalid(f"input '{name}': a value is out of range for {dtype.name}")
    return raw.astype(dtype)


def predict_inputs(
    body: dict, infos: dict[str, meta_graph_pb2.TensorInfo], *, may_hold_booleans: bool = True
) -> tuple[dict[str, np.ndarray], str]:
    """Decode "instances" (row) or "inputs" (columnar); returns (arrays, format).

    `may_hold_booleans` as in `to_array` (False only if the body has no true/false).
    """

    def convert(name: str, value: object, info: meta_graph_pb2.TensorInfo) -> np.ndarray:
        return to_array(name, value, info, may_hold_booleans=may_hold_booleans)

    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows == has_columns:
        raise invalid(
            "Missing 'inputs' or 'instances' key"
            if not has_rows
            else "Not both of 'instances' and 'inputs' can be specified"
        )
    if has_rows:
        rows = body["instances"]
        if not isinstance(rows, list):
            raise invalid("'instances' must be a JSON list")
        if rows and all(isinstance(r, dict) and not _is_b64(r) for r in rows):
            names = set(infos)
            for row in rows:
                if set(row) != names:
                    raise invalid(
                        f"instance has inputs {sorted(row)}, the signature expects {sorted(names)}"
                    )
            return {n: convert(n, [row[n] for row in rows], infos[n]) for n in infos}, "row"
        if len(infos) != 1:
            raise invalid(
                "instances is a plain list, but expecting list of objects as multiple input "
                f"tensors required as per the signature ({sorted(infos)})"
            )
        ((name, info),) = infos.items()
        return {name: convert(name, rows, info)}, "row"
    columns = body["inputs"]
    if isinstance(columns, dict) and not _is_b64(columns):
        unknown = sorted(set(columns) - set(infos))
        missing = sorted(set(infos) - set(columns))
        if unknown or missing:
            raise invalid(
                f"inputs {sorted(columns)} do not match the signature's {sorted(infos)}"
                f" (extra: {unknown}, missing: {missing})"
            )
        return {n: convert(n, columns[n], infos[n]) for n in infos}, "columnar"
    if len(infos) != 1:
        raise invalid(f"'inputs' is a single tensor but the signature expects {sorted(infos)}")
    ((name, info),) = infos.items()
    return {name: convert(name, columns, info)}, "columnar"


def _json_values(name: str, array: np.ndarray) -> object:
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
    if fmt == "columnar":
        if len(outputs) == 1:
            ((name, array),) = outputs.items()
            return {"outputs": _json_values(name, array)}
        return {"outputs": {name: _json_values(name, a) for name, a in outputs.items()}}
    if len(outputs) == 1:
        ((name, array),) = outputs.items()
        return {"predictions": _json_values(name, array)}
    sizes = {a.shape[0] if a.ndim else None for a in outputs.values()}
    if len(sizes) != 1 or None in sizes:
        raise invalid(
            "Tensors in the response have different 0th dimensions; "
            "use the columnar ('inputs') format"
        )
    columns = {name: _json_values(name, a) for name, a in outputs.items()}
    count = sizes.pop()
    return {"predictions": [{n: columns[n][i] for n in columns} for i in range(count)]}


def _feature(name: str, value: object) -> feature_pb2.Feature:
    values = value if isinstance(value, list) else [value]
    feature = feature_pb2.Feature()
    if not values:
        return feature
    if all(isinstance(v, str) or _is_b64(v) for v in values):
        feature.bytes_list.value.extend(
            _b64(name, v) if _is_b64(v) else v.encode()
            for v in values  # type: ignore[union-attr]
        )
    elif all(isinstance(v, int) for v in values):
        # true/false are int64 1/0 in a feature (json_tensor.cc AddValueToFeature).
        if any(not -(2**63) <= v < 2**63 for v in values):  # type: ignore[operator]
            raise invalid(f"feature '{name}': integer out of int64 range")
        feature.int64_list.value.extend(int(v) for v in values)  # type: ignore[arg-type]
    elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        feature.float_list.value.extend(float(v) for v in values)  # type: ignore[arg-type]
    else:
        raise invalid(
            f"feature '{name}': values must all be numbers or all be strings, got "
            f"{json.dumps(value)[:60]}"
        )
    return feature


def _example(obj: object, what: str) -> example_pb2.Example:
    if not isinstance(obj, dict):
        raise invalid(f"{what} must be a JSON object of features")
    example = example_pb2.Example()
    for name, value in obj.items():
        example.features.feature[name].CopyFrom(_feature(name, value))
    return example


def examples_input(body: dict) -> input_pb2.Input:
    """Classify/Regress "examples" (+ "context") as the `Input` proto gRPC carries."""
    examples = body.get("examples")
    if not isinstance(examples, list):
        raise invalid("'examples' must be a JSON list of objects")
    inp = input_pb2.Input()
    if "context" in body:
        context = _example(body["context"], "'context'")
        target = inp.example_list_with_context
        target.context.CopyFrom(context)
        for item in examples:
            example = _example(item, "each example")
            overlap = set(example.features.feature) & set(context.features.feature)
            if overlap:
                raise invalid(f"features {sorted(overlap)} appear in both context and examples")
            target.examples.add().CopyFrom(example)
    else:
        for item in examples:
            inp.example_list.examples.add().CopyFrom(_example(item, "each example"))
    return inp


def classify_response(result: classification_pb2.ClassificationResult) -> dict:
    """{"results": [[[label, score], ...], ...]} (kClassifyRegressResponseKey in json_tensor.cc)."""
    return {
        "results": [[[c.label, c.score] for c in item.classes] for item in result.classifications]
    }


def regress_response(result: regression_pb2.RegressionResult) -> dict:
    """{"results": [value, ...]}."""
    return {"results": [r.value for r in result.regressions]}
