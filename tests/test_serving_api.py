"""gRPC and REST APIs of a real server process, called with the official stubs and plain HTTP.

One server for the module: model `toy` (versions 1 and 2, policy all, labels stable=1 and
canary=2) and model `other` (latest only), a 1 MiB message limit and Prometheus enabled.
"""

import base64
import json

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.serving_harness import build_toy_model, running_server
from tfsp.serving.client import ClientError, RestClient, ServingClient

pytestmark = pytest.mark.integration  # starts a model server

LIMIT = 1 << 20
CONFIG = """
model_config_list {
  config {
    name: "toy"
    base_path: "%(root)s/toy"
    model_platform: "tensorflow"
    model_version_policy { all {} }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config { name: "other" base_path: "%(root)s/other" model_platform: "tensorflow" }
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    build_toy_model(root / "toy" / "1", 1.0)
    build_toy_model(root / "toy" / "2", 2.0)
    build_toy_model(root / "other" / "7", 7.0)
    config = root / "models.config"
    config.write_text(CONFIG % {"root": root})
    monitoring = root / "monitoring.config"
    monitoring.write_text(
        'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }'
    )
    with running_server(
        f"--model_config_file={config}",
        # labels in the first config name versions not loaded yet: TF Serving refuses them
        # at startup without this flag, as we do
        "--allow_version_labels_for_unavailable_models",
        f"--monitoring_config_file={monitoring}",
        f"--grpc_channel_arguments=grpc.max_receive_message_length={LIMIT}",
        log_path=root / "server.log",
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server):
    with ServingClient(server.address, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def stubs(server):
    channel = grpc.insecure_channel(server.address)
    yield (
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )
    channel.close()


@pytest.fixture(scope="module")
def rest(server):
    return RestClient(server.rest_address)


def _example(x: float) -> tf.train.Example:
    return tf.train.Example(
        features=tf.train.Features(
            feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))}
        )
    )


X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)


# ---- gRPC: the happy paths ----


@pytest.mark.parametrize(
    "kwargs, version",
    [({}, 2), ({"version": 1}, 1), ({"label": "stable"}, 1), ({"label": "canary"}, 2)],
)
def test_predict_addresses_versions_by_latest_number_and_label(client, kwargs, version):
    spec, outputs = client.predict("toy", {"x": X}, **kwargs)
    assert spec.name == "toy" and spec.version.value == version
    assert spec.signature_name == "serving_default"
    np.testing.assert_allclose(outputs["y"], X * version)


def test_predict_accepts_repeated_value_fields_as_well_as_tensor_content(stubs):
    predict, _ = stubs
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "other"
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add(size=1)
    tensor.tensor_shape.dim.add(size=3)
    tensor.float_val.extend([1.0, 2.0, 3.0])
    response = predict.Predict(request, timeout=30)
    assert tf.make_ndarray(response.outputs["y"]).tolist() == [[7.0, 14.0, 21.0]]
    # the official helper (tensor_content) gives the same answer
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1, 2, 3]], np.float32)))
    assert tf.make_ndarray(predict.Predict(request, timeout=30).outputs["y"]).tolist() == [
        [7, 14, 21]
    ]


def test_shapes_are_not_checked_against_the_signature_the_graph_decides(client):
    # serving_default says x: [None, 3]; TF Serving feeds [3] and [1, 4] as they are, and
    # the toy's elementwise graph answers both.
    for value in (X[0], np.ones((1, 4), np.float32)):
        _, outputs = client.predict("toy", {"x": value})
        np.testing.assert_allclose(outputs["y"], value * 2)


def test_predict_dtypes_output_filter_and_named_signature(client):
    inputs = {
        "a": np.array([1, -5], dtype=np.int64),
        "s": np.array([b"\x00\xffbin", b"text"], dtype=object),
        "h": np.array([[1, 2], [3, 4]], dtype=np.int32),
    }
    _, outputs = client.predict("toy", inputs, signature="types", output_filter=["a2", "s_bytes"])
    assert set(outputs) == {"a2", "s_bytes"}
    assert outputs["a2"].tolist() == [2, -10]
    assert outputs["s_bytes"].tolist() == [b"\x00\xffbin", b"text"]


def test_classify_regress_and_multi_inference(client, stubs):
    predict, _ = stubs
    response = client.classify(
        "toy", [_example(0.25), _example(0.1)], signature="classify", version=1
    )
    assert response.model_spec.version.value == 1
    first = response.result.classifications[0].classes
    assert [(c.label, round(c.score, 4)) for c in first] == [("neg", 0.25), ("pos", 0.75)]
    regression = client.regress("toy", [_example(0.5)], signature="regress")
    assert regression.model_spec.version.value == 2
    assert regression.result.regressions[0].value == pytest.approx(1.0)

    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("classify", "classify"), ("regress", "regress")):
        task = request.tasks.add(method_name=f"tensorflow/serving/{method}")
        task.model_spec.name = "toy"
        task.model_spec.signature_name = signature
    request.input.example_list.examples.add().CopyFrom(_example(0.5))
    results = predict.MultiInference(request, timeout=30).results
    assert results[0].classification_result.classifications[0].classes[0].score == pytest.approx(
        1.0
    )
    assert results[1].regression_result.regressions[0].value == pytest.approx(1.0)


def test_classify_with_context_merges_features(stubs):
    predict, _ = stubs
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "toy"
    request.model_spec.signature_name = "classify"
    request.input.example_list_with_context.context.CopyFrom(_example(0.5))
    request.input.example_list_with_context.examples.add()  # x comes from the context
    request.input.example_list_with_context.examples.add().CopyFrom(_example(0.25))
    scores = [
        c.classes[0].score for c in predict.Classify(request, timeout=30).result.classifications
    ]
    assert scores == pytest.approx([1.0, 0.5])


def test_metadata_and_status(client):
    spec, signatures = client.metadata("toy", label="stable")
    assert spec.version.value == 1
    assert {"serving_default", "classify", "regress", "types"} <= set(signatures)
    assert signatures["serving_default"].inputs["x"].dtype == types_pb2.DT_FLOAT
    status = client.status("toy")
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert [(v.version, v.state) for v in status.model_version_status] == [
        (2, available),
        (1, available),
    ]
    # GetModelStatus looks only at the version: a label gets every version, as in TF Serving.
    assert [v.version for v in client.status("toy", label="stable").model_version_status] == [2, 1]


# ---- REST: the happy paths ----


def test_rest_predict_row_and_columnar_formats(rest):
    status, body = rest.request(
        "POST", "/v1/models/toy:predict", json.dumps({"instances": X.tolist()})
    )
    assert status == 200 and body == {"predictions": (X * 2).tolist()}
    status, body = rest.request(
        "POST", "/v1/models/toy/versions/1:predict", json.dumps({"inputs": {"x": X.tolist()}})
    )
    assert status == 200 and body == {"outputs": X.tolist()}
    status, body = rest.request(
        "POST", "/v1/models/toy/labels/stable:predict", json.dumps({"inputs": X.tolist()})
    )
    assert status == 200 and body == {"outputs": X.tolist()}


def test_rest_writes_float32_outputs_and_refusals_as_tf_serving_does(rest):
    # Version 1 scales by 1.0, so y is the float32 of the input. WriteDecimal writes it as
    # 0.1, not the float's binary value 0.10000000149011612.
    status, body = rest.request(
        "POST", "/v1/models/toy/versions/1:predict", json.dumps({"instances": [[0.1, 0.2, 1.3]]})
    )
    assert status == 200 and body == {"predictions": [[0.1, 0.2, 1.3]]}
    status, body = rest.request(
        "POST", "/v1/models/toy:predict", '{"signature_name": "nope", "instances": [1]}'
    )
    assert (status, body) == (
        400,
        {"error": 'Serving signature name: "nope" not found in signature def'},
    )
    status, body = rest.request("POST", "/v1/models/toy:predict", '{"instances": []}')
    assert status == 400
    assert body == {
        "error": "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array"
    }


def test_a_long_status_is_cut_on_grpc_as_tf_serving_cuts_it_and_whole_on_rest(stubs, rest):
    """grpc_status_util.cc ToGRPCStatus: the first 1,024 bytes and "...TRUNCATED"; the REST
    API sends the whole text. TensorFlow's parse error quotes the 3,000 garbage bytes."""
    garbage = b"\x01" * 3000
    whole = "Could not parse example input, value: '" + "\\x01" * 3000 + "'"
    predict, _ = stubs
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "toy", "classify"
    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto([garbage]))
    with pytest.raises(grpc.RpcError) as caught:
        predict.Predict(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == whole[:1024] + "...TRUNCATED"
    encoded = base64.b64encode(garbage).decode()
    body = {"signature_name": "classify", "instances": [{"b64": encoded}]}
    status, answer = rest.request("POST", "/v1/models/toy:predict", json.dumps(body))
    assert (status, answer) == (400, {"error": whole})


def test_rest_b64_bytes_and_multiple_outputs(rest):
    payload = {
        "signature_name": "types",
        "instances": [
            {"a": 3, "s": {"b64": base64.b64encode(b"\x01\x02").decode()}, "h": [1, 1]},
            {"a": 4, "s": "plain", "h": [2, 2]},
        ],
    }
    status, body = rest.request("POST", "/v1/models/toy:predict", json.dumps(payload))
    assert status == 200, body
    assert body["predictions"] == [
        {"a2": 6, "s_bytes": {"b64": "AQI="}, "h_sum": 2},
        {"a2": 8, "s_bytes": {"b64": base64.b64encode(b"plain").decode()}, "h_sum": 4},
    ]


def test_rest_classify_regress_status_metadata(rest):
    status, body = rest.request(
        "POST",
        "/v1/models/toy/versions/1:classify",
        json.dumps({"signature_name": "classify", "examples": [{"x": 0.25}]}),
    )
    assert status == 200 and body == {"results": [[["neg", 0.25], ["pos", 0.75]]]}
    status, body = rest.request(
        "POST",
        "/v1/models/toy:regress",
        json.dumps({"signature_name": "regress", "context": {"x": 0.5}, "examples": [{}, {}]}),
    )
    assert status == 200 and body == {"results": [1.0, 1.0]}
    assert rest.status("toy", version=1) == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    metadata = rest.metadata("toy", label="canary")
    assert metadata["model_spec"]["name"] == "toy" and metadata["model_spec"]["version"] == "2"
    inputs = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert inputs["x"]["dtype"] == "DT_FLOAT"


def test_prometheus_endpoint_counts_requests(rest, client):
    client.predict("other", {"x": X})
    status, _ = rest.request("GET", "/monitoring/prometheus/metrics")
    assert status == 200
    import http.client

    host, port = rest.address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", "/monitoring/prometheus/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    assert ':tensorflow:serving:request_count{model_name="other",status="OK"}' in text
    assert (
        ':tensorflow:serving:request_latency_bucket{model_name="other",API="Predict",'
        'entrypoint="GRPC",le="10"}' in text
    )


# ---- malformed requests: the status code, a one-line message, the server unharmed ----


def _predict(model="toy", **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    return request


def _with_input(tensor: tensor_pb2.TensorProto, name="x", **spec) -> predict_pb2.PredictRequest:
    request = _predict(**spec)
    request.inputs[name].CopyFrom(tensor)
    return request


def _tensor(dtype=types_pb2.DT_FLOAT, shape=(1, 3), **fields) -> tensor_pb2.TensorProto:
    tensor = tensor_pb2.TensorProto(dtype=dtype, **fields)
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    return tensor


GOOD = tf.make_tensor_proto(X)


def _types_request(**replaced: tensor_pb2.TensorProto) -> predict_pb2.PredictRequest:
    """A valid request to the toy's `types` signature, with some inputs replaced."""
    request = _predict(signature_name="types")
    good = {
        "a": tf.make_tensor_proto(np.array([1], np.int64)),
        "s": tf.make_tensor_proto(np.array([b"x"])),
        "h": tf.make_tensor_proto(np.array([[1, 2]], np.int32)),
    }
    for name, tensor in (good | replaced).items():
        request.inputs[name].CopyFrom(tensor)
    return request


def _two_inputs() -> predict_pb2.PredictRequest:
    request = _with_input(GOOD)
    request.inputs["images"].CopyFrom(GOOD)
    return request


INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _classify(signature="classify", examples=(), **kw) -> classification_pb2.ClassificationRequest:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "toy"
    request.model_spec.signature_name = signature
    for example in examples:
        request.input.example_list.examples.add().CopyFrom(example)
    return request


def _regress(signature) -> regression_pb2.RegressionRequest:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "toy"
    request.model_spec.signature_name = signature
    request.input.example_list.examples.add().CopyFrom(_example(1.0))
    return request


def _multi(*tasks) -> inference_pb2.MultiInferenceRequest:
    request = inference_pb2.MultiInferenceRequest()
    for model, signature in tasks:
        task = request.tasks.add(method_name="tensorflow/serving/classify")
        task.model_spec.name = model
        task.model_spec.signature_name = signature
    request.input.example_list.examples.add().CopyFrom(_example(1.0))
    return request


def _multi_regress_without_input() -> inference_pb2.MultiInferenceRequest:
    request = inference_pb2.MultiInferenceRequest()
    task = request.tasks.add(method_name="tensorflow/serving/regress")
    task.model_spec.name = "toy"
    task.model_spec.signature_name = "classify"
    return request


def _metadata(*fields) -> get_model_metadata_pb2.GetModelMetadataRequest:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=list(fields))
    request.model_spec.name = "toy"
    return request


def _status(model="toy", version=None) -> get_model_status_pb2.GetModelStatusRequest:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    return request


GRPC_CASES = [
    (
        "unknown model",
        "Predict",
        _with_input(GOOD, model="nope"),
        grpc.StatusCode.NOT_FOUND,
        "nope",
    ),
    ("unknown version", "Predict", _with_input(GOOD, version=9), grpc.StatusCode.NOT_FOUND, "9"),
    (
        "unknown label",
        "Predict",
        _with_input(GOOD, version_label="beta"),
        INVALID,
        "Unrecognized servable version label: beta",
    ),
    (
        # ServerCore looks the label up before the model: the model's absence is not named.
        "label of an unknown model",
        "Predict",
        _with_input(GOOD, model="nope", version_label="stable"),
        INVALID,
        "Unrecognized servable version label: stable",
    ),
    (
        "empty model name",
        "Predict",
        _with_input(GOOD, model=""),
        INVALID,
        "ModelSpec has no name specified.",
    ),
    (
        "unknown signature",
        "Predict",
        _with_input(GOOD, signature_name="nope"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "nope",
    ),
    ("no inputs", "Predict", _predict(), INVALID, "Missing but required: {x}"),
    (
        "wrong input name",
        "Predict",
        _with_input(GOOD, name="images"),
        INVALID,
        "Signature input alias: x(feed name: serving_default_x:0) not found in request",
    ),
    (
        "extra input",
        "Predict",
        _two_inputs(),
        INVALID,
        "Sent extra: {images}. Missing but required: {}.",
    ),
    (
        # No dtype check of TF Serving's own: Session::Run refuses the feed.
        "wrong dtype",
        "Predict",
        _with_input(tf.make_tensor_proto(X.astype(np.int32))),
        INVALID,
        "Expects arg[0] to be float but int32 is provided",
    ),
    (
        "short tensor_content",
        "Predict",
        _with_input(_tensor(tensor_content=b"\x00" * 8)),
        INVALID,
        "tensor_content has 8 bytes, expected 12",
    ),
    (
        "negative dim",
        "Predict",
        _with_input(_tensor(shape=(-1, 3), float_val=[1.0])),
        INVALID,
        "negative",
    ),
    (
        "unknown rank",
        "Predict",
        _with_input(
            tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape={"unknown_rank": True})
        ),
        INVALID,
        "unknown rank",
    ),
    (
        "dtype DT_INVALID",
        "Predict",
        _with_input(_tensor(dtype=types_pb2.DT_INVALID)),
        INVALID,
        "unsupported dtype",
    ),
    (
        "unsupported dtype",
        "Predict",
        _with_input(_tensor(dtype=types_pb2.DT_COMPLEX64)),
        INVALID,
        "DT_COMPLEX64",
    ),
    (
        "values in the wrong field",
        "Predict",
        _with_input(_tensor(int_val=[1, 2, 3])),
        INVALID,
        "float_val",
    ),
    (
        # Tensors are parsed once the names are right (GetInputValues), with its words.
        "unreadable string tensor_content",
        "Predict",
        _types_request(s=_tensor(dtype=types_pb2.DT_STRING, shape=(1,), tensor_content=b"\x05ab")),
        INVALID,
        "tensor parsing error: s (tensor_content's 1 string lengths add up to 5 bytes, "
        "not the 2 that follow them)",
    ),
    (
        "missing ModelSpec",
        "Predict",
        predict_pb2.PredictRequest(inputs={"x": GOOD}),
        INVALID,
        "Missing ModelSpec",
    ),
    (
        "huge shape claim",
        "Predict",
        _with_input(_tensor(shape=(1 << 40, 3), float_val=[1.0])),
        INVALID,  # TF Serving: "tensor parsing error" (Tensor::FromProto cannot allocate)
        "larger than",
    ),
    (
        # 2**96 elements: a 64-bit product would wrap around to 0
        "shape whose size overflows int64",
        "Predict",
        _with_input(_tensor(shape=(1 << 32, 1 << 32, 1 << 32), float_val=[1.0])),
        INVALID,
        "is too large (more than 2**63 - 1 entries)",
    ),
    (
        "unknown output_filter",
        "Predict",
        predict_pb2.PredictRequest(
            model_spec={"name": "toy"}, inputs={"x": GOOD}, output_filter=["z"]
        ),
        INVALID,
        "output tensor alias not found in signature: z Outputs expected to be in the set {y}.",
    ),
    (
        "duplicate output_filter",
        "Predict",
        predict_pb2.PredictRequest(
            model_spec={"name": "toy"}, inputs={"x": GOOD}, output_filter=["y", "y"]
        ),
        INVALID,
        "duplicate output tensor alias: y",
    ),
    (
        "over the message limit",
        "Predict",
        _with_input(tf.make_tensor_proto(np.zeros((LIMIT // 12 + 10, 3), np.float32))),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "",
    ),
    ("classify: empty input", "Classify", _classify(), INVALID, "Input is empty"),
    (
        "classify: non-example signature",
        "Classify",
        _classify("serving_default", [_example(1)]),
        INVALID,
        "No classification inputs found in SignatureDef",
    ),
    (
        "classify: missing feature",
        "Classify",
        _classify("classify", [tf.train.Example()]),
        INVALID,
        "x",
    ),
    (
        "regress: classification signature",
        "Regress",
        _regress("classify"),
        INVALID,
        "Expected one output Tensor.",
    ),
    (
        "multi: two models",
        "MultiInference",
        _multi(("toy", "classify"), ("other", "classify")),
        INVALID,
        "same model name",
    ),
    (
        "multi: duplicate signature",
        "MultiInference",
        _multi(("toy", "classify"), ("toy", "classify")),
        INVALID,
        "Duplicate",
    ),
    (
        # multi_inference.cc resolves the first task's model before checking the others.
        "multi: unknown model first",
        "MultiInference",
        _multi(("nope", "classify"), ("toy", "classify")),
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Latest(nope)",
    ),
    (
        # Each task's signature is checked before the input is read.
        "multi: a regress task on a classify signature, and no input",
        "MultiInference",
        _multi_regress_without_input(),
        INVALID,
        "Expected one output Tensor.",
    ),
    ("metadata: no field", "GetModelMetadata", _metadata(), INVALID, "metadata_field"),
    (
        "metadata: unknown field",
        "GetModelMetadata",
        _metadata("signature_def", "weights"),
        INVALID,
        "weights",
    ),
    (
        "status: unknown model",
        "GetModelStatus",
        _status("nope"),
        grpc.StatusCode.NOT_FOUND,
        "Could not find any versions of model nope",
    ),
    (
        "status: unknown version",
        "GetModelStatus",
        _status("toy", 5),
        grpc.StatusCode.NOT_FOUND,
        "Could not find version 5",
    ),
]


@pytest.mark.parametrize(
    "method, request_, code, fragment", [c[1:] for c in GRPC_CASES], ids=[c[0] for c in GRPC_CASES]
)
def test_malformed_grpc_requests(stubs, method, request_, code, fragment):
    predict, models = stubs
    stub = models if method == "GetModelStatus" else predict
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stub, method)(request_, timeout=30)
    assert caught.value.code() == code, caught.value.details()
    details = caught.value.details() or ""
    assert fragment in details
    assert "Traceback" not in details and 'File "' not in details and "\n" not in details


def test_undecodable_bytes_are_rejected(server):
    channel = grpc.insecure_channel(server.address)
    raw = channel.unary_unary(
        "/tensorflow.serving.PredictionService/Predict",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.RpcError) as caught:
        raw(b"\xff\xff\xff\xff garbage", timeout=30)
    channel.close()
    assert caught.value.code() == INVALID
    assert "PredictRequest" in caught.value.details()


REST_CASES = [
    ("bad JSON", "POST", "/v1/models/toy:predict", "{not json", 400),
    ("body not an object", "POST", "/v1/models/toy:predict", "[1, 2]", 400),
    (
        "both formats",
        "POST",
        "/v1/models/toy:predict",
        '{"instances": [[1,2,3]], "inputs": [[1,2,3]]}',
        400,
    ),
    ("no inputs", "POST", "/v1/models/toy:predict", "{}", 400),
    (
        "string in a float tensor",
        "POST",
        "/v1/models/toy:predict",
        '{"instances": [["a","b","c"]]}',
        400,
    ),
    ("ragged list", "POST", "/v1/models/toy:predict", '{"instances": [[1,2,3],[4,5]]}', 400),
    ("empty instances", "POST", "/v1/models/toy:predict", '{"instances": []}', 400),
    ("null value", "POST", "/v1/models/toy:predict", '{"instances": [[1,null,3]]}', 400),
    ("unknown model", "POST", "/v1/models/nope:predict", '{"instances": [[1,2,3]]}', 404),
    (
        "unknown version",
        "POST",
        "/v1/models/toy/versions/9:predict",
        '{"instances": [[1,2,3]]}',
        404,
    ),
    (
        "unknown label",
        "POST",
        "/v1/models/toy/labels/beta:predict",
        '{"instances": [[1,2,3]]}',
        400,
    ),
    (
        "signature_name not a string",
        "POST",
        "/v1/models/toy:predict",
        '{"signature_name": 5, "instances": [[1,2,3]]}',
        400,
    ),
    (
        "unknown signature",
        "POST",
        "/v1/models/toy:predict",
        '{"signature_name": "nope", "instances": [[1,2,3]]}',
        400,
    ),
    (
        "bad base64",
        "POST",
        "/v1/models/toy:predict",
        '{"signature_name": "types", "instances": [{"a": 1, "s": {"b64": "!!"}, "h": [1,2]}]}',
        400,
    ),
    (
        "instance missing an input",
        "POST",
        "/v1/models/toy:predict",
        '{"signature_name": "types", "instances": [{"a": 1, "h": [1,2]}]}',
        400,
    ),
    (
        "int64 overflow",
        "POST",
        "/v1/models/toy:predict",
        '{"signature_name": "types", "inputs": {"a": [100000000000000000000000], "s": ["x"], '
        '"h": [[1,2]]}}',
        400,
    ),
    (
        "float in an int tensor",
        "POST",
        "/v1/models/toy:predict",
        '{"signature_name": "types", "inputs": {"a": [1.5], "s": ["x"], "h": [[1,2]]}}',
        400,
    ),
    (
        "examples not a list",
        "POST",
        "/v1/models/toy:classify",
        '{"signature_name": "classify", "examples": {"x": 1}}',
        400,
    ),
    (
        "mixed feature values",
        "POST",
        "/v1/models/toy:classify",
        '{"signature_name": "classify", "examples": [{"x": [1, "a"]}]}',
        400,
    ),
    ("non-numeric version", "GET", "/v1/models/toy/versions/abc", None, 400),
    ("version past int64", "GET", "/v1/models/toy/versions/9223372036854775808", None, 400),
    ("version of 5,000 digits", "GET", "/v1/models/toy/versions/" + "9" * 5000, None, 400),
    ("POST to the status URL", "POST", "/v1/models/toy", "{}", 400),
    ("no model name", "GET", "/v1/models", None, 400),
    ("status of an unknown model", "GET", "/v1/models/nope", None, 404),
    ("metadata of an unknown version", "GET", "/v1/models/toy/versions/9/metadata", None, 404),
]


@pytest.mark.parametrize(
    "method, path, body, status", [c[1:] for c in REST_CASES], ids=[c[0] for c in REST_CASES]
)
def test_malformed_rest_requests(rest, method, path, body, status):
    got, reply = rest.request(method, path, body)
    assert got == status, reply
    assert set(reply) == {"error"} and reply["error"]
    assert "Traceback" not in reply["error"]


def test_rest_bodies_are_not_bound_by_the_grpc_channel_arguments(rest):
    # The server runs with grpc.max_receive_message_length=LIMIT, and a gRPC request over
    # it is RESOURCE_EXHAUSTED (above); TF Serving's HTTP server never reads those
    # arguments, so a REST body larger than LIMIT is served.
    rows = LIMIT // 14 + 1
    body = '{"instances": [' + "[1.0,2.0,3.0]," * (rows - 1) + "[1,2,3]]}"
    assert len(body) > LIMIT
    got, reply = rest.request("POST", "/v1/models/toy:predict", body)
    assert got == 200, reply
    assert len(reply["predictions"]) == rows and reply["predictions"][-1] == [2.0, 4.0, 6.0]


def test_server_is_alive_after_the_malformed_requests(server, client, rest):
    assert server.alive()
    spec, outputs = client.predict("toy", {"x": X})
    assert spec.version.value == 2
    assert rest.status("other")["model_version_status"][0]["state"] == "AVAILABLE"
    assert "Traceback" not in server.log()


def test_client_error_carries_the_status(client):
    with pytest.raises(ClientError) as caught:
        client.status("nope")
    assert caught.value.code == "NOT_FOUND"
