"""The model manager and the data plane, in-process, over each kind of model and runner.

The layers under the gRPC and REST adapters (serving/manager.py, serving/dataplane.py,
serving/batching.py), tested the way KServe tests its model repository and data plane: no
server process, no sockets, real SavedModels on TF Serving's load path. Each test runs for
every model kind (a tf.Module with Predict/Classify/Regress signatures; an image encoder
shaped like our exports' `predict_images`) and every runner (direct, batching). What the
protocol adapters add on top is tested against a real server in the integration tier.
"""

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_status_pb2, inference_pb2, input_pb2

from tests.serving_harness import (
    BatchRecorder,
    build_toy_model,
    copy_version,
    in_process_dataplane,
)
from tfsp.core.signatures import CODES_KEY, IMAGES_INPUT, PREDICT_IMAGES
from tfsp.serving import tensors
from tfsp.serving.config import BatchingSettings, model_settings, single_model_config
from tfsp.serving.dataplane import (
    CLASSIFY_METHOD,
    REGRESS_METHOD,
    DataPlane,
    SpecRef,
    prepare_predict,
)
from tfsp.serving.errors import ServingError

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


class _Encoder(tf.Module):
    """images [N, 32, 32, 1] → codes [N, 4]: the shape of our encoders' `predict_images`."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.weights = tf.Variable(
            tf.random.stateless_normal([1024, 4], seed=[1, 2]) * scale, name="weights"
        )

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 1], tf.float32, name="images")])
    def encode(self, images: tf.Tensor) -> dict:
        return {CODES_KEY: tf.matmul(tf.reshape(images, [-1, 1024]), self.weights)}


def _build_encoder(path: Path, scale: float) -> Path:
    module = _Encoder(scale)
    tf.saved_model.save(
        module,
        str(path),
        signatures={"serving_default": module.encode, PREDICT_IMAGES: module.encode},
    )
    return path


@dataclass(frozen=True)
class ModelKind:
    """How to build a version of one kind of model, and one request it answers."""

    name: str
    build: object  # (path, scale) -> path
    signature: str
    input_name: str
    output_name: str
    batch: object  # rows -> an input array

    def inputs(self, rows: int) -> dict[str, np.ndarray]:
        return {self.input_name: self.batch(rows)}


MODEL_KINDS = [
    ModelKind(
        "module", build_toy_model, "serving_default", "x", "y",
        lambda rows: np.arange(rows * 3, dtype=np.float32).reshape(rows, 3),
    ),
    ModelKind(
        "encoder", _build_encoder, PREDICT_IMAGES, IMAGES_INPUT, CODES_KEY,
        lambda rows: np.random.default_rng(rows).random((rows, 32, 32, 1), dtype=np.float32),
    ),
]  # fmt: skip
RUNNERS = {
    "direct": None,
    "batching": BatchingSettings(max_batch_size=8, batch_timeout_micros=2000, num_batch_threads=2),
}


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[tuple[str, float], Path]:
    """Each kind built once per scale; tests copy versions out of here."""
    root = tmp_path_factory.mktemp("builds")
    return {
        (kind.name, scale): kind.build(root / f"{kind.name}-{scale}", scale)
        for kind in MODEL_KINDS
        for scale in (1.0, 2.0)
    }


@pytest.fixture(params=MODEL_KINDS, ids=lambda kind: kind.name)
def kind(request) -> ModelKind:
    return request.param


@pytest.fixture(params=list(RUNNERS), ids=str)
def runner(request) -> BatchingSettings | None:
    return RUNNERS[request.param]


def _tf2_outputs(version_dir: Path, kind: ModelKind, rows: int) -> np.ndarray:
    """What TensorFlow's own loader computes for the same request (the reference)."""
    signature = tf.saved_model.load(str(version_dir)).signatures[kind.signature]
    inputs = {name: tf.constant(value) for name, value in kind.inputs(rows).items()}
    return signature(**inputs)[kind.output_name].numpy()


def _predict(plane, kind: ModelKind, rows: int, version: int | None = None) -> object:
    spec = SpecRef(kind.name, version)
    return asyncio.run(plane.predict(spec, kind.signature, kind.inputs(rows)))


def _error(call) -> ServingError:
    with pytest.raises(ServingError) as caught:
        call()
    return caught.value


def test_a_version_loads_and_answers_as_tensorflow_does(builds, kind, runner, tmp_path):
    copy_version(builds[kind.name, 1.0], tmp_path / kind.name / "1")
    with in_process_dataplane(tmp_path / kind.name, kind.name, runner) as plane:
        (status,) = plane.model_status(SpecRef(kind.name)).model_version_status
        assert (status.version, status.state, status.status.error_code) == (1, AVAILABLE, 0)
        metadata = plane.metadata(SpecRef(kind.name), ["signature_def"])
        assert metadata.model_spec.version.value == 1
        prediction = _predict(plane, kind, 5)
        assert (prediction.name, prediction.version, prediction.signature) == (
            kind.name, 1, kind.signature,
        )  # fmt: skip
        expected = _tf2_outputs(tmp_path / kind.name / "1", kind, 5)
        np.testing.assert_allclose(prediction.outputs[kind.output_name], expected, rtol=1e-6)


def test_concurrent_requests_each_get_their_own_rows(builds, kind, runner, tmp_path):
    copy_version(builds[kind.name, 1.0], tmp_path / kind.name / "1")
    # Distinct inputs per request, so rows handed back to the wrong caller would show.
    requests = [
        {kind.input_name: kind.batch(rows) + i}
        for i, rows in enumerate((1, 2, 3, 1, 4, 2, 1, 3, 5, 1, 2, 1))
    ]
    with in_process_dataplane(tmp_path / kind.name, kind.name, runner) as plane:

        async def together() -> list:
            spec = SpecRef(kind.name)
            return await asyncio.gather(
                *(plane.predict(spec, kind.signature, inputs) for inputs in requests)
            )

        async def one_by_one() -> list:
            spec = SpecRef(kind.name)
            return [await plane.predict(spec, kind.signature, inputs) for inputs in requests]

        # Batched rows may be summed in another order than alone: float32 rounding only.
        for merged, alone in zip(asyncio.run(together()), asyncio.run(one_by_one()), strict=True):
            np.testing.assert_allclose(
                merged.outputs[kind.output_name], alone.outputs[kind.output_name], rtol=1e-4
            )


def test_a_new_version_replaces_the_old_and_a_broken_one_never_does(builds, kind, runner, tmp_path):
    base = tmp_path / kind.name
    copy_version(builds[kind.name, 1.0], base / "1")
    with in_process_dataplane(base, kind.name, runner) as plane:
        first = _predict(plane, kind, 2).outputs[kind.output_name]
        copy_version(builds[kind.name, 2.0], base / "2")
        plane.manager.poll()
        second = _predict(plane, kind, 2)
        assert second.version == 2
        np.testing.assert_allclose(second.outputs[kind.output_name], 2 * first, rtol=1e-5)
        assert _error(lambda: _predict(plane, kind, 2, version=1)).code == (
            grpc.StatusCode.NOT_FOUND
        )
        broken = base / "3"
        shutil.copytree(builds[kind.name, 1.0], broken)
        (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
        plane.manager.poll()
        statuses = {
            s.version: s for s in plane.model_status(SpecRef(kind.name)).model_version_status
        }
        assert statuses[3].state == END and statuses[3].status.error_code != 0
        assert statuses[2].state == AVAILABLE
        assert _predict(plane, kind, 1).version == 2


def test_bad_requests_get_their_status_codes_and_the_model_keeps_serving(
    builds, kind, runner, tmp_path
):
    copy_version(builds[kind.name, 1.0], tmp_path / kind.name / "1")
    with in_process_dataplane(tmp_path / kind.name, kind.name, runner) as plane:
        spec = SpecRef(kind.name)
        # No shape case: TF Serving does not hold inputs to the signature's shapes either;
        # the graph decides (x * scale answers a [2, 7] x).
        cases = {
            "no such model": (SpecRef("nope"), kind.signature, kind.inputs(1)),
            "no such signature": (spec, "nope", kind.inputs(1)),
            "wrong input name": (spec, kind.signature, {"wrong": kind.batch(1)}),
            "wrong dtype": (spec, kind.signature, {kind.input_name: kind.batch(1).astype(int)}),
        }
        codes = {
            case: _error(lambda a=args: asyncio.run(plane.predict(*a))).code
            for case, args in cases.items()
        }
        assert codes == {
            "no such model": grpc.StatusCode.NOT_FOUND,
            # TF Serving's predict_util.cc: "Serving signature key ... not found."
            "no such signature": grpc.StatusCode.FAILED_PRECONDITION,
            "wrong input name": grpc.StatusCode.INVALID_ARGUMENT,
            "wrong dtype": grpc.StatusCode.INVALID_ARGUMENT,
        }
        assert _predict(plane, kind, 1).version == 1


def test_removing_a_model_from_the_config_unloads_it(builds, kind, runner, tmp_path):
    copy_version(builds[kind.name, 1.0], tmp_path / kind.name / "1")
    copy_version(builds[kind.name, 2.0], tmp_path / "other" / "1")
    with in_process_dataplane(tmp_path / kind.name, kind.name, runner) as plane:
        both = single_model_config(kind.name, str(tmp_path / kind.name))
        other = both.model_config_list.config.add()
        other.CopyFrom(
            single_model_config("other", str(tmp_path / "other")).model_config_list.config[0]
        )
        plane.manager.configure(model_settings(both))
        assert _predict(plane, kind, 1).version == 1
        plane.manager.configure(
            model_settings(single_model_config("other", str(tmp_path / "other")))
        )
        assert _error(lambda: _predict(plane, kind, 1)).code == grpc.StatusCode.NOT_FOUND
        (status,) = plane.model_status(SpecRef(kind.name)).model_version_status
        assert status.state == END


def test_classify_and_regress_run_on_example_signatures(builds, runner, tmp_path):
    copy_version(builds["module", 1.0], tmp_path / "module" / "1")
    examples = input_pb2.Input()
    for x in (0.25, 0.75):
        example = examples.example_list.examples.add()
        example.features.feature["x"].float_list.value.append(x)
    with in_process_dataplane(tmp_path / "module", "module", runner) as plane:
        _, classified = asyncio.run(plane.classify(SpecRef("module"), "classify", examples))
        scores = [[c.score for c in row.classes] for row in classified.classifications]
        np.testing.assert_allclose(scores, [[0.25, 0.75], [0.75, 0.25]])
        _, regressed = asyncio.run(plane.regress(SpecRef("module"), "regress", examples))
        np.testing.assert_allclose([r.value for r in regressed.regressions], [0.25, 0.75])


def _two_examples() -> input_pb2.Input:
    examples = input_pb2.Input()
    for x in (0.25, 0.75):
        example = examples.example_list.examples.add()
        example.features.feature["x"].float_list.value.append(x)
    return examples


def test_multi_inference_runs_every_task_in_one_session_run(builds, runner, tmp_path):
    """multi_inference.cc feeds every task's input and fetches every task's outputs in one
    Session::Run; with batching, that run is one batch (its own tensor signature)."""
    copy_version(builds["module", 1.0], tmp_path / "module" / "1")
    recorder = BatchRecorder()
    request = inference_pb2.MultiInferenceRequest(input=_two_examples())
    for signature, method in (("classify", CLASSIFY_METHOD), ("regress", REGRESS_METHOD)):
        task = request.tasks.add(method_name=method)
        task.model_spec.name, task.model_spec.signature_name = "module", signature

    with in_process_dataplane(tmp_path / "module", "module", runner, recorder) as plane:
        results = asyncio.run(plane.multi_inference(request)).results
        _, classified = asyncio.run(plane.classify(SpecRef("module"), "classify", request.input))
        _, regressed = asyncio.run(plane.regress(SpecRef("module"), "regress", request.input))
    assert [r.model_spec.signature_name for r in results] == ["classify", "regress"]
    assert results[0].classification_result == classified
    assert results[1].regression_result == regressed
    assert [r.value for r in regressed.regressions] == pytest.approx([0.25, 0.75])
    if runner is not None:  # the MultiInference, then Classify, then Regress
        assert recorder.batches == [(2, 0), (2, 0), (2, 0)]


def test_the_init_op_signature_is_found_and_fails_where_tf_serving_fails(runner, tmp_path):
    """TF Serving looks `__saved_model_init_op` up like any signature: Classify and
    MultiInference refuse its shape, Predict runs it and the session fails to fetch a NoOp
    (a batching session first refuses a run without inputs)."""
    build_toy_model(tmp_path / "toy" / "1", 1.0)
    init = "__saved_model_init_op"
    multi = inference_pb2.MultiInferenceRequest(input=_two_examples())
    task = multi.tasks.add(method_name=CLASSIFY_METHOD)
    task.model_spec.name, task.model_spec.signature_name = "toy", init
    with in_process_dataplane(tmp_path / "toy", "toy", runner) as plane:
        predicted = _error(lambda: asyncio.run(plane.predict(SpecRef("toy"), init, {})))
        classified = _error(
            lambda: asyncio.run(plane.classify(SpecRef("toy"), init, _two_examples()))
        )
        inferred = _error(lambda: asyncio.run(plane.multi_inference(multi)))
    if runner is None:
        assert predicted.code == grpc.StatusCode.OUT_OF_RANGE
        assert (
            predicted.message
            == "Node 'NoOp' (type: 'NoOp', num of outputs: 0) does not have output 0"
        )
    else:
        assert predicted.code == grpc.StatusCode.INVALID_ARGUMENT
        assert predicted.message == "Batching Run() must have at least one input tensor"
    for error in (classified, inferred):
        assert (error.code, error.message) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "Expected one input Tensor.",
        )


def test_the_method_name_check_refuses_other_methods_as_tf_serving_does(runner, tmp_path):
    """--enable_signature_method_name_check: TF2's saver writes every signature as
    tensorflow/serving/predict, so Classify, Regress and MultiInference refuse them
    (classifier.cc, regressor.cc) while Predict takes them; off, the default, all run."""
    build_toy_model(tmp_path / "toy" / "1", 1.0)
    multi = inference_pb2.MultiInferenceRequest(input=_two_examples())
    task = multi.tasks.add(method_name=REGRESS_METHOD)
    task.model_spec.name, task.model_spec.signature_name = "toy", "regress"
    was = "Was: tensorflow/serving/predict"
    with in_process_dataplane(tmp_path / "toy", "toy", runner) as unchecked:
        checked = DataPlane(unchecked.manager, method_name_check=True)
        assert asyncio.run(checked.predict(SpecRef("toy"), "", {"x": np.ones((1, 3), np.float32)}))
        classify = checked.classify(SpecRef("toy"), "classify", _two_examples())
        regress = checked.regress(SpecRef("toy"), "regress", _two_examples())
        errors = [_error(lambda c=c: asyncio.run(c)) for c in (classify, regress)]
        errors.append(_error(lambda: asyncio.run(checked.multi_inference(multi))))
        assert asyncio.run(unchecked.classify(SpecRef("toy"), "classify", _two_examples()))
    assert [(e.code, e.message) for e in errors] == [
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            f"Expected {kind} signature method_name to be {m}. {was}",
        )
        for kind, m in (
            ("classification", CLASSIFY_METHOD),
            ("regression", REGRESS_METHOD),
            ("regression", REGRESS_METHOD),
        )
    ]
    signature = _signature_with_default()
    signature.method_name = "tensorflow/serving/other"
    with pytest.raises(ServingError) as caught:
        prepare_predict(signature, {}, None, tensors.to_numpy, method_name_check=True)
    assert caught.value.code == grpc.StatusCode.INTERNAL  # predict_util.cc VerifySignature
    assert caught.value.message == (
        "Expected prediction signature method_name to be one of {tensorflow/serving/predict, "
        "tensorflow/serving/classify, tensorflow/serving/regress}. Was: tensorflow/serving/other"
    )


def _signature_with_default() -> meta_graph_pb2.SignatureDef:
    signature = meta_graph_pb2.SignatureDef()
    for alias in ("a", "b"):
        signature.inputs[alias].name = f"{alias}:0"
        signature.inputs[alias].dtype = types_pb2.DT_FLOAT
    signature.defaults["b"].CopyFrom(tf.make_tensor_proto(np.float32(2.0)))
    signature.outputs["y"].name = "y:0"
    return signature


def test_predict_checks_names_before_parsing_tensors_in_tf_servings_words():
    # predict_util.cc PreProcessPrediction, then TF's GetInputValues, then Session::Run.
    signature = _signature_with_default()
    unreadable = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=b"\x00")
    unreadable.tensor_shape.dim.add(size=3)
    cases = [
        # three tensors for two inputs: the count is checked before any tensor is read
        ({"a": unreadable, "b": unreadable, "c": unreadable}, "input size does not match"),
        ({"a": unreadable}, "tensor parsing error: a (tensor_content has 1 bytes, expected 12"),
        (
            {"a": tf.make_tensor_proto(np.float32(1.0)), "c": unreadable},
            "Inputs contains invalid name. Used request inputs: a, request input: a,c",
        ),
        (
            {"a": tf.make_tensor_proto(np.int32(1))},
            "Expects arg[0] to be float but int32 is provided",
        ),
    ]
    for inputs, message in cases:
        with pytest.raises(ServingError) as caught:
            prepare_predict(signature, dict(inputs), None, tensors.to_numpy)
        assert caught.value.message.startswith(message), caught.value.message
    inputs: dict = {"a": tf.make_tensor_proto(np.float32(1.0))}
    assert prepare_predict(signature, inputs, None, tensors.to_numpy) is None
    assert {k: v.tolist() for k, v in inputs.items()} == {"a": 1.0, "b": 2.0}
