"""A real server loads, warms up and answers the way TF Serving does.

- A Keras 3 model inside a tf.Module (variables the restore op never fills) with warmup
  requests never becomes AVAILABLE, says why in its status, and the version already
  serving stays; without warmup it loads and fails every call with FAILED_PRECONDITION,
  as TF Serving's binary does.
- Predict outputs come in the typed value fields, or in tensor_content with
  --enable_serialization_as_tensor_content.
"""

import time

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

from tests.serving_harness import (
    build_toy_model,
    build_unservable_model,
    copy_version,
    running_server,
    warmup_predict,
    write_warmup,
)
from tfsp.serving.client import ClientError, ServingClient

pytestmark = pytest.mark.integration  # starts a model server

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END
X = np.ones((1, 3), np.float32)
CONFIG = """
model_config_list {
  config { name: "swap" base_path: "%(root)s/swap" model_platform: "tensorflow" }
  config { name: "nowarmup" base_path: "%(root)s/nowarmup" model_platform: "tensorflow" }
}
"""


def _status(client: ServingClient, model: str) -> dict:
    return {v.version: v for v in client.status(model).model_version_status}


def _wait(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("loadpath")
    good = build_toy_model(root / "builds" / "1", 1.0)
    write_warmup(good, [warmup_predict("", {"x": X})])
    copy_version(good, (root / "swap").joinpath("1"))
    build_unservable_model(root / "nowarmup" / "1")
    config = root / "models.config"
    config.write_text(CONFIG % {"root": root})
    with running_server(
        f"--model_config_file={config}",
        "--file_system_poll_wait_seconds=1",
        log_path=root / "server.log",
    ) as server:
        with ServingClient(server.address, timeout=30) as client:
            _wait(
                lambda: (
                    _status(client, "swap").get(1) and _status(client, "swap")[1].state == AVAILABLE
                )
            )
            yield {"root": root, "server": server, "client": client}


def test_an_unservable_version_never_becomes_available_and_says_why(world):
    client, root = world["client"], world["root"]
    build_unservable_model(root / "builds" / "2", with_warmup=True)
    copy_version(root / "builds" / "2", root / "swap" / "2")
    _wait(lambda: 2 in _status(client, "swap") and _status(client, "swap")[2].state == END)
    failed = _status(client, "swap")[2]
    assert failed.status.error_code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "warmup" in failed.status.error_message
    assert "Could not find variable dense/" in failed.status.error_message
    # The version that served before still does, and answers.
    assert _status(client, "swap")[1].state == AVAILABLE
    spec, outputs = client.predict("swap", {"x": X})
    assert spec.version.value == 1
    np.testing.assert_array_equal(outputs["y"], X)


def test_without_warmup_it_loads_and_every_call_fails_as_in_tf_serving(world):
    client = world["client"]
    _wait(
        lambda: (
            _status(client, "nowarmup").get(1) is not None
            and _status(client, "nowarmup")[1].state == AVAILABLE
        )
    )
    with pytest.raises(ClientError) as caught:
        client.predict("nowarmup", {"x": X})
    assert caught.value.code == "FAILED_PRECONDITION"
    assert "Could not find variable" in str(caught.value)
    assert world["server"].alive()


def _raw_predict(address: str) -> predict_pb2.PredictResponse:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "swap"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.arange(6, dtype=np.float32).reshape(2, 3)))
    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, timeout=30)


def test_outputs_are_typed_value_fields_by_default(world):
    response = _raw_predict(world["server"].address)
    y = response.outputs["y"]
    assert y.tensor_content == b""
    assert list(y.float_val) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert [d.size for d in y.tensor_shape.dim] == [2, 3]


def test_tensor_content_when_the_flag_says_so(world, tmp_path):
    # Its own base path: the world's "swap" now has a failed newest version, and the
    # latest-version policy would aspire to that one only.
    copy_version(world["root"] / "builds" / "1", tmp_path / "swap" / "1")
    with running_server(
        "--model_name=swap",
        f"--model_base_path={tmp_path / 'swap'}",
        "--enable_serialization_as_tensor_content=true",
        rest=False,
        log_path=tmp_path / "server.log",
    ) as server:
        with ServingClient(server.address, timeout=30) as client:
            _wait(lambda: any(v.state == AVAILABLE for v in _status(client, "swap").values()))
        y = _raw_predict(server.address).outputs["y"]
    assert list(y.float_val) == []
    np.testing.assert_array_equal(
        np.frombuffer(y.tensor_content, np.float32), np.arange(6, dtype=np.float32)
    )
