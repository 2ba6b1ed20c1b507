"""Bad input, case by case: the status code and message a client gets (issue #12's table).

In-process over the real data plane and model manager (real SavedModels on TF Serving's load
path, no gRPC); tests/test_serving_fuzz.py checks the same property over random input, and at
the wire. Each case names the TF Serving (or TensorFlow) source that decides it.
"""

import asyncio
import shutil
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import get_model_status_pb2, inference_pb2, input_pb2, model_pb2
from tensorflow_serving.config import model_server_config_pb2

from tests.serving_harness import build_toy_model, in_process_dataplane
from tfsp.serving import tensors
from tfsp.serving.config import (
    ConfigError,
    is_relative_path,
    model_settings,
    read_text_proto,
    single_model_config,
)
from tfsp.serving.dataplane import CLASSIFY_METHOD, DataPlane, SpecRef, execution_error
from tfsp.serving.errors import ServingError, grpc_status_message

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END
LOADING = get_model_status_pb2.ModelVersionStatus.LOADING
START = get_model_status_pb2.ModelVersionStatus.START
X = np.ones((1, 3), np.float32)


@pytest.fixture(scope="module")
def toy_build(tmp_path_factory) -> Path:
    """One toy SavedModel (scale 1), copied into each test's own base path."""
    return build_toy_model(tmp_path_factory.mktemp("build") / "toy", 1.0)


@pytest.fixture(scope="module")
def dataplane(toy_build, tmp_path_factory):
    root = tmp_path_factory.mktemp("hardening") / "toy"
    shutil.copytree(toy_build, root / "1")
    with in_process_dataplane(root) as plane:
        yield plane


def _run(awaitable: object) -> object:
    return asyncio.run(awaitable)


def _error(call) -> ServingError:
    with pytest.raises(ServingError) as caught:
        call()
    return caught.value


def _predict(plane: DataPlane, spec: SpecRef, signature: str, inputs: dict, **kwargs) -> object:
    return _run(plane.predict(spec, signature, inputs, **kwargs))


def _example(x: float) -> tf.train.Example:
    return tf.train.Example(
        features=tf.train.Features(
            feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))}
        )
    )


def _one_line(message: str) -> bool:
    return message.isprintable() and "[[" not in message and "Traceback" not in message


# ---- case 1: garbage where a graph parses serialized tf.Examples ----

PARSE_FAILED = "Could not parse example input, value: '"


@pytest.mark.parametrize(
    "serialized, expected",
    [
        (b"\x80", PARSE_FAILED + "\\x80'"),
        (b"\xff\xfe garbage", PARSE_FAILED + "\\xff\\xfe garbage'"),
        # valid UTF-8, not an Example: the control bytes used to reach the client raw
        (b"\x0a\x05hello", PARSE_FAILED + "\\n\\x05hello'"),
        # a quoted newline then an indented line: the second line used to be dropped
        (b"\xc3\x28\n\tfoo", PARSE_FAILED + "\\xc3(\\n\\tfoo'"),
        (b"ok\xe2\x80\xaeevil", PARSE_FAILED + "ok\\u202eevil'"),  # right-to-left override
    ],
    ids=["lone-continuation-byte", "invalid-utf8", "control-bytes", "newline-tab", "bidi"],
)
def test_garbage_serialized_examples_are_invalid_argument(dataplane, serialized, expected):
    # Predict on a signature that parses tf.Examples, as an Estimator's serving_default does
    inputs = {"inputs": np.array([serialized], dtype=object)}
    error = _error(lambda: _predict(dataplane, SpecRef("toy"), "classify", inputs))
    assert error.code == INVALID
    assert error.message == expected
    # and the model still answers
    good = _predict(dataplane, SpecRef("toy"), "", {"x": X})
    assert good.outputs["y"].tolist() == [[1.0, 1.0, 1.0]]


def _example_with_group() -> tf.train.Example:
    """A valid tf.Example for protobuf (a group field it keeps as unknown) that TensorFlow's
    example parser refuses: its error quotes the whole serialized message, bytes and all."""
    example = tf.train.Example()
    example.ParseFromString(_example(0.5).SerializeToString() + b"\x2b\x0a\x02\xff\x80\x2c")
    return example


@pytest.mark.parametrize("api", ["classify", "regress", "multi_inference"])
def test_examples_tensorflow_cannot_parse_are_invalid_argument_on_every_example_api(dataplane, api):
    inp = input_pb2.Input()
    inp.example_list.examples.add().CopyFrom(_example_with_group())
    if api == "multi_inference":
        request = inference_pb2.MultiInferenceRequest(input=inp)
        request.tasks.add(
            model_spec=model_pb2.ModelSpec(name="toy", signature_name="classify"),
            method_name=CLASSIFY_METHOD,
        )
        call = dataplane.multi_inference(request)
    else:
        call = getattr(dataplane, api)(SpecRef("toy"), api, inp)
    error = _error(lambda: _run(call))
    assert error.code == INVALID
    # TensorFlow's message stops at the first NUL byte of the quoted Example.
    assert error.message == PARSE_FAILED + "\\n\\x0f\\n\\r\\n\\x01x\\x12\\x08\\x12\\x06\\n\\x04"
    assert _one_line(error.message)


@pytest.mark.parametrize(
    "exc, expected",
    [
        (
            # what TensorFlow raises when a failed status quotes bytes that are not UTF-8
            UnicodeDecodeError(
                "utf-8",
                b"{{function_node __inference_f_11}} " + PARSE_FAILED.encode() + b"\xffab\n'"
                b"\n\t [[{{node ParseExample/ParseExampleV2}}]] [Op:__inference_f_11]",
                74,
                75,
                "invalid start byte",
            ),
            PARSE_FAILED + "\\xffab\\n'",
        ),
        (
            # eager: the Python stack where the op was defined comes first
            tf.errors.InvalidArgumentError(
                None,
                None,
                "Graph execution error:\n\nDetected at node ParseExample/ParseExampleV2 defined "
                'at (most recent call last):\n  File "<stdin>", line 7, in <module>\n\n  File '
                '"<stdin>", line 5, in f\n\n' + PARSE_FAILED + "ab\n  ef'\n\t [[{{node "
                "ParseExample/ParseExampleV2}}]] [Op:__inference_f_11]",
            ),
            PARSE_FAILED + "ab\\n  ef'",
        ),
        (
            tf.errors.InvalidArgumentError(None, None, "Type mismatch\x00 \ud800 [Op:Cast]"),
            "Type mismatch\\x00 \\ud800",
        ),
    ],
    ids=["undecodable-status", "eager-stack", "nul-and-surrogate"],
)
def test_tensorflow_errors_become_one_printable_line(exc, expected):
    error = execution_error(exc)
    assert (error.code, error.message) == (INVALID, expected)
    error.message.encode("utf-8")  # a gRPC status must encode


@pytest.mark.parametrize(
    "message, sent",
    [
        ("x" * 1024, "x" * 1024),
        ("x" * 1025, "x" * 1024 + "...TRUNCATED"),
        ("\u00e9" * 600, "\u00e9" * 512 + "...TRUNCATED"),  # 1,200 bytes, cut on a boundary
        ("a" + "\u00e9" * 600, "a" + "\u00e9" * 511 + "...TRUNCATED"),  # a split character
    ],
    ids=["at-limit", "one-past", "two-byte-chars", "split-char"],
)
def test_grpc_status_messages_are_cut_at_1024_bytes_as_tf_serving_cuts_them(message, sent):
    assert grpc_status_message(message) == sent


# ---- cases 2 and 3: shapes numpy cannot hold, and huge shapes ----


def _tensor(dims: list[int], dtype: int = types_pb2.DT_FLOAT, **values) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, **values)
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    return proto


@pytest.mark.parametrize(
    "dims, fragment",
    [
        # numpy's limit; TensorShape allows 254 (tensor_shape.cc MaxDimensions)
        ([1] * 65, "[1,1,1,1,1,1,1,1,...] (65 dimensions) has too many dimensions; at most 64 "
         "are supported (TensorFlow allows 254)"),
        ([1] * 254, "(254 dimensions) has too many dimensions; at most 64 are supported "
         "(TensorFlow allows 254)"),
        # beyond TensorFlow's own limit: IsValidShape's "Shape ... has too many dimensions"
        ([1] * 255, "(255 dimensions) has too many dimensions; at most 64 are supported"),
        ([1] * 100_000, "(100000 dimensions) has too many dimensions"),
        # valid for TensorShape (0 elements), but numpy multiplies the non-zero dimensions
        ([0, 2**40, 2**40], "Shape [0,1099511627776,1099511627776] cannot be held"),
        ([2**62, 0, 2**62], "cannot be held"),
        # the running product overflows before the 0: TensorShape refuses it
        ([2**40, 2**40, 0], "Shape [1099511627776,1099511627776,0] is too large (more than "
         "2**63 - 1 entries)"),
        # case 3: TF Serving answers INVALID_ARGUMENT "tensor parsing error" (a failed
        # allocation in Tensor::FromProto), never RESOURCE_EXHAUSTED
        ([2**32] * 3, "Shape [4294967296,4294967296,4294967296] is too large (more than 2**63 "
         "- 1 entries)"),
        ([2**40, 3], "Shape [1099511627776,3] of DT_FLOAT is larger than 2147483647 bytes"),
        ([2**29, 2], "Shape [536870912,2] of DT_FLOAT is larger than 2147483647 bytes"),
    ],
    ids=[
        "65-dims", "254-dims", "255-dims", "100000-dims", "zero-elements-2^80",
        "zero-elements-2^124", "overflow-before-zero", "2^96-elements", "2^40x3", "4GiB",
    ],
)  # fmt: skip
def test_shapes_numpy_cannot_hold_or_too_large_are_invalid_argument(dims, fragment):
    proto = _tensor(dims, float_val=[1.0])
    error = _error(lambda: tensors.to_numpy("x", proto))
    assert error.code == INVALID
    assert error.message.startswith("input 'x': Shape ") and fragment in error.message
    assert len(error.message) < 200  # a status is one short line, whatever the rank


def test_shapes_at_the_limits_still_decode():
    assert tensors.to_numpy("x", _tensor([0, 2**40])).shape == (0, 2**40)
    assert tensors.to_numpy("x", _tensor([1] * 64)).ndim == 64
    assert tensors.to_numpy("x", _tensor([0, 2**40, 2**20], types_pb2.DT_INT8)).size == 0


# ---- case 4: an explicitly empty version_label ----


def _empty_label_spec() -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name="toy", version_label="")
    # set, though empty, and so on the wire too
    assert model_pb2.ModelSpec.FromString(spec.SerializeToString()).WhichOneof("version_choice")
    return spec


@pytest.mark.parametrize("api", ["predict", "classify", "metadata", "multi_inference"])
def test_an_empty_version_label_is_unrecognized(dataplane, api):
    # server_core.cc ServableRequestFromModelSpec -> GetModelVersionForLabel
    spec = _empty_label_spec()
    ref = SpecRef.from_proto(spec)
    inp = input_pb2.Input()
    inp.example_list.examples.add().CopyFrom(_example(1.0))
    calls = {
        "predict": lambda: _predict(dataplane, ref, "", {"x": X}),
        "classify": lambda: _run(dataplane.classify(ref, "classify", inp)),
        "metadata": lambda: dataplane.metadata(ref, ["signature_def"]),
        "multi_inference": lambda: _run(
            dataplane.multi_inference(
                inference_pb2.MultiInferenceRequest(
                    tasks=[
                        inference_pb2.InferenceTask(
                            model_spec=model_pb2.ModelSpec(
                                name="toy", version_label="", signature_name="classify"
                            ),
                            method_name=CLASSIFY_METHOD,
                        )
                    ],
                    input=inp,
                )
            )
        ),
    }
    error = _error(calls[api])
    assert (error.code, error.message) == (INVALID, "Unrecognized servable version label: ")


def test_model_status_ignores_an_empty_version_label(dataplane):
    # get_model_status_impl.cc looks at the spec's version only
    status = dataplane.model_status(SpecRef.from_proto(_empty_label_spec()))
    assert [(v.version, v.state) for v in status.model_version_status] == [(1, AVAILABLE)]


# ---- case 5: HandleReloadConfigRequest with a relative base_path ----


def _config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    return single_model_config(name, base_path)


@pytest.mark.parametrize(
    "base_path", ["models/toy", "./toy", "toy", "../toy", "~/models/toy", "file:models/toy", ""]
)
def test_reload_with_a_relative_base_path_is_refused_and_changes_nothing(
    toy_build, tmp_path, base_path
):
    root = tmp_path / "toy"
    shutil.copytree(toy_build, root / "1")
    with in_process_dataplane(root) as plane:
        manager = plane.manager
        reloading = DataPlane(manager, reload=lambda c: manager.configure(model_settings(c)))
        error = _error(lambda: _run(reloading.reload_config(_config("toy", base_path))))
        assert error.code == INVALID
        if base_path:
            # server_core.cc ValidateModelConfigList
            assert error.message == (
                f"Expected model toy to have an absolute path or URI; got base_path()={base_path}"
            )
        # the old config stands: same base path, same version answering
        assert manager._models["toy"].settings.base_path == str(root)
        manager.poll()
        assert _predict(reloading, SpecRef("toy"), "", {"x": X}).version == 1


@pytest.mark.parametrize(
    "base_path, relative",
    [
        ("/models/toy", False),
        ("gs://bucket/models/toy", False),
        ("s3://bucket/toy", False),
        ("hdfs://namenode:9000/toy", False),
        ("gs://bucket", False),
        ("models/toy", True),
        ("C:/models/toy", True),  # io::ParseURI: no "://", so a path, and not absolute
        ("1gs://bucket/toy", True),  # a scheme starts with a letter
    ],
)
def test_absolute_paths_and_uris_are_what_tf_serving_accepts(base_path, relative):
    assert is_relative_path(base_path) is relative
    config = _config("toy", base_path)
    if relative:
        with pytest.raises(ConfigError, match="to have an absolute path or URI"):
            model_settings(config)
    else:
        assert model_settings(config)[0].base_path == base_path


# ---- case 6: decided by TF Serving's source ----


def test_int_val_for_a_float_tensor_is_refused(dataplane):
    # Tensor::FromProto reads a DT_FLOAT's values from float_val only and fills zeros when
    # it is empty (tensor.cc FromProtoField): TF Serving would run the model on zeros. We
    # refuse instead: the request's values would be silently discarded.
    proto = _tensor([1, 3], int_val=[1, 2, 3])
    error = _error(lambda: tensors.to_numpy("x", proto))
    assert (error.code, error.message) == (
        INVALID,
        "input 'x': dtype DT_FLOAT takes its values from float_val, but the tensor has int_val",
    )


@pytest.mark.parametrize(
    "output_filter, message",
    [
        (["y", "y"], "duplicate output tensor alias: y"),
        # predict_util.cc checks each alias in order: an unknown one first wins
        (["z", "y", "y"], "output tensor alias not found in signature: z Outputs expected to "
         "be in the set {y}."),
    ],
)  # fmt: skip
def test_a_duplicate_output_filter_entry_is_refused(dataplane, output_filter, message):
    # predict_util.cc PreProcessPrediction
    def call() -> object:
        return _predict(dataplane, SpecRef("toy"), "", {"x": X}, output_filter=output_filter)

    error = _error(call)
    assert (error.code, error.message) == (INVALID, message)


def _versions(plane: DataPlane) -> list[tuple[int, int]]:
    return [(v.version, v.state) for v in plane.model_status(SpecRef("toy")).model_version_status]


@pytest.mark.parametrize(
    "folder",
    [
        "9223372036854775808",  # 2**63: one past int64
        "99999999999999999999",
        "٣",  # an Arabic-Indic 3: str.isdigit() and int() take it, absl::SimpleAtoi does not
        "²",  # str.isdigit(), but int() raises
    ],
)
def test_version_folders_that_are_not_int64_numbers_are_skipped(toy_build, tmp_path, folder):
    # file_system_storage_path_source.cc ParseVersionNumber: absl::SimpleAtoi into an int64
    root = tmp_path / "toy"
    shutil.copytree(toy_build, root / "1")
    shutil.copytree(toy_build, root / folder)
    with in_process_dataplane(root) as plane:
        plane.manager.poll()
        assert _versions(plane) == [(1, AVAILABLE)]
        assert _predict(plane, SpecRef("toy"), "", {"x": X}).version == 1


@pytest.fixture(scope="module")
def toy_build_2(tmp_path_factory) -> Path:
    """The toy SavedModel at scale 2: its outputs tell which of two folders served."""
    return build_toy_model(tmp_path_factory.mktemp("build2") / "toy", 2.0)


DUPLICATE_FOLDERS = [
    # (id, folder of the scale-1 model, folder of the scale-2 model, policy, scale served)
    # file_system_storage_path_source.cc lists the base path into a std::set: byte order,
    # "007" < "7" < "7 " (absl::SimpleAtoi takes surrounding spaces). IndexChildrenByVersion
    # keeps a number's last name (latest; specific off its fast path). AspireAllVersions
    # aspires every name and the manager keeps the first (basic_manager.cc refuses the next
    # as already managed). AspireSpecificVersionsFastPath takes the folders named as the
    # numbers themselves when every requested version has one.
    ("latest: 007 and 7", "007", "7", "latest", 2.0),
    ("all: 007 and 7", "007", "7", "all", 1.0),
    ("specific: 007 and 7", "007", "7", [7], 2.0),
    ("latest: 7 and '7 '", "7", "7 ", "latest", 2.0),
    ("all: 7 and '7 '", "7", "7 ", "all", 1.0),
    ("specific: 7 and '7 '", "7", "7 ", [7], 1.0),
    ("specific, 8 missing: 7 and '7 '", "7", "7 ", [7, 8], 2.0),
]


@pytest.mark.parametrize(
    "first, second, policy, scale",
    [c[1:] for c in DUPLICATE_FOLDERS],
    ids=[c[0] for c in DUPLICATE_FOLDERS],
)
def test_of_two_folders_for_one_version_the_one_tf_serving_picks_serves(
    toy_build, toy_build_2, tmp_path, first, second, policy, scale
):
    root = tmp_path / "dup"
    shutil.copytree(toy_build, root / first)
    shutil.copytree(toy_build_2, root / second)
    config = _config("dup", str(root))
    entry = config.model_config_list.config[0]
    if policy == "all":
        entry.model_version_policy.all.SetInParent()
    elif policy != "latest":
        entry.model_version_policy.specific.versions.extend(policy)
    shutil.copytree(toy_build, tmp_path / "seed" / "1")
    with in_process_dataplane(tmp_path / "seed") as plane:
        # configured from the start with its policy: a version loaded is not reloaded
        plane.manager.configure(model_settings(config))
        for _ in range(2):  # and a later poll keeps it
            result = _predict(plane, SpecRef("dup"), "", {"x": X})
            assert (result.version, result.outputs["y"].tolist()) == (7, [[scale] * 3])
            plane.manager.poll()


def test_a_version_beyond_int64_in_the_config_is_refused(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(
        "model_config_list { config { name: 'toy' base_path: '/m' "
        "model_version_policy { specific { versions: 9223372036854775808 } } } }"
    )
    with pytest.raises(ConfigError, match="invalid ModelServerConfig"):
        read_text_proto(str(path), model_server_config_pb2.ModelServerConfig())


@pytest.mark.parametrize("policy", ["latest", "all", "specific"])
def test_deleting_every_version_folder_unloads_the_model(toy_build, tmp_path, policy):
    # file_system_storage_path_source.cc: a base path with no version folders aspires none;
    # availability_preserving_policy.cc: with none aspired, the others are unloaded.
    root = tmp_path / "toy"
    for version in (1, 2):
        shutil.copytree(toy_build, root / str(version))
    config = _config("toy", str(root))
    entry = config.model_config_list.config[0]
    if policy == "all":
        entry.model_version_policy.all.SetInParent()
    elif policy == "specific":
        entry.model_version_policy.specific.versions.extend([1, 2])
    with in_process_dataplane(root) as plane:
        plane.manager.configure(model_settings(config))
        loaded = [(2, AVAILABLE), (1, AVAILABLE)] if policy != "latest" else [(2, AVAILABLE)]
        assert _versions(plane) == loaded
        for version in (1, 2):
            shutil.rmtree(root / str(version))
        (root / "not-a-version").mkdir()
        plane.manager.poll()
        assert {state for _, state in _versions(plane)} == {END}
        error = _error(lambda: _predict(plane, SpecRef("toy"), "", {"x": X}))
        assert (error.code, error.message) == (
            NOT_FOUND,
            "Servable not found for request: Latest(toy)",
        )
        # a version published again loads again
        shutil.copytree(toy_build, root / "3" if policy != "specific" else root / "2")
        plane.manager.poll()
        assert _predict(plane, SpecRef("toy"), "", {"x": X}).outputs["y"].tolist() == [[1.0] * 3]


def test_a_base_path_that_cannot_be_listed_keeps_the_loaded_versions(toy_build, tmp_path):
    # PollFileSystemForServable fails on a missing base path and the poll changes nothing
    root = tmp_path / "toy"
    shutil.copytree(toy_build, root / "1")
    with in_process_dataplane(root) as plane:
        shutil.rmtree(root)
        plane.manager.poll()
        assert _versions(plane) == [(1, AVAILABLE)]
        assert _predict(plane, SpecRef("toy"), "", {"x": X}).version == 1


def test_one_model_whose_base_path_is_gone_stops_every_models_updates(toy_build, tmp_path):
    """PollFileSystemForConfig returns at the first base path it cannot find, before any
    model's versions are handed on: the whole poll changes nothing, as in TF Serving."""
    for name in ("toy", "gone"):
        shutil.copytree(toy_build, tmp_path / name / "1")
    config = _config("toy", str(tmp_path / "toy"))
    config.model_config_list.config.add().CopyFrom(_config("gone", str(tmp_path / "gone"))
        .model_config_list.config[0])  # fmt: skip
    with in_process_dataplane(tmp_path / "toy") as plane:
        plane.manager.configure(model_settings(config))
        shutil.rmtree(tmp_path / "gone")
        shutil.copytree(toy_build, tmp_path / "toy" / "2")
        plane.manager.poll()
        assert _versions(plane) == [(1, AVAILABLE)]  # version 2 waits for "gone" to return
        shutil.copytree(toy_build, tmp_path / "gone" / "1")
        plane.manager.poll()
        assert _versions(plane) == [(2, AVAILABLE), (1, END)]


def test_versions_come_and_go_as_the_availability_preserving_policy_picks_them(toy_build, tmp_path):
    """availability_preserving_policy.cc: the lowest unaspired serving version is unloaded
    while nothing is aspired, an aspired version serves, or more than one unaspired serves;
    then the highest new aspired version loads. Any child named as a number is a version,
    a file too (it then fails to load)."""
    root = tmp_path / "toy"
    for version in (1, 2):
        shutil.copytree(toy_build, root / str(version))
    config = _config("toy", str(root))
    config.model_config_list.config[0].model_version_policy.latest.num_versions = 2
    with in_process_dataplane(root) as plane:
        plane.manager.configure(model_settings(config))
        assert _versions(plane) == [(2, AVAILABLE), (1, AVAILABLE)]
        (root / "3").mkdir()  # no SavedModel: fails
        (root / "4").write_text("a file")
        plane.manager.poll()
        # aspired {3, 4} both fail; of the two unaspired serving versions the lower goes
        states = dict(_versions(plane))
        assert (states[4], states[3], states[2], states[1]) == (END, END, AVAILABLE, END)
        assert plane.manager.status("toy", 4)[0].error_message.startswith("no saved_model.pb")
        assert _predict(plane, SpecRef("toy"), "", {"x": X}).version == 2


def test_aspired_versions_are_start_until_their_load_begins(toy_build, tmp_path):
    """basic_manager.cc ManageServable publishes kStart for each aspired version as the
    source reports it, for every model, and loads then run one at a time: a version waiting
    its turn is START in GetModelStatus, not missing; one unloaded and aspired again too."""
    roots = {name: tmp_path / name for name in ("a", "b")}
    for root in roots.values():
        shutil.copytree(toy_build, root / "1")
    config = model_server_config_pb2.ModelServerConfig()
    for name, root in roots.items():
        entry = config.model_config_list.config.add()
        entry.CopyFrom(_config(name, str(root)).model_config_list.config[0])
        entry.model_version_policy.all.SetInParent()
    hold: list[tuple[str, int]] = []  # the load to hold, until `release`
    held, release = threading.Event(), threading.Event()

    def before_load(name: str, version: int) -> None:
        if (name, version) in hold:
            held.set()
            release.wait(30)

    def states(name: str) -> list[tuple[int, int]]:
        return [(r.version, r.state) for r in plane.manager.status(name)]

    def poll_holding(load: tuple[str, int], expected: dict[str, list[tuple[int, int]]]) -> None:
        hold[:] = [load]
        held.clear()
        release.clear()
        poll = threading.Thread(target=plane.manager.poll)
        poll.start()
        try:
            assert held.wait(30)
            assert {name: states(name) for name in expected} == expected
        finally:
            release.set()
            poll.join(60)

    with in_process_dataplane(roots["a"], name="a", before_load=before_load) as plane:
        plane.manager.configure(model_settings(config))
        for name, version in (("a", 2), ("a", 3), ("b", 2)):
            shutil.copytree(toy_build, roots[name] / str(version))
        poll_holding(
            ("a", 3),
            {"a": [(3, LOADING), (2, START), (1, AVAILABLE)], "b": [(2, START), (1, AVAILABLE)]},
        )
        assert states("a") == [(3, AVAILABLE), (2, AVAILABLE), (1, AVAILABLE)]
        assert states("b") == [(2, AVAILABLE), (1, AVAILABLE)]

        shutil.move(roots["b"] / "1", tmp_path / "b1")
        plane.manager.poll()
        assert states("b") == [(2, AVAILABLE), (1, END)]
        shutil.move(tmp_path / "b1", roots["b"] / "1")
        shutil.copytree(toy_build, roots["a"] / "4")
        poll_holding(("a", 4), {"b": [(2, AVAILABLE), (1, START)]})
        assert states("b") == [(2, AVAILABLE), (1, AVAILABLE)]
