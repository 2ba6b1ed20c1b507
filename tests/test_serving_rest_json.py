"""REST JSON as TF Serving's json_tensor.cc reads and writes it: which bodies it accepts,
the tensors and Examples it makes of them, its error texts word for word, and the numbers
it writes back. Every expected text below is built the way that file builds it (function
named beside each case), not copied from our own output.
"""

import base64
import json

import numpy as np
import pytest
import rapidjson
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import classification_pb2, regression_pb2

from tfsp.serving import rest_json
from tfsp.serving.errors import ServingError
from tfsp.serving.json_text import DEBUG_LIMIT_BYTES, debug_string, rapidjson_double


def _info(dtype, *dims) -> meta_graph_pb2.TensorInfo:
    info = meta_graph_pb2.TensorInfo(dtype=dtype)
    for d in dims:
        info.tensor_shape.dim.add(size=d)
    return info


def test_rest_row_and_columnar_decoding():
    infos = {"a": _info(types_pb2.DT_INT64, -1), "s": _info(types_pb2.DT_STRING, -1)}
    rows = {
        "instances": [
            {"a": 1, "s": {"b64": base64.b64encode(b"\x00").decode()}},
            {"a": 2, "s": "t"},
        ]
    }
    arrays, fmt = rest_json.predict_inputs(rows, infos)
    assert (
        fmt == "row" and arrays["a"].tolist() == [1, 2] and arrays["s"].tolist() == [b"\x00", b"t"]
    )
    arrays, fmt = rest_json.predict_inputs({"inputs": {"a": [3], "s": ["u", "v"]}}, infos)
    assert fmt == "columnar" and arrays["s"].shape == (2,)
    single = {"x": _info(types_pb2.DT_FLOAT, -1, 2)}
    arrays, _ = rest_json.predict_inputs({"instances": [[1, 2.5], [3, 4]]}, single)
    assert arrays["x"].dtype == np.float32 and arrays["x"].tolist() == [[1, 2.5], [3, 4]]
    arrays, _ = rest_json.predict_inputs({"instances": [[float("nan"), 0]]}, single)
    assert np.isnan(arrays["x"][0, 0])


def test_rest_responses():
    outputs = {"y": np.array([[1.0], [2.0]], np.float32)}
    assert rest_json.predict_response(outputs, "row") == {"predictions": [[1.0], [2.0]]}
    assert rest_json.predict_response(outputs, "columnar") == {"outputs": [[1.0], [2.0]]}
    both = {"k": np.array([1, 2]), "img_bytes": np.array([b"\xff", b"a"], dtype=object)}
    assert rest_json.predict_response(both, "row") == {
        "predictions": [
            {"k": 1, "img_bytes": {"b64": "/w=="}},
            {"k": 2, "img_bytes": {"b64": "YQ=="}},
        ]
    }
    assert rest_json.predict_response(both, "columnar")["outputs"]["k"] == [1, 2]


FLOAT3 = {"x": _info(types_pb2.DT_FLOAT, -1, 3)}
TYPES = {"a": _info(types_pb2.DT_INT64, -1), "s": _info(types_pb2.DT_STRING, -1)}
ELEMENT0 = "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "

# (id, body, signature inputs, the status code, the message json_tensor.cc gives)
REFUSED = [
    # FillPredictRequestFromJson: FormatError quotes the whole body
    (
        "empty instances",
        {"instances": []},
        FLOAT3,
        "INVALID_ARGUMENT",
        "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array",
    ),
    (
        "instances not a list",
        {"instances": {}},
        FLOAT3,
        "INVALID_ARGUMENT",
        "JSON Value: {\n    \"instances\": {}\n} Expecting 'instances' to be an list/array",
    ),
    (
        "both formats",
        {"instances": [1], "inputs": [1]},
        FLOAT3,
        "INVALID_ARGUMENT",
        'JSON Value: {\n    "instances": [1],\n    "inputs": [1]\n} Not formatted correctly '
        "expecting only one of 'inputs' or 'instances' keys to exist ",
    ),
    ("neither format", {}, FLOAT3, "INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key"),
    # FillTensorMapFromInstancesList, with AddInstanceItem's errors inside
    (
        "ragged rows",
        {"instances": [[1, 2, 3], [4, 5]]},
        FLOAT3,
        "INVALID_ARGUMENT",
        "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
        "Expecting tensor size: 3 but got: 2",
    ),
    (
        "rows of one size, other shapes",
        {"instances": [[[1, 2]], [[1], [2]]]},
        FLOAT3,
        "INVALID_ARGUMENT",
        "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
        "Expecting shape [1,2] but got: [2,1]",
    ),
    (
        "true in a float tensor",
        {"instances": [[1, True, 3]]},
        FLOAT3,
        "INVALID_ARGUMENT",
        ELEMENT0 + "JSON Value: true Type: True is not of expected type: float",
    ),
    (
        "null in a float tensor",
        {"instances": [[1, None, 3]]},
        FLOAT3,
        "INVALID_ARGUMENT",
        ELEMENT0 + "JSON Value: null Type: Null is not of expected type: float",
    ),
    (
        "a decimal in an int32 tensor",
        {"instances": [1.0]},
        {"x": _info(types_pb2.DT_INT32, -1)},
        "INVALID_ARGUMENT",
        ELEMENT0 + "JSON Value: 1.0 Type: Number is not of expected type: int32",
    ),
    (
        "int32 overflow",
        {"instances": [2**31]},
        {"x": _info(types_pb2.DT_INT32, -1)},
        "INVALID_ARGUMENT",
        ELEMENT0 + "JSON Value: 2147483648 Type: Number is not of expected type: int32",
    ),
    (
        "a number in a bool tensor",
        {"instances": [True, 1]},
        {"x": _info(types_pb2.DT_BOOL, -1)},
        "INVALID_ARGUMENT",
        "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
        "JSON Value: 1 Type: Number is not of expected type: bool",
    ),
    (
        "a half input (AddValueToTensor has no case for it)",
        {"instances": [1.5]},
        {"x": _info(types_pb2.DT_HALF, -1)},
        "INVALID_ARGUMENT",
        "Failed to process element: 0 of 'instances' list. Error: UNIMPLEMENTED: "
        "Conversion of JSON Value: 1.5 to type: half",
    ),
    (
        "an unknown key",
        {"instances": [{"a": 1, "s": "x", "z": 1}]},
        TYPES,
        "INVALID_ARGUMENT",
        "Failed to process element: 0 key: z of 'instances' list. Error: INVALID_ARGUMENT: "
        "JSON object: does not have named input: z",
    ),
    (
        "a missing key",
        {"instances": [{"a": 1, "s": "x"}, {"a": 2}]},
        TYPES,
        "INVALID_ARGUMENT",
        "Failed to process element: 1 of 'instances' list. JSON object: "
        '{\n    "a": 2\n} keys must be equal to: a,s',
    ),
    (
        "bad base64",
        {"instances": [{"a": 1, "s": {"b64": "!!"}}]},
        TYPES,
        "INVALID_ARGUMENT",
        "Failed to process element: 0 key: s of 'instances' list. Error: INVALID_ARGUMENT: "
        "Unable to base64 decode",
    ),
    (
        "b64 that is not a string",
        {"instances": [{"a": 1, "s": {"b64": 5}}]},
        TYPES,
        "INVALID_ARGUMENT",
        "Failed to process element: 0 key: s of 'instances' list. Error: INVALID_ARGUMENT: "
        'JSON Value: {\n    "b64": 5\n} not formatted correctly for base64 data',
    ),
    (
        "a list among objects",
        {"instances": [{"a": 1, "s": "x"}, [1]]},
        TYPES,
        "INVALID_ARGUMENT",
        "Expecting object but got list at item 1 of input list",
    ),
    (
        "an object among values",
        {"instances": [[1, 2, 3], {"x": [1, 2, 3]}]},
        FLOAT3,
        "INVALID_ARGUMENT",
        "Expecting value/list but got object at item 1 of input list",
    ),
    (
        "a plain list for two inputs",
        {"instances": [1, 2]},
        TYPES,
        "INVALID_ARGUMENT",
        "instances is a plain list, but expecting list of objects as multiple input tensors "
        "required as per tensorinfo_map",
    ),
    # FillTensorMapFromInputsMap and FillTensorProto: not wrapped
    (
        "a missing named input",
        {"inputs": {"a": [1, 2]}},
        TYPES,
        "INVALID_ARGUMENT",
        "Missing named input: s in 'inputs' object.",
    ),
    (
        "a plain value for two inputs",
        {"inputs": [1, 2]},
        TYPES,
        "INVALID_ARGUMENT",
        "inputs is a plain value/list, but expecting an object as multiple input tensors "
        "required as per tensorinfo_map",
    ),
    (
        "a list below the rank",
        {"inputs": [1, [2]]},
        FLOAT3,
        "INVALID_ARGUMENT",
        "Encountered list at unexpected level: 1 expected < 1",
    ),
    (
        "a value above the rank",
        {"inputs": [[1, 2], 3]},
        FLOAT3,
        "INVALID_ARGUMENT",
        "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2",
    ),
    (
        "a short inner list",
        {"inputs": [[1, 2, 3], [1, 2]]},
        FLOAT3,
        "INVALID_ARGUMENT",
        "Encountered list at unexpected size: 2 at level: 1 expected size: 3",
    ),
    (
        "a half input, columnar",
        {"inputs": [1.5]},
        {"x": _info(types_pb2.DT_HALF, -1)},
        "UNIMPLEMENTED",
        "Conversion of JSON Value: 1.5 to type: half",
    ),
]


@pytest.mark.parametrize(
    "body, infos, code, message", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_predict_bodies_tf_serving_refuses_get_its_status_and_text(body, infos, code, message):
    with pytest.raises(ServingError) as caught:
        rest_json.predict_inputs(body, infos)
    assert (caught.value.code.name, caught.value.message) == (code, message)


def test_predict_bodies_tf_serving_accepts_make_its_tensors():
    # An extra key in an 'inputs' object is ignored (only the signature's inputs are read).
    arrays, fmt = rest_json.predict_inputs({"inputs": {"a": [1], "s": ["x"], "extra": 1}}, TYPES)
    assert fmt == "columnar" and sorted(arrays) == ["a", "s"]
    # Narrow integer types take any int32 and wrap, as Tensor::FromProto's cast does.
    arrays, _ = rest_json.predict_inputs({"instances": [300, -1]}, {"x": _info(types_pb2.DT_UINT8)})
    assert arrays["x"].dtype == np.uint8 and arrays["x"].tolist() == [44, 255]
    # uint64 takes what int64 cannot hold.
    arrays, _ = rest_json.predict_inputs({"instances": [2**63]}, {"x": _info(types_pb2.DT_UINT64)})
    assert arrays["x"].tolist() == [2**63]
    # b64 objects and plain strings mix in a string tensor.
    arrays, _ = rest_json.predict_inputs(
        {"instances": [{"b64": "AAE="}, "x"]}, {"x": _info(types_pb2.DT_STRING)}
    )
    assert arrays["x"].tolist() == [b"\x00\x01", b"x"]
    # absl::Base64Unescape: padding optional ('=' or '.'), whitespace anywhere.
    lenient = [{"b64": "AAE"}, {"b64": "AA\nE="}, {"b64": " A A E . "}]
    arrays, _ = rest_json.predict_inputs({"instances": lenient}, {"x": _info(types_pb2.DT_STRING)})
    assert arrays["x"].tolist() == [b"\x00\x01"] * 3
    for refused in ("A", "AAE==", "AB=CD", "AA!E"):
        with pytest.raises(ServingError, match="Unable to base64 decode"):
            rest_json.predict_inputs(
                {"inputs": {"b64": refused}}, {"x": _info(types_pb2.DT_STRING)}
            )


@pytest.mark.parametrize(
    "rows, dtype",
    [
        ([[1, 2.5, -3], [4, 5, 6]], types_pb2.DT_FLOAT),
        ([[1, 2], [3, 2**40]], types_pb2.DT_INT64),
        ([[300, -1], [0, 255]], types_pb2.DT_UINT8),
        ([2**32 - 1, 0], types_pb2.DT_UINT32),
        ([[True], [False]], types_pb2.DT_BOOL),
    ],
)
def test_numpy_at_once_makes_the_tensor_the_value_by_value_rule_makes(rows, dtype):
    infos = {"x": _info(dtype)}
    fast, _ = rest_json.predict_inputs({"instances": rows}, infos, may_hold_booleans=False)
    assert rest_json._fast_tensor(rows, dtype, may_hold_booleans=False) is not None
    rule = rest_json._exact_tensor(rows, dtype)
    assert fast["x"].dtype == rule.dtype and fast["x"].tolist() == rule.tolist()


def test_debug_strings_are_rapidjsons_pretty_writer_cut_at_256_bytes():
    # PrettyWriter, 4-space indent, kFormatSingleLineArray (JsonValueToDebugString).
    value = {"a": [1.0, 2.5, -0.0, {"k": [], "j": {}}], "s": 'q"\n\x01é'}
    assert debug_string(value) == (
        '{\n    "a": [1.0, 2.5, -0.0, {\n            "k": [],\n            "j": {}\n        }],'
        '\n    "s": "q\\"\\n\\u0001é"\n}'
    )
    # JsonWriterWithLimit: each token goes out while fewer than 256 bytes are written.
    long = debug_string(list(range(1000)))
    assert len(long) >= 256 and len(long) - len(long.rsplit(", ", 1)[1]) - 2 < 256
    assert json.loads(long + "]") == list(range(long.count(",") + 1))
    # RapidJSON's default writer refuses NaN after writing the separator before it.
    assert debug_string([1.0, float("nan"), 2]) == "[1.0, "


_JSON_WITHOUT_FLOATS = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=15,
)


@settings(derandomize=True, database=None, max_examples=400, deadline=None)
@given(value=_JSON_WITHOUT_FLOATS)
def test_debug_strings_equal_rapidjsons_own_pretty_writer(value):
    # python-rapidjson's WM_SINGLE_LINE_ARRAY is RapidJSON's PrettyWriter with
    # kFormatSingleLineArray (its floats are Python's, hence none here).
    written = rapidjson.dumps(
        value, indent=4, write_mode=rapidjson.WM_SINGLE_LINE_ARRAY, ensure_ascii=False
    )
    assume(len(written.encode()) < DEBUG_LIMIT_BYTES - 64)  # well under the cut
    assert debug_string(value) == written


@pytest.mark.parametrize(
    "value, text",
    [
        (1.0, "1.0"),
        (100.0, "100.0"),
        (12.34, "12.34"),
        (0.001234, "0.001234"),
        (1.25e-6, "0.00000125"),
        (1e-7, "1e-7"),
        (1e20, "100000000000000000000.0"),
        (1e21, "1e21"),
        (-1.5e300, "-1.5e300"),
    ],
)
def test_doubles_are_spelled_as_rapidjsons_prettify(value, text):
    assert rapidjson_double(value) == text


def test_float32_outputs_carry_tf_servings_decimal_not_the_binary_value():
    # WriteDecimal: %.6g when it reads back as the same float, else %.9g.
    values = np.array([0.1, 1 / 3, 9e6, 16777217, 3.4e38], np.float32)
    written = rest_json.predict_response({"y": values}, "columnar")["outputs"]
    assert written == [0.1, 0.333333343, 9000000.0, 16777216.0, 3.4e38]
    assert json.dumps(written) == "[0.1, 0.333333343, 9000000.0, 16777216.0, 3.4e+38]"
    # float64 keeps every digit (%.17g reads back exactly).
    assert rest_json.predict_response({"y": np.array([0.1])}, "columnar") == {"outputs": [0.1]}
    nan = rest_json.predict_response({"y": np.array([np.nan, -np.inf], np.float32)}, "columnar")
    assert json.dumps(nan) == '{"outputs": [NaN, -Infinity]}'


def test_responses_tf_serving_cannot_write_are_refused_with_its_text():
    cases = [
        ({"y": np.array(1.0, np.float32)}, "row", "Tensor name: y has no shape information "),
        (
            {"y": np.zeros((2, 1)), "z": np.zeros(3)},
            "row",
            "Tensor name: z has inconsistent batch size: 3 expecting: 2",
        ),
        (
            {"h": np.zeros(2, np.float16)},
            "columnar",
            "Failed to write JSON value for tensor type: half",
        ),
    ]
    for outputs, fmt, message in cases:
        with pytest.raises(ServingError) as caught:
            rest_json.predict_response(outputs, fmt)
        assert caught.value.message == message
    # A scalar is fine in the columnar format.
    assert rest_json.predict_response({"y": np.array(2.5, np.float32)}, "columnar") == {
        "outputs": 2.5
    }


def test_classify_and_regress_results_carry_float32_decimals():
    result = classification_pb2.ClassificationResult()
    result.classifications.add().classes.add(label="a", score=0.1)
    assert rest_json.classify_response(result) == {"results": [[["a", 0.1]]]}
    regression = regression_pb2.RegressionResult()
    regression.regressions.add(value=0.7)
    assert rest_json.regress_response(regression) == {"results": [0.7]}


# (id, body, the message MakeExampleFromJsonObject / AddValueToFeature gives)
EXAMPLES_REFUSED = [
    (
        "int then float",
        {"examples": [{"f": [1, 2.5]}]},
        "Unexpected element type in feature: f expecting type: int64",
    ),
    (
        "float then int",
        {"examples": [{"f": [2.5, 1]}]},
        "Unexpected element type in feature: f expecting type: float",
    ),
    (
        "float then true",
        {"examples": [{"f": [1.5, True]}]},
        "Unexpected element type in feature: f expecting type: float",
    ),
    (
        "b64 in an int feature",
        {"examples": [{"f": [1, {"b64": "!!"}]}]},
        "Unexpected element type in feature: f expecting type: int64",
    ),
    (
        "null",
        {"examples": [{"f": [None]}]},
        "Feature: f has element with unexpected JSON type: Null",
    ),
    (
        "nested list",
        {"examples": [{"f": [[1]]}]},
        "Feature: f has element with unexpected JSON type: Array",
    ),
    (
        "uint64",
        {"examples": [{"f": 2**63}]},
        "Feature: f has uint64_t element. Only int64_t is supported.",
    ),
    ("example not an object", {"examples": [5]}, "Example must be JSON object but got JSON Number"),
    (
        "context not an object",
        {"context": [], "examples": [{}]},
        "Example must be JSON object but got JSON Array",
    ),
    (
        "no examples",
        {},
        "JSON Value: {} When method is classify, key 'examples' is expected and was not found",
    ),
    (
        "examples not a list",
        {"examples": {}},
        "JSON Value: {\n    \"examples\": {}\n} Expecting 'examples' value to be an list/array",
    ),
    (
        "empty examples",
        {"examples": []},
        "JSON Value: {\n    \"examples\": []\n} 'examples' value is an empty array",
    ),
]


@pytest.mark.parametrize(
    "body, message", [c[1:] for c in EXAMPLES_REFUSED], ids=[c[0] for c in EXAMPLES_REFUSED]
)
def test_examples_tf_serving_refuses_get_its_text(body, message):
    with pytest.raises(ServingError) as caught:
        rest_json.examples_input(body)
    assert (caught.value.code.name, caught.value.message) == ("INVALID_ARGUMENT", message)


def test_examples_are_typed_by_their_first_value_as_in_tf_serving():
    inp = rest_json.examples_input(
        {"examples": [{"i": [1, 2], "b": [True, 0], "f": [2.5], "s": "x", "x": {"b64": "AAE="}}]}
    )
    feature = inp.example_list.examples[0].features.feature
    assert list(feature["i"].int64_list.value) == [1, 2]
    assert list(feature["b"].int64_list.value) == [1, 0]  # true/false are int64 1/0
    assert list(feature["f"].float_list.value) == [2.5]
    assert list(feature["s"].bytes_list.value) == [b"x"]
    assert list(feature["x"].bytes_list.value) == [b"\x00\x01"]
    # A feature in both the context and an example is allowed; the gRPC path gives the
    # example's value (context bytes, then the example's, merged).
    inp = rest_json.examples_input({"context": {"i": 1}, "examples": [{"i": 2}]})
    assert inp.WhichOneof("kind") == "example_list_with_context"


# (body, the message ParseJson gives: "JSON Parse error: " + RapidJSON's GetParseError_En
# text + " at offset: " + the byte offset; or its own checks around the parse)
PARSE_REFUSED = [
    (b"", "JSON Parse error: The document is empty"),
    (b"  \n", "JSON Parse error: The document is empty. at offset: 3"),
    (b"{not json", "JSON Parse error: Missing a name for object member. at offset: 1"),
    (b'{"a" 1}', "JSON Parse error: Missing a colon after a name of object member. at offset: 5"),
    (b"[1 2]", "JSON Parse error: Missing a comma or ']' after an array element. at offset: 3"),
    (b"[1,]", "JSON Parse error: Invalid value. at offset: 3"),
    (b'{"a": 1.}', "JSON Parse error: Miss fraction part in number. at offset: 8"),
    (
        b'{"a": "\\ud800"}',
        "JSON Parse error: The surrogate pair in string is invalid. at offset: 7",
    ),
    (b'{"a": 1e400}', "JSON Parse error: Number too big to be stored in double. at offset: 6"),
    # RapidJSON counts bytes: "é" is two.
    ('{"é": ?}'.encode(), "JSON Parse error: Invalid value. at offset: 7"),
    (b"[1, 2]", "JSON Value: [1, 2] Is not object"),
    (b"01", "JSON Value: 0 Is not object"),  # kParseStopWhenDoneFlag: the root is 0
]


@pytest.mark.parametrize("body, message", PARSE_REFUSED, ids=[c[1][:48] for c in PARSE_REFUSED])
def test_bodies_rapidjson_cannot_parse_get_tf_servings_text(body, message):
    with pytest.raises(ServingError) as caught:
        rest_json.parse_body(body)
    assert (caught.value.code.name, caught.value.message) == ("INVALID_ARGUMENT", message)


def test_bodies_rapidjson_parses_as_tf_serving_configures_it():
    # kParseNanAndInfFlag takes every spelling RapidJSON knows; kParseStopWhenDoneFlag
    # ignores what follows the first value.
    body = rest_json.parse_body(b'{"x": [NaN, Inf, -Inf, Infinity, -Infinity]} trailing')
    assert np.isnan(body["x"][0]) and body["x"][1:] == [np.inf, -np.inf, np.inf, -np.inf]
    # Integers stay integers within int64/uint64; beyond, a double.
    body = rest_json.parse_body(b'{"a": [18446744073709551615, 18446744073709551616]}')
    assert body["a"][0] == 2**64 - 1 and isinstance(body["a"][1], float)


def test_a_repeated_key_means_its_first_value_as_rapidjsons_find_member():
    body = rest_json.parse_body(
        b'{"signature_name": "a", "signature_name": "b", "x": {"k": 1, "k": 2}}'
    )
    assert body == {"signature_name": "a", "x": {"k": 1}}


def _predict_raw(raw: bytes, infos: dict) -> dict:
    arrays, _ = rest_json.predict_inputs(rest_json.parse_body(raw), infos)
    return {name: array.tolist() for name, array in arrays.items()}


FLOAT = {"x": _info(types_pb2.DT_FLOAT, -1)}
STRING = {"x": _info(types_pb2.DT_STRING, -1)}


def test_repeated_top_level_keys_are_found_first_and_quoted_whole():
    # FillPredictRequestFromJson / FillClassifyRegressRequestFromJson: doc.FindMember, the
    # first "instances", "examples" or "context".
    assert _predict_raw(b'{"instances": [1], "instances": 5}', FLOAT) == {"x": [1.0]}
    inp = rest_json.examples_input(
        rest_json.parse_body(
            b'{"context": {"c": 1}, "context": 5, "examples": [{"f": 1}], "examples": 5}'
        )
    )
    assert inp.example_list_with_context.context.features.feature["c"].int64_list.value == [1]
    # FormatError quotes the document with JsonValueToDebugString: every member.
    with pytest.raises(ServingError) as caught:
        rest_json.predict_inputs(rest_json.parse_body(b'{"instances": 1, "instances": [1]}'), FLOAT)
    assert caught.value.message == (
        'JSON Value: {\n    "instances": 1,\n    "instances": [1]\n} '
        "Expecting 'instances' to be an list/array"
    )
    # An object without a repeated key is a plain dict (the common, fast case).
    assert type(rest_json.parse_body(b'{"a": {"b": 1}}')["a"]) is dict


# (id, body, the tensors TF Serving feeds). FillTensorMapFromInstancesList walks
# elem.GetObject(): every copy of a key goes through AddInstanceItem, appending its values
# to the one tensor; the tensor's shape is [elements, ...], and Tensor::FromProto (in
# GetInputValues) reads only that many values: the first, whichever copies they came from.
REPEATED_IN_INSTANCES = [
    ("numbers, one element", b'{"instances": [{"x": 1, "x": 2}]}', FLOAT, {"x": [1.0]}),
    (
        "numbers, the next element shifted",
        b'{"instances": [{"x": 1, "x": 2}, {"x": 3}]}',
        FLOAT,
        {"x": [1.0, 2.0]},
    ),
    (
        "lists of one size",
        b'{"instances": [{"x": [1, 2], "x": [3, 4]}, {"x": [5, 6]}]}',
        {"x": _info(types_pb2.DT_INT64, -1, 2)},
        {"x": [[1, 2], [3, 4]]},
    ),
    (
        "b64 objects",
        b'{"instances": [{"x": {"b64": "AA=="}, "x": {"b64": "AQ=="}}, {"x": {"b64": "Ag=="}}]}',
        STRING,
        {"x": [b"\x00", b"\x01"]},
    ),
    (
        "two inputs, one repeated",
        b'{"instances": [{"a": 1, "s": "p", "a": 2}, {"s": "q", "a": 3}]}',
        TYPES,
        {"a": [1, 2], "s": [b"p", b"q"]},
    ),
]


@pytest.mark.parametrize(
    "raw, infos, tensors",
    [c[1:] for c in REPEATED_IN_INSTANCES],
    ids=[c[0] for c in REPEATED_IN_INSTANCES],
)
def test_a_key_repeated_in_an_instance_feeds_every_copy_as_tf_serving(raw, infos, tensors):
    assert _predict_raw(raw, infos) == tensors


KEY_X0 = "Failed to process element: 0 key: x of 'instances' list. Error: INVALID_ARGUMENT: "

# (id, body, signature inputs, the message FillTensorMapFromInstancesList gives)
REPEATED_IN_INSTANCES_REFUSED = [
    # AddInstanceItem: the second copy is checked against the size the first fixed.
    (
        "copies of two sizes",
        b'{"instances": [{"x": [1, 2], "x": [3]}]}',
        {"x": _info(types_pb2.DT_FLOAT, -1, -1)},
        KEY_X0 + "Expecting tensor size: 2 but got: 1",
    ),
    (
        "copies of two shapes",
        b'{"instances": [{"x": [[1, 2]], "x": [[1], [2]]}]}',
        {"x": _info(types_pb2.DT_FLOAT, -1, -1, -1)},
        KEY_X0 + "Expecting shape [1,2] but got: [2,1]",
    ),
    # FillTensorProto / AddValueToTensor (TypeError) on the second copy.
    (
        "a bad second copy",
        b'{"instances": [{"x": 1, "x": "a"}]}',
        FLOAT,
        KEY_X0 + 'JSON Value: "a" Type: String is not of expected type: float',
    ),
    # IsValBase64Object needs MemberCount() == 1: a repeated "b64" is two members, so it
    # is no base64 data (Base64FormatError)...
    (
        "a leaf with b64 twice",
        b'{"instances": [{"x": {"b64": "AA==", "b64": "AQ=="}}]}',
        STRING,
        KEY_X0 + 'JSON Value: {\n    "b64": "AA==",\n    "b64": "AQ=="\n} '
        "not formatted correctly for base64 data",
    ),
    # ... and as an element it is an object of named inputs (IsElementObject).
    (
        "an element with b64 twice",
        b'{"instances": [{"b64": "AA==", "b64": "AQ=="}]}',
        STRING,
        "Failed to process element: 0 key: b64 of 'instances' list. Error: INVALID_ARGUMENT: "
        "JSON object: does not have named input: b64",
    ),
    # The keys are a std::set (copies count once); the quoted object has every member.
    (
        "a repeated key for a missing one",
        b'{"instances": [{"a": 1, "a": 2}]}',
        TYPES,
        "Failed to process element: 0 of 'instances' list. JSON object: "
        '{\n    "a": 1,\n    "a": 2\n} keys must be equal to: a,s',
    ),
    # FillTensorMapFromInputsMap: the same object, not base64, so named inputs are sought.
    (
        "inputs with b64 twice",
        b'{"inputs": {"b64": "AA==", "b64": "AQ=="}}',
        STRING,
        "Missing named input: x in 'inputs' object.",
    ),
]


@pytest.mark.parametrize(
    "raw, infos, message",
    [c[1:] for c in REPEATED_IN_INSTANCES_REFUSED],
    ids=[c[0] for c in REPEATED_IN_INSTANCES_REFUSED],
)
def test_a_repeated_key_tf_serving_refuses_gets_its_text(raw, infos, message):
    with pytest.raises(ServingError) as caught:
        rest_json.predict_inputs(rest_json.parse_body(raw), infos)
    assert (caught.value.code.name, caught.value.message) == ("INVALID_ARGUMENT", message)


def test_a_feature_repeated_in_an_example_or_context_is_its_last_copy():
    # MakeExampleFromJsonObject walks val.GetObject(): each copy fills a fresh `Feature`
    # and is assigned to feature[name], replacing the earlier copy; kinds never meet.
    body = rest_json.parse_body(
        b'{"context": {"c": 1, "c": ["a", "b"]},'
        b' "examples": [{"f": 1, "f": 2}, {"f": 1, "f": 2.5}, {"f": [1, 2], "f": []}]}'
    )
    inp = rest_json.examples_input(body).example_list_with_context
    assert list(inp.context.features.feature["c"].bytes_list.value) == [b"a", b"b"]
    same, other, empty = (e.features.feature["f"] for e in inp.examples)
    assert list(same.int64_list.value) == [2]
    assert list(other.float_list.value) == [2.5] and not other.HasField("int64_list")
    assert "f" in inp.examples[2].features.feature and empty.WhichOneof("kind") is None


# (id, body, the message AddValueToFeature gives for one copy; every copy is checked)
REPEATED_FEATURE_REFUSED = [
    (
        "a bad first copy",
        b'{"examples": [{"f": null, "f": 1}]}',
        "Feature: f has element with unexpected JSON type: Null",
    ),
    (
        "a bad copy in the context",
        b'{"context": {"c": [1], "c": [2, 2.5]}, "examples": [{}]}',
        "Unexpected element type in feature: c expecting type: int64",
    ),
    # IsValBase64Object: two members, so the object is no bytes value.
    (
        "b64 twice",
        b'{"examples": [{"f": {"b64": "AA==", "b64": "AQ=="}}]}',
        "Feature: f has element with unexpected JSON type: Object",
    ),
]


@pytest.mark.parametrize(
    "raw, message",
    [c[1:] for c in REPEATED_FEATURE_REFUSED],
    ids=[c[0] for c in REPEATED_FEATURE_REFUSED],
)
def test_a_repeated_feature_tf_serving_refuses_gets_its_text(raw, message):
    with pytest.raises(ServingError) as caught:
        rest_json.examples_input(rest_json.parse_body(raw))
    assert (caught.value.code.name, caught.value.message) == ("INVALID_ARGUMENT", message)


def test_rows_that_would_stack_past_64_dimensions_are_refused():
    deep: object = 1.0
    for _ in range(64):
        deep = [deep]
    arrays, _ = rest_json.predict_inputs({"inputs": deep}, {"x": _info(types_pb2.DT_FLOAT)})
    assert arrays["x"].ndim == 64
    # As a row its tensor gains the batch dimension: 65, more than numpy holds.
    with pytest.raises(ServingError) as caught:
        rest_json.predict_inputs({"instances": [{"x": deep}]}, {"x": _info(types_pb2.DT_FLOAT)})
    assert caught.value.message == (
        "Failed to process element: 0 key: x of 'instances' list. Error: INVALID_ARGUMENT: "
        "lists nested more than 64 deep (at most 64)"
    )
