"""Property-based fuzzing of the model server: every request gets a proper status, never a crash.

Three levels, one property: whatever a client sends, the answer is OK or one of the codes a
well-behaved server uses for a bad request (ANSWERABLE), never INTERNAL or UNKNOWN, and the
server stays up with bounded memory.
  - the data plane in-process (fast, most examples): random TensorProtos, signatures, output
    filters, model specs and tf.Examples, decoded and encoded as the gRPC adapter does;
  - the gRPC wire: raw bytes (random, and valid requests with bytes flipped, cut or inserted)
    through a generic call to every method of a real server process;
  - the REST wire: raw bodies (random bytes and random JSON) to every REST verb.
Examples are derandomized: CI runs the same cases every time, and a failure prints the
request that caused it.
"""

import asyncio
import json
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    predict_pb2,
    regression_pb2,
)

from tests.serving_harness import (
    build_toy_model,
    in_process_dataplane,
    post_json,
    running_server,
)
from tfsp.serving import tensors
from tfsp.serving.dataplane import SpecRef
from tfsp.serving.errors import ServingError
from tfsp.serving.predict_wire import predict_response_bytes

ANSWERABLE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
# The HTTP statuses TF Serving's REST API gives those codes (serving/errors.py).
ANSWERABLE_HTTP = {200, 400, 404, 429, 503, 504}
# Growth of the server's resident memory over a whole wire-level run.
RSS_GROWTH_BOUND_MIB = 256
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---- strategies ----

DTYPES = st.one_of(st.sampled_from(sorted(types_pb2.DataType.values())), st.integers(0, 300))
DIMS = st.one_of(
    st.lists(
        st.one_of(st.integers(-2, 5), st.sampled_from([2**31, 2**40, 2**62, 2**63 - 1])),
        max_size=6,
    ),
    st.lists(st.integers(0, 2), min_size=63, max_size=70),  # around numpy's 64-dimension limit
)
_INT32 = st.integers(-(2**31), 2**31 - 1)
VALUE_FIELDS = {
    "float_val": st.lists(st.floats(width=32), max_size=10),
    "double_val": st.lists(st.floats(), max_size=10),
    "int_val": st.lists(_INT32, max_size=10),
    "half_val": st.lists(_INT32, max_size=10),
    "int64_val": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=10),
    "uint32_val": st.lists(st.integers(0, 2**32 - 1), max_size=10),
    "uint64_val": st.lists(st.integers(0, 2**64 - 1), max_size=10),
    "bool_val": st.lists(st.booleans(), max_size=10),
    "string_val": st.lists(st.binary(max_size=40), max_size=6),
}


@st.composite
def tensor_protos(draw: st.DrawFn) -> tensor_pb2.TensorProto:
    """Any TensorProto, well-formed or not: dtype, shape and values drawn independently."""
    proto = tensor_pb2.TensorProto(dtype=draw(DTYPES))
    if draw(st.integers(0, 20)) == 0:
        proto.tensor_shape.unknown_rank = True
    for size in draw(DIMS):
        proto.tensor_shape.dim.add(size=size)
    for field in draw(st.lists(st.sampled_from([*VALUE_FIELDS, "tensor_content"]), max_size=2)):
        if field == "tensor_content":
            proto.tensor_content = draw(st.binary(max_size=64))
        else:
            getattr(proto, field).extend(draw(VALUE_FIELDS[field]))
    return proto


def _example_bytes(x: float) -> bytes:
    feature = tf.train.Feature(float_list=tf.train.FloatList(value=[x]))
    return tf.train.Example(features=tf.train.Features(feature={"x": feature})).SerializeToString()


# Serialized tf.Examples for the signatures that parse them: valid, cut short, or garbage.
EXAMPLE_STRINGS = st.lists(
    st.one_of(
        st.floats(-10, 10).map(_example_bytes),
        st.binary(max_size=60),
        st.tuples(st.floats(-10, 10), st.integers(1, 12)).map(
            lambda t: _example_bytes(t[0])[: t[1]]
        ),
    ),
    min_size=1,
    max_size=4,
)


@st.composite
def example_tensor(draw: st.DrawFn) -> tensor_pb2.TensorProto:
    """A DT_STRING vector of serialized tf.Examples."""
    values = draw(EXAMPLE_STRINGS)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=values)
    proto.tensor_shape.dim.add(size=len(values))
    return proto


INPUT_NAMES = st.sampled_from(["x", "inputs", "a", "s", "h", "zz", ""])
SIGNATURES = st.sampled_from(["", "serving_default", "classify", "regress", "types", "nope"])
SPECS = st.builds(
    SpecRef,
    name=st.sampled_from(["toy", "toy", "other", ""]),
    version=st.one_of(st.none(), st.sampled_from([1, 2, 0, -1, 2**62])),
    label=st.one_of(st.none(), st.sampled_from(["", "stable", "x" * 300])),
)
PREDICT_INPUTS = st.dictionaries(
    INPUT_NAMES, st.one_of(tensor_protos(), example_tensor()), max_size=3
)
OUTPUT_FILTERS = st.lists(st.sampled_from(["y", "scores", "classes", "zz", ""]), max_size=3)
FEATURE_VALUES = st.one_of(
    st.lists(st.floats(width=32), max_size=3).map(
        lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=v))
    ),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3).map(
        lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=v))
    ),
    st.lists(st.binary(max_size=10), max_size=3).map(
        lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=v))
    ),
)
EXAMPLES = st.lists(
    st.dictionaries(st.sampled_from(["x", "y", ""]), FEATURE_VALUES, max_size=2).map(
        lambda f: tf.train.Example(features=tf.train.Features(feature=f))
    ),
    max_size=3,
)


def _code_of(call: object) -> grpc.StatusCode:
    """Run a data-plane coroutine the way the gRPC adapter does; its status code."""
    try:
        asyncio.run(call)
    except ServingError as exc:
        return exc.code
    return grpc.StatusCode.OK


def _predict_code(
    dataplane: object,
    spec: SpecRef,
    signature: str,
    inputs: dict[str, tensor_pb2.TensorProto],
    output_filter: list[str],
) -> grpc.StatusCode:
    """Predict as the gRPC adapter runs it: decode the inputs, call, encode the outputs."""

    async def predict() -> None:
        arrays = {name: tensors.to_numpy(name, proto) for name, proto in inputs.items()}
        prediction = await dataplane.predict(spec, signature, arrays, output_filter)
        written = predict_response_bytes(
            prediction.name,
            prediction.version,
            prediction.signature,
            prediction.outputs,
            as_content=False,
        )
        response = predict_pb2.PredictResponse.FromString(written)
        assert set(response.outputs) == set(prediction.outputs)

    return _code_of(predict())


# ---- the data plane, in-process ----


@pytest.fixture(scope="module")
def dataplane(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-models") / "toy"
    build_toy_model(root / "1", 1.0)
    build_toy_model(root / "2", 2.0)
    with in_process_dataplane(root) as plane:
        yield plane


@FUZZ
@given(spec=SPECS, signature=SIGNATURES, inputs=PREDICT_INPUTS, output_filter=OUTPUT_FILTERS)
def test_predict_answers_every_request_with_a_client_status(
    dataplane, spec, signature, inputs, output_filter
):
    assert _predict_code(dataplane, spec, signature, inputs, output_filter) in ANSWERABLE


# Requests that reach the graph: a served version, a real signature, its input names.
_SIGNATURE_INPUTS = {
    "serving_default": ["x"],
    "classify": ["inputs"],
    "regress": ["inputs"],
    "types": ["a", "s", "h"],
}


@st.composite
def routed_requests(draw: st.DrawFn) -> tuple[str, dict[str, tensor_pb2.TensorProto]]:
    """(signature, inputs) whose names match the signature; the tensors themselves random."""
    signature = draw(st.sampled_from(sorted(_SIGNATURE_INPUTS)))
    tensor = example_tensor() if signature in ("classify", "regress") else tensor_protos()
    inputs = {
        name: draw(st.one_of(tensor, tensor_protos())) for name in _SIGNATURE_INPUTS[signature]
    }
    return signature, inputs


def _deep_string_tensor(rank: int) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"p"])
    for _ in range(rank):
        proto.tensor_shape.dim.add(size=1)
    return proto


@settings(FUZZ, max_examples=300)
@given(request=routed_requests(), version=st.sampled_from([None, 1, 2]))
# Found by this test: a DT_STRING tensor of 33+ dimensions crashed the process in
# TensorFlow's Python binding (servable.STRING_MAX_RANK).
@example(request=("classify", {"inputs": _deep_string_tensor(33)}), version=None)
def test_requests_that_reach_the_graph_get_a_client_status(dataplane, request, version):
    signature, inputs = request
    spec = SpecRef("toy", version)

    assert _predict_code(dataplane, spec, signature, inputs, []) in ANSWERABLE


@FUZZ
@given(spec=SPECS, signature=SIGNATURES, examples=EXAMPLES, verb=st.sampled_from(["c", "r"]))
def test_classify_and_regress_answer_every_request_with_a_client_status(
    dataplane, spec, signature, examples, verb
):
    request = classification_pb2.ClassificationRequest()
    request.input.example_list.examples.extend(examples)
    call = dataplane.classify if verb == "c" else dataplane.regress

    async def run() -> None:
        await call(spec, signature, request.input)

    assert _code_of(run()) in ANSWERABLE


@FUZZ
@given(spec=SPECS)
def test_status_and_metadata_answer_every_spec_with_a_client_status(dataplane, spec):
    for call in (
        lambda: dataplane.model_status(spec),
        lambda: dataplane.metadata(spec, ["signature_def"]),
    ):
        try:
            call()
        except ServingError as exc:
            assert exc.code in ANSWERABLE
    # The model is still there and answers after everything above.
    assert dataplane.resolve(SpecRef("toy")).servable.version == 2


# ---- the wire: a real server process ----

_METHODS = {
    "/tensorflow.serving.PredictionService/Predict": predict_pb2.PredictRequest,
    "/tensorflow.serving.PredictionService/Classify": classification_pb2.ClassificationRequest,
    "/tensorflow.serving.PredictionService/Regress": regression_pb2.RegressionRequest,
    "/tensorflow.serving.PredictionService/MultiInference": inference_pb2.MultiInferenceRequest,
    "/tensorflow.serving.PredictionService/GetModelMetadata": (
        get_model_metadata_pb2.GetModelMetadataRequest
    ),
    "/tensorflow.serving.ModelService/GetModelStatus": get_model_status_pb2.GetModelStatusRequest,
    "/tensorflow.serving.ModelService/HandleReloadConfigRequest": (
        model_management_pb2.ReloadConfigRequest
    ),
}


def _valid_requests() -> list[bytes]:
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "toy"
    tensors.from_numpy(np.zeros((2, 3), np.float32), predict.inputs["x"])
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "toy"
    classify.model_spec.signature_name = "classify"
    classify.input.example_list.examples.add().ParseFromString(_example_bytes(0.5))
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "toy"
    return [m.SerializeToString() for m in (predict, classify, status)]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid request with a few bytes flipped, cut or inserted."""
    data = bytearray(draw(st.sampled_from(_valid_requests())))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-served") / "toy"
    build_toy_model(root / "1", 1.0)
    with running_server(
        "--model_name=toy", f"--model_base_path={root}", log_path=root.parent / "server.log"
    ) as proc:
        channel = grpc.insecure_channel(proc.address)
        proc.calls = {
            method: channel.unary_unary(
                method, request_serializer=lambda b: b, response_deserializer=lambda b: b
            )
            for method in _METHODS
        }
        status, _ = post_json(proc, "/v1/models/toy:predict", b'{"instances": [[1, 2, 3]]}')
        assert status == 200, proc.log()
        proc.rss_start = _rss_mib(proc.process.pid)
        yield proc
        channel.close()


@pytest.mark.integration
@FUZZ
@given(method=st.sampled_from(sorted(_METHODS)), data=st.one_of(st.binary(max_size=300), mutated()))
def test_grpc_wire_bytes_get_a_client_status(server, method, data):
    try:
        server.calls[method](data, timeout=30)
        code = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code = exc.code()
    assert code in ANSWERABLE, (code, server.log())


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["instances", "inputs", "signature_name", "examples", "x", "b64"]),
            inner,
            max_size=3,
        )
    ),
    max_leaves=20,
)
REST_PATHS = st.sampled_from(
    [
        "/v1/models/toy:predict",
        "/v1/models/toy:classify",
        "/v1/models/toy:regress",
        "/v1/models/toy/versions/1:predict",
        "/v1/models/toy/labels/x:predict",
        "/v1/models/nope:predict",
        "/v1/models/toy:nope",
    ]
)


@pytest.mark.integration
@FUZZ
@given(
    path=REST_PATHS,
    body=st.one_of(st.binary(max_size=200), JSON.map(lambda v: json.dumps(v).encode())),
)
def test_rest_bodies_get_a_client_status(server, path, body):
    status, reply = post_json(server, path, body, {"Content-Type": "application/json"})
    assert status in ANSWERABLE_HTTP, (status, reply, server.log())
    if status != 200:
        assert isinstance(reply.get("error"), str) and reply["error"], reply


@pytest.mark.integration
def test_server_survived_the_wire_fuzzing_with_bounded_memory(server):
    # Runs after the wire-level tests above (pytest keeps a module's order).
    assert server.alive(), server.log()
    status, reply = post_json(server, "/v1/models/toy:predict", b'{"instances": [[1, 2, 3]]}')
    assert (status, reply) == (200, {"predictions": [[1.0, 2.0, 3.0]]})
    growth = _rss_mib(server.process.pid) - server.rss_start
    assert growth < RSS_GROWTH_BOUND_MIB, f"server RSS grew by {growth:.0f} MiB"
