"""Run timeouts over a real server, as TF Serving sets them: the client's gRPC deadline
(PredictionServiceImpl, DeadlineToTimeoutMillis) and `--rest_api_timeout_in_ms` for REST
(HttpRestApiHandler) bound each session run, which TensorFlow cancels when they pass.
"""

import http.client
import json
import os
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.serving_harness import build_counting_model, post_json, running_server

pytestmark = pytest.mark.integration  # starts a model server

ENDLESS = 10**15  # loop iterations: years


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("deadlines")
    build_counting_model(root / "count" / "1")
    monitoring = root / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/metrics" }')
    with running_server(
        "--model_name=count",
        f"--model_base_path={root / 'count'}",
        "--rest_api_timeout_in_ms=500",
        f"--monitoring_config_file={monitoring}",
        # more calls at once than model workers (below), each on a gRPC thread of its own
        f"--grpc_max_threads={4 * max(4, 2 * (os.cpu_count() or 1)) + 1}",
        log_path=root / "server.log",
    ) as proc:
        yield proc


def _request(n: int) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "count", "count"
    request.inputs["n"].CopyFrom(tf.make_tensor_proto([n], dtype=tf.int64))
    return request


def test_a_grpc_deadline_cancels_the_run_on_the_server(server):
    # More endless calls than the server has model workers (max(4, 2 x cores)): had their
    # runs gone on past the deadline, the quick call after them would wait for ever.
    calls = 2 * max(4, 2 * (os.cpu_count() or 1))
    with grpc.insecure_channel(server.address) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict

        def endless(_: int) -> grpc.StatusCode:
            try:
                predict(_request(ENDLESS), timeout=0.5)
            except grpc.RpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        with ThreadPoolExecutor(calls) as pool:
            codes = list(pool.map(endless, range(calls)))
        assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * calls
        answer = predict(_request(7), timeout=30)
    assert tf.make_ndarray(answer.outputs["out"]).tolist() == [7]
    host, port = server.rest_address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", "/metrics")
    metrics = connection.getresponse().read().decode()
    connection.close()
    # TF Serving counts these calls by the status of their timed-out runs
    series = ':tensorflow:serving:request_count{model_name="count",status="DEADLINE_EXCEEDED"}'
    assert f"{series} {calls}" in metrics


def test_a_rest_run_past_the_rest_timeout_is_tensorflows_deadline_exceeded(server):
    body = json.dumps({"signature_name": "count", "instances": [ENDLESS]}).encode()
    status, answer = post_json(server, "/v1/models/count:predict", body)
    assert (status, answer) == (504, {"error": "Timed out waiting for notification"})
    body = json.dumps({"signature_name": "count", "instances": [3]}).encode()
    assert post_json(server, "/v1/models/count:predict", body) == (200, {"predictions": [3]})
