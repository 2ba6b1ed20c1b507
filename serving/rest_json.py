"""TF Serving's REST JSON formats: request bodies to arrays/Examples, results back to JSON.

Row ("instances") and columnar ("inputs") Predict requests; `{"b64": ...}` for bytes;
outputs named `*_bytes` (or not valid UTF-8) come back base64-encoded; Classify/Regress
take "examples" (+ optional "context") turned into tf.Example features: whole numbers become
int64_list, any decimal float_list, strings bytes_list, as TF Serving does.
"""

import base64
import binascii
import json

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2

from serving import tensors
from serving.errors import invalid


def parse_body(body: bytes) -> dict:
    """The request's JSON object (NaN/Infinity allowed, as TF Serving documents)."""
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid(f"JSON Parse error: {exc}") from None
    if not isinstance(value, dict):
        raise invalid("JSON Parse error: the request body must be a JSON object")
    return value


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


def _shape_of(name: str, value: object) -> list[int]:
    shape: list[int] = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _to_string_array(name: str, value: object) -> np.ndarray:
    leaves = _string_leaves(name, value)
    shape = _shape_of(name, leaves)
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


def to_array(name: str, value: object, info: meta_graph_pb2.TensorInfo) -> np.ndarray:
    """A JSON (nested) value as the array the signature input `info` expects."""
    dtype = tensors.numpy_dtype(info.dtype)
    if dtype is None:
        raise invalid(f"input '{name}': dtype {tensors.dtype_name(info.dtype)} is not supported")
    if dtype.kind == "O":
        return _to_string_array(name, value)
    try:
        raw = np.array(value)
    except ValueError:
        raise invalid(f"input '{name}': ragged nested lists") from None
    accepted = _KINDS[dtype.kind] + dtype.kind
    if raw.size and raw.dtype.kind not in accepted:
        shown = json.dumps(value)[:60] if raw.size < 8 else "a value"
        raise invalid(
            f"input '{name}': {shown} is not of expected type: {_JSON_TYPE[dtype.kind]} "
            f"({tensors.dtype_name(info.dtype)})"
        )
    if dtype.kind in "iu" and raw.size:
        info_range = np.iinfo(dtype)
        if raw.min() < info_range.min or raw.max() > info_range.max:
            raise invalid(f"input '{name}': a value is out of range for {dtype.name}")
    return raw.astype(dtype)


def predict_inputs(
    body: dict, infos: dict[str, meta_graph_pb2.TensorInfo]
) -> tuple[dict[str, np.ndarray], str]:
    """Decode "instances" (row) or "inputs" (columnar); returns (arrays, format)."""
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
            return {n: to_array(n, [row[n] for row in rows], infos[n]) for n in infos}, "row"
        if len(infos) != 1:
            raise invalid(
                "instances is a plain list, but expecting list of objects as multiple input "
                f"tensors required as per the signature ({sorted(infos)})"
            )
        ((name, info),) = infos.items()
        return {name: to_array(name, rows, info)}, "row"
    columns = body["inputs"]
    if isinstance(columns, dict) and not _is_b64(columns):
        unknown = sorted(set(columns) - set(infos))
        missing = sorted(set(infos) - set(columns))
        if unknown or missing:
            raise invalid(
                f"inputs {sorted(columns)} do not match the signature's {sorted(infos)}"
                f" (extra: {unknown}, missing: {missing})"
            )
        return {n: to_array(n, columns[n], infos[n]) for n in infos}, "columnar"
    if len(infos) != 1:
        raise invalid(f"'inputs' is a single tensor but the signature expects {sorted(infos)}")
    ((name, info),) = infos.items()
    return {name: to_array(name, columns, info)}, "columnar"


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
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if any(not -(2**63) <= v < 2**63 for v in values):  # type: ignore[operator]
            raise invalid(f"feature '{name}': integer out of int64 range")
        feature.int64_list.value.extend(values)  # type: ignore[arg-type]
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
