"""Servable: loaded the way TF Serving loads a SavedModel, and answering as TF2's loader does."""

import re
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

from tests.serving_harness import (
    build_counting_model,
    build_toy_model,
    build_unservable_model,
    in_process_dataplane,
)
from tfsp.serving.errors import ServingError
from tfsp.serving.servable import RUN_TIMED_OUT, LoadError, SessionOptions, load_servable

EXAMPLE = tf.train.Example(
    features=tf.train.Features(
        feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[0.25]))}
    )
).SerializeToString()
INPUTS = {
    "serving_default": {"x": np.arange(6, dtype=np.float32).reshape(2, 3)},
    "classify": {"inputs": np.array([EXAMPLE, EXAMPLE], dtype=object)},
    "regress": {"inputs": np.array([EXAMPLE], dtype=object)},
    "types": {
        "a": np.array([1, -2], dtype=np.int64),
        "s": np.array([b"p", b"q"], dtype=object),
        "h": np.array([[1, 2], [3, 4]], dtype=np.int32),
    },
}


@pytest.fixture(scope="module")
def toy_path(tmp_path_factory):
    return build_toy_model(tmp_path_factory.mktemp("servable") / "toy" / "2", 2.0)


@pytest.fixture(scope="module")
def servable(toy_path):
    return load_servable("toy", 2, str(toy_path))


@pytest.mark.parametrize("signature", sorted(INPUTS))
def test_graph_mode_answers_as_tf2s_loader(servable, toy_path, signature):
    eager = tf.saved_model.load(str(toy_path)).signatures[signature]
    expected = eager(**{k: tf.constant(v) for k, v in INPUTS[signature].items()})
    got = servable.run(signature, INPUTS[signature])
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.numpy().dtype, key
        np.testing.assert_array_equal(got[key], value.numpy())


def test_only_the_requested_outputs_are_fetched(servable):
    outputs = servable.run("types", INPUTS["types"], ["h_sum"])
    assert list(outputs) == ["h_sum"]
    np.testing.assert_array_equal(outputs["h_sum"], [3, 7])


def test_the_init_op_is_a_signature_whose_run_fails_in_the_session(servable):
    """TF Serving finds `__saved_model_init_op` by name (its metadata lists it) and fetching
    its output, an op with no outputs, fails in Session::Run: TensorFlow's own error."""
    assert "__saved_model_init_op" in servable.signature_defs
    with pytest.raises(tf.errors.OutOfRangeError, match="'NoOp'.*does not have output 0"):
        servable.run("__saved_model_init_op", {})


def test_a_run_by_tensor_names_fetches_in_order_and_repeats(servable):
    definition = servable.signature_defs["serving_default"]
    x, y = definition.inputs["x"].name, definition.outputs["y"].name
    values = servable.run_tensors({x: INPUTS["serving_default"]["x"]}, (y, y))
    assert len(values) == 2
    np.testing.assert_array_equal(values[0], values[1])
    np.testing.assert_array_equal(values[0], INPUTS["serving_default"]["x"] * 2.0)


def test_a_permuted_output_filter_gets_its_order_back(servable):
    first = servable.run("types", INPUTS["types"], ["a2", "h_sum"])
    second = servable.run("types", INPUTS["types"], ["h_sum", "a2"])
    assert list(second) == ["h_sum", "a2"]
    for key, value in first.items():
        np.testing.assert_array_equal(second[key], value)


def test_a_tensor_the_graph_lacks_is_refused_in_tensorflows_words(servable):
    x = servable.signature_defs["serving_default"].inputs["x"].name
    feeds = {x: INPUTS["serving_default"]["x"]}
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        servable.run_tensors(feeds, ("nope:0",))
    assert caught.value.message == (
        "Tensor nope:0, specified in either feed_devices or fetch_devices was not found in the "
        "Graph"
    )
    with pytest.raises(tf.errors.OutOfRangeError, match=r"does not have output 7"):
        servable.run_tensors(feeds, (x.split(":")[0] + ":7",))
    # "op" alone is output 0, as TensorFlow's ParseTensorName reads it
    y = servable.signature_defs["serving_default"].outputs["y"].name
    (value,) = servable.run_tensors({x.split(":")[0]: feeds[x]}, (y.split(":")[0],))
    np.testing.assert_array_equal(value, feeds[x] * 2.0)


def test_shapes_are_left_to_the_graph(servable):
    # The signature says [None, 3]; TF Serving feeds the tensor as it is and x * scale
    # broadcasts over any shape, so this answers (as it does there).
    got = servable.run("serving_default", {"x": np.ones((2, 4), np.float32)})
    np.testing.assert_array_equal(got["y"], np.full((2, 4), 2.0, np.float32))


def test_a_wrong_dtype_is_the_sessions_invalid_argument(servable):
    # Session::Run by names, as TF Serving calls it (a callable would say "Type mismatch")
    match = r"^Expects arg\[0\] to be float but int32 is provided$"
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        servable.run("serving_default", {"x": np.ones((1, 3), np.int32)})


def test_a_failing_op_raises_tensorflows_error_type(servable):
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        servable.run("regress", {"inputs": np.array([b"not an Example"], dtype=object)})
    assert "parse" in caught.value.message.lower()


def test_string_inputs_past_the_bindings_limit_are_refused_before_the_session(servable):
    # TensorFlow's Python binding kills the process on a DT_STRING feed of more than 32
    # dimensions (tests/test_serving_fuzz.py found it); 32 still runs.
    inputs = dict(INPUTS["types"])
    inputs["s"] = np.full((1,) * 32, b"p", dtype=object)
    assert servable.run("types", inputs, ["s_bytes"])["s_bytes"].shape == (1,) * 32
    tensor = re.escape(servable.signature_defs["types"].inputs["s"].name)  # the feed's name
    for shape in [(1,) * 33, (2, 0) + (1,) * 62]:  # empty ones crash there too
        inputs["s"] = np.full(shape, b"p", dtype=object)
        with pytest.raises(tf.errors.InvalidArgumentError, match=f"'{tensor}'.*got {len(shape)}"):
            servable.run("types", inputs)


class _DeepStrings(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([1], tf.string, name="s")])
    def deep(self, s: tf.Tensor) -> dict:
        return {"deep": tf.reshape(s, [1] * 33)}


def test_a_string_output_past_the_bindings_limit_is_refused_at_load(tmp_path):
    module = _DeepStrings()
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": module.deep})
    with pytest.raises(LoadError, match="'serving_default' output 'deep'.*declared 33"):
        load_servable("deep", 1, str(tmp_path / "1"))


@pytest.mark.integration
def test_a_keras_model_whose_variables_nothing_restores_loads_but_fails_its_call(tmp_path):
    # What TF Serving does with a Keras 3 model saved inside a tf.Module: the load succeeds,
    # every call fails. TF2's loader runs the same model fine, which hid this.
    path = build_unservable_model(tmp_path / "bad" / "1")
    np.testing.assert_array_equal(
        tf.saved_model.load(str(path)).signatures["serving_default"](x=tf.ones((1, 3)))["y"].shape,
        (1, 2),
    )
    broken = load_servable("bad", 1, str(path))
    with pytest.raises(tf.errors.FailedPreconditionError, match="Could not find variable"):
        broken.run("serving_default", {"x": np.ones((1, 3), np.float32)})


def test_a_missing_or_garbled_savedmodel_is_a_one_line_load_error(tmp_path):
    with pytest.raises(LoadError, match="no saved_model.pb"):
        load_servable("m", 1, str(tmp_path))
    (tmp_path / "saved_model.pb").write_bytes(b"\x00garbage")
    with pytest.raises(LoadError, match="is not a SavedModel protobuf"):
        load_servable("m", 1, str(tmp_path))


def test_tags_no_meta_graph_has_are_not_found_in_tensorflows_words(tmp_path):
    # --saved_model_tags="serve, gpu" asks for " gpu" (server.cc does not trim): the
    # toy's only MetaGraph is tagged serve, so TensorFlow's reader refuses it, NOT_FOUND.
    path = build_toy_model(tmp_path / "toy" / "1", 1.0)
    with pytest.raises(LoadError) as caught:
        load_servable("toy", 1, str(path), tags=(" gpu", "serve"))
    assert caught.value.code == tf.errors.NOT_FOUND
    assert str(caught.value).startswith(
        "Could not find meta graph def matching supplied tags: {  gpu serve }. To inspect "
        "available tag-sets in the SavedModel, please use the SavedModel CLI: "
        "`saved_model_cli` ("
    )
    assert str(caught.value).endswith("has [['serve']])")


def _build_gpu_pinned_graph(path: Path) -> Path:
    """A TF1-style SavedModel (y = x * v) whose variable is pinned to /device:GPU:0 and kept
    there (`clear_devices=False`), as a graph exported on a GPU machine can be."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        with tf.device("/device:GPU:0"):
            v = tf.compat.v1.get_variable("v", initializer=3.0)
            y = tf.identity(x * v, name="y")
        soft = config_pb2.ConfigProto(allow_soft_placement=True)  # this machine has no GPU
        with tf.compat.v1.Session(graph=graph, config=soft) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(str(path))
            signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(
                session, ["serve"], {"serving_default": signature}, clear_devices=False
            )
            builder.save()
    return path


def test_a_graph_pinned_to_a_missing_gpu_fails_to_load_with_tensorflows_error(tmp_path):
    """TF Serving sets no allow_soft_placement (server.cc, bundle_factory_util.cc), so its
    session refuses the placement; the error is the session's own, not Python's restore
    advice, with its code. A session config file that allows soft placement loads it.
    Sessions here see no GPU (device_count), as on a CPU-only node, whatever this host has."""
    path = _build_gpu_pinned_graph(tmp_path / "pinned" / "1")
    cpu_only = config_pb2.ConfigProto(device_count={"GPU": 0})
    node = SessionOptions(base=cpu_only.SerializeToString())
    with pytest.raises(LoadError) as caught:
        load_servable("pinned", 1, str(path), session_options=node)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    message = str(caught.value)
    assert re.fullmatch(
        rf"loading {re.escape(str(path))} failed: Cannot assign a device for operation v\S*: "
        r"\{\{node v\S*\}\} was explicitly assigned to /device:GPU:0 but available devices are "
        r"\[ /job:localhost/replica:0/task:0/device:CPU:0 \]\. Make sure the device "
        r"specification refers to a valid device\.",
        message,
    ), message
    # As TF Serving's startup, the model manager refuses to start with it (its
    # WaitUntilModelsAvailable), naming the version's status, code and text
    with pytest.raises(ServingError) as failed:
        with in_process_dataplane(path.parent, "pinned", session_options=node):
            pass
    assert failed.value.code == grpc.StatusCode.UNKNOWN
    assert failed.value.message == (
        "1 model(s) did not become available: {{{name: pinned version: 1} due to error: "
        f"INVALID_ARGUMENT: {message}}}, }}"
    )
    cpu_only.allow_soft_placement = True
    soft = SessionOptions(base=cpu_only.SerializeToString())
    servable = load_servable("pinned", 1, str(path), session_options=soft)
    y = servable.run("serving_default", {"x": np.array([1.0, 2.0], np.float32)})["y"]
    np.testing.assert_array_equal(y, [3.0, 6.0])
    servable.close()


class _PinnedInsideFunction(tf.Module):
    def __init__(self) -> None:
        self.w = tf.Variable(2.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def scale(self, x: tf.Tensor) -> dict:
        with tf.device("/device:GPU:0"):
            return {"y": x * self.w}


def test_a_tf2_export_pinned_inside_its_function_loads_on_a_cpu_node(tmp_path):
    """TF2's saver records TF2's soft placement in each function call's config_proto, so a
    tf.device inside a tf.function does not stop a CPU-only TF Serving: nor here."""
    module = _PinnedInsideFunction()
    path = tmp_path / "1"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.scale})
    cpu_only = config_pb2.ConfigProto(device_count={"GPU": 0})  # whatever this host has
    node = SessionOptions(base=cpu_only.SerializeToString())
    servable = load_servable("pinned", 1, str(path), session_options=node)
    y = servable.run("serving_default", {"x": np.array([1.0, 2.0], np.float32)})["y"]
    np.testing.assert_array_equal(y, [2.0, 4.0])
    servable.close()


def test_a_run_past_its_timeout_is_cancelled_with_tensorflows_deadline_exceeded(tmp_path):
    servable = load_servable("count", 1, str(build_counting_model(tmp_path / "1")))
    names = servable.tensor_names("count", ("n",), ("out",))
    endless = {names[0][0]: np.array([10**15], np.int64)}  # years of loop
    with pytest.raises(tf.errors.DeadlineExceededError) as caught:
        servable.run_tensors(endless, names[1], timeout_ms=100)
    assert caught.value.message == RUN_TIMED_OUT
    short = {names[0][0]: np.array([3, 10], np.int64)}
    (out,) = servable.run_tensors(short, names[1], timeout_ms=60_000)
    np.testing.assert_array_equal(out, [3, 10])
    servable.close()
