"""Prometheus metrics as TF Serving exports them: names, labels, when each is recorded, the
text of util/prometheus_exporter.cc, the endpoint's edge cases and ReloadConfig's
metric_names (model_service_impl.cc).

The first tests render in process; the rest drive a real server on real ports and parse
its page with prometheus_client's text parser.
"""

import asyncio
import http.client
import json

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests.serving_harness import build_toy_model, running_server, warmup_predict, write_warmup
from tfsp.serving import metrics as served_metrics

METRICS_PATH = "/monitoring/prometheus/metrics"

# ---- the page, in process ----


def test_counters_are_typed_under_their_own_name_with_integer_values():
    metrics = served_metrics.Metrics()
    metrics.count_request("toy", "OK")
    metrics.count_request("toy", "OK")
    metrics.count_request("nosuch", "NOT_FOUND")
    page = metrics.render().decode()
    lines = page.splitlines()
    start = lines.index("# TYPE :tensorflow:serving:request_count counter")
    assert lines[start + 1 : start + 3] == [
        ':tensorflow:serving:request_count{model_name="nosuch",status="NOT_FOUND"} 1',
        ':tensorflow:serving:request_count{model_name="toy",status="OK"} 2',
    ]
    assert "# HELP" not in page and "_created" not in page and "request_count_total" not in page
    assert page.endswith("\n") and not page.endswith("\n\n")
    families = {f.name: f for f in text_string_to_metric_families(page)}
    counted = families[":tensorflow:serving:request_count"]
    assert counted.type == "counter"
    assert {s.labels["model_name"]: s.value for s in counted.samples} == {"toy": 2, "nosuch": 1}


def test_families_come_in_the_order_of_their_tensorflow_names():
    types = [
        line
        for line in served_metrics.Metrics().render().decode().splitlines()
        if line.startswith("#")
    ]
    assert types == [
        "# TYPE :tensorflow:cc:saved_model:load_attempt_count counter",
        "# TYPE :tensorflow:cc:saved_model:load_latency counter",
        "# TYPE :tensorflow:cc:saved_model:load_latency_by_stage histogram",
        # batching_session.cc's globals are always there; batching_util.h's samplers only
        # once batching recorded into them
        "# TYPE :tensorflow:serving:batching_session:queuing_latency histogram",
        "# TYPE :tensorflow:serving:batching_session:wrapped_run_count counter",
        "# TYPE :tensorflow:serving:model_warmup_latency histogram",
        "# TYPE :tensorflow:serving:model_warmup_records_read counter",
        "# TYPE :tensorflow:serving:request_count counter",
        "# TYPE :tensorflow:serving:request_example_count_total counter",
        "# TYPE :tensorflow:serving:request_example_counts histogram",
        "# TYPE :tensorflow:serving:request_latency histogram",
        "# TYPE :tensorflow:serving:runtime_latency histogram",
    ]


def test_histograms_are_written_as_tensorflow_buckets_and_prints_them():
    metrics = served_metrics.Metrics()
    metrics.observe_request_latency("toy", "Predict", "GRPC", 1.234567)  # 1234567 µs
    metrics.observe_request_latency("toy", "Predict", "GRPC", 10e-6)  # on the first limit
    lines = metrics.render().decode().splitlines()
    prefix = ':tensorflow:serving:request_latency_bucket{model_name="toy",API="Predict",'
    buckets = [line for line in lines if line.startswith(prefix)]
    assert len(buckets) == 34  # 33 limits of Exponential(10, 1.8, 33), then +Inf
    # Labels in declaration order, le last; limits with six significant digits; a value
    # equal to a limit is counted in the bucket above it (tsl Histogram::Add).
    assert buckets[0] == prefix + 'entrypoint="GRPC",le="10"} 0'
    assert buckets[1] == prefix + 'entrypoint="GRPC",le="18"} 1'
    assert buckets[2] == prefix + 'entrypoint="GRPC",le="32.4"} 1'
    assert buckets[5] == prefix + 'entrypoint="GRPC",le="188.957"} 1'
    assert buckets[32] == prefix + 'entrypoint="GRPC",le="1.47476e+09"} 2'
    assert buckets[33] == prefix + 'entrypoint="GRPC",le="+Inf"} 2'
    labels = '{model_name="toy",API="Predict",entrypoint="GRPC"}'
    assert f":tensorflow:serving:request_latency_sum{labels} 1.23458e+06" in lines
    assert f":tensorflow:serving:request_latency_count{labels} 2" in lines


def test_a_family_without_labels_keeps_its_braces():
    counter = served_metrics.Counter("/x/runs", ())
    counter.increment(())
    sampler = served_metrics.Sampler("/x/sizes", (), (1.0, 2.0))
    sampler.add((), 2)
    assert list(counter.lines()) == ["# TYPE :x:runs counter", ":x:runs{} 1"]
    assert list(sampler.lines()) == [
        "# TYPE :x:sizes histogram",
        ':x:sizes_bucket{le="1"} 0',
        ':x:sizes_bucket{le="2"} 0',
        ':x:sizes_bucket{le="+Inf"} 1',
        ":x:sizes_sum{} 2",
        ":x:sizes_count{} 1",
    ]


def test_first_int64_reads_the_first_point_as_model_service_impl_does():
    metrics = served_metrics.Metrics()
    assert metrics.first_int64("/tensorflow/serving/request_count") == 0
    metrics.count_request("b", "OK")
    metrics.count_request("a", "OK")
    metrics.count_request("a", "OK")
    assert metrics.first_int64("/tensorflow/serving/request_count") == 2  # ("a", "OK")
    metrics.observe_request_latency("a", "Predict", "GRPC", 0.1)
    assert metrics.first_int64("/tensorflow/serving/request_latency") == 0  # a histogram
    assert metrics.first_int64("/no/such/metric") == 0


class _Runner:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.closed = False

    async def submit_async(self, feeds: dict, fetches: tuple, timeout_ms: int = 0) -> list:
        if self.fail:
            raise RuntimeError("run failed")
        return [feeds]

    def close(self) -> None:
        self.closed = True


def test_runtime_latency_is_recorded_for_successful_runs_of_the_timed_apis():
    metrics = served_metrics.Metrics()

    async def calls() -> None:
        runner = served_metrics.TimedRunner(_Runner(), metrics)
        await runner.submit_async({"x": 1}, ("y",), 0)  # no API: MultiInference, warmup
        token = served_metrics.RUNTIME_API.set(("toy", "Classify"))
        try:
            assert await runner.submit_async({"x": 1}, ("y",), 0) == [{"x": 1}]
            with pytest.raises(RuntimeError):
                await served_metrics.TimedRunner(_Runner(fail=True), metrics).submit_async(
                    {}, (), 0
                )
        finally:
            served_metrics.RUNTIME_API.reset(token)
        runner.close()
        assert runner._runner.closed

    asyncio.run(calls())
    counts = [
        line
        for line in metrics.render().decode().splitlines()
        if line.startswith(":tensorflow:serving:runtime_latency_count")
    ]
    assert counts == [
        ':tensorflow:serving:runtime_latency_count{model_name="toy",API="Classify",runtime="TF1"} 1'
    ]


# ---- a real server ----


def _config(root, *names: str) -> str:
    entries = "".join(
        f'  config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow" }}\n'
        for name in names
    )
    return f"model_config_list {{\n{entries}}}\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics")
    build_toy_model(root / "toy" / "1", 1.0)
    one_row = warmup_predict("serving_default", {"x": np.ones((1, 3), np.float32)})
    write_warmup(root / "toy" / "1", [one_row])
    build_toy_model(root / "zz" / "1", 3.0)
    (root / "zzbad" / "1").mkdir(parents=True)  # no saved_model.pb: a failed load
    config = root / "models.config"
    config.write_text(_config(root, "toy", "zz"))
    monitoring = root / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}')
    with running_server(
        f"--model_config_file={config}",
        f"--monitoring_config_file={monitoring}",
        log_path=root / "server.log",
    ) as proc:
        proc.root = root
        yield proc


def _http(server, method: str, path: str, body: bytes | None = None) -> tuple[int, str, bytes]:
    host, port = server.rest_address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def _scrape(server) -> dict[tuple[str, frozenset], float]:
    """Every sample of the page, by name and labels (the real text, parsed)."""
    status, _, page = _http(server, "GET", METRICS_PATH)
    assert status == 200
    # prometheus_client's parser renames a counter's samples NAME_total (and a family
    # NAME_total to NAME): counters are keyed by their family's name.
    return {
        (
            family.name if family.type == "counter" else sample.name,
            frozenset(sample.labels.items()),
        ): sample.value
        for family in text_string_to_metric_families(page.decode())
        for sample in family.samples
    }


def _changes(before: dict, after: dict, name: str) -> dict[frozenset, float]:
    return {
        labels: value - before.get((sample, labels), 0)
        for (sample, labels), value in after.items()
        if sample == name and value != before.get((sample, labels), 0)
    }


def _labels(**labels: str) -> frozenset:
    return frozenset(labels.items())


def _predict(model: str, input_name: str = "x") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto(np.ones((1, 3), np.float32)))
    return request


def _example(x: float) -> tf.train.Example:
    return tf.train.Example(
        features=tf.train.Features(
            feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))}
        )
    )


@pytest.mark.integration
def test_requests_are_counted_and_timed_where_tf_serving_records_them(server):
    before = _scrape(server)
    with grpc.insecure_channel(server.address) as channel:
        prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        prediction.Predict(_predict("toy"), timeout=30)
        prediction.Predict(_predict("toy"), timeout=30)
        for request, code in (
            (_predict("toy", "nope"), grpc.StatusCode.INVALID_ARGUMENT),
            (_predict("nosuch"), grpc.StatusCode.NOT_FOUND),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                prediction.Predict(request, timeout=30)
            assert caught.value.code() == code
        metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        metadata.model_spec.name = "toy"
        prediction.GetModelMetadata(metadata, timeout=30)
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "toy"
        models.GetModelStatus(status, timeout=30)
        multi = inference_pb2.MultiInferenceRequest()
        task = multi.tasks.add(method_name="tensorflow/serving/regress")
        task.model_spec.name, task.model_spec.signature_name = "toy", "regress"
        for x in (0.5, 0.25, 1.0):
            multi.input.example_list.examples.add().CopyFrom(_example(x))
        prediction.MultiInference(multi, timeout=30)
    body = json.dumps({"instances": [[1.0, 2.0, 3.0]]}).encode()
    assert _http(server, "POST", "/v1/models/toy:predict", body)[0] == 200
    assert _http(server, "GET", "/v1/models/toy")[0] == 200
    assert _http(server, "POST", "/v1/models/nosuch:predict", body)[0] == 404
    assert _http(server, "GET", "/v1/bogus")[0] == 400
    after = _scrape(server)

    # Two labels; only Predict/Classify/Regress over gRPC and every REST request count, each
    # under the name the client sent ("" when the path does not parse).
    assert _changes(before, after, ":tensorflow:serving:request_count") == {
        _labels(model_name="toy", status="OK"): 4,
        _labels(model_name="toy", status="INVALID_ARGUMENT"): 1,
        _labels(model_name="nosuch", status="NOT_FOUND"): 2,
        _labels(model_name="", status="INVALID_ARGUMENT"): 1,
    }
    # Successes only, gRPC's API capitalised, REST's as the URL spells it and "" for a GET.
    assert _changes(before, after, ":tensorflow:serving:request_latency_count") == {
        _labels(model_name="toy", API="Predict", entrypoint="GRPC"): 2,
        _labels(model_name="toy", API="predict", entrypoint="REST"): 1,
        _labels(model_name="toy", API="", entrypoint="REST"): 1,
    }
    assert _changes(before, after, ":tensorflow:serving:runtime_latency_count") == {
        _labels(model_name="toy", API="Predict", runtime="TF1"): 3,
    }
    assert _changes(before, after, ":tensorflow:serving:request_example_counts_count") == {
        _labels(model="toy"): 1,
    }
    # The parser names the counter request_example_count_total without its "_total".
    assert _changes(before, after, ":tensorflow:serving:request_example_count") == {
        _labels(model="toy"): 3,
    }


@pytest.mark.integration
def test_each_savedmodel_load_is_counted_by_its_version_folder(server):
    page = _scrape(server)
    path = str(server.root / "toy" / "1")
    attempts = page[
        (
            ":tensorflow:cc:saved_model:load_attempt_count",
            _labels(model_path=path, status="success"),
        )
    ]
    assert attempts == 1
    assert page[(":tensorflow:cc:saved_model:load_latency", _labels(model_path=path))] > 0
    for stage in ("restore_graph", "init_graph"):
        key = (
            ":tensorflow:cc:saved_model:load_latency_by_stage_count",
            _labels(model_path=path, stage=stage),
        )
        assert page[key] == 1


@pytest.mark.integration
def test_warmup_is_recorded_as_tf_serving_records_it(server):
    """saved_model_warmup_util.cc: a version folder's warmup time and records read, under
    status OK; its Predict runs time runtime_latency under the record's model name (empty
    in this record), as RunPredict does."""
    page = _scrape(server)
    path = str(server.root / "toy" / "1")
    ok = _labels(model_path=path, status="OK")
    assert page[(":tensorflow:serving:model_warmup_records_read", ok)] == 1
    assert page[(":tensorflow:serving:model_warmup_latency_count", ok)] == 1
    runtime = _labels(model_name="", API="Predict", runtime="TF1")
    assert page[(":tensorflow:serving:runtime_latency_count", runtime)] == 1
    # zz has no warmup file: nothing recorded for it
    zz = _labels(model_path=str(server.root / "zz" / "1"), status="OK")
    assert (":tensorflow:serving:model_warmup_records_read", zz) not in page


def test_batch_samplers_appear_once_batching_records_into_them():
    """batching_util.h: processed_batch_size (no labels) holds each batch's size after
    padding, padding_size is labelled by that size; both exist only after a first batch."""
    metrics = served_metrics.Metrics()
    assert "processed_batch_size" not in metrics.render().decode()
    metrics.observe_batch(8, 3)
    metrics.observe_batch_input(5)
    lines = metrics.render().decode().splitlines()
    family = ":tensorflow:serving:batching_session:"
    assert f"{family}processed_batch_size_sum{{}} 8" in lines
    assert f'{family}padding_size_sum{{execution_batch_size="8"}} 3' in lines
    assert f'{family}padding_size_bucket{{execution_batch_size="8",le="4"}} 1' in lines
    assert f"{family}input_batch_size_count{{}} 1" in lines


@pytest.mark.integration
def test_the_page_is_served_for_any_method_and_a_query_is_refused(server):
    status, content_type, page = _http(server, "POST", METRICS_PATH, b"")
    assert (status, content_type) == (200, "text/plain")
    assert b"# TYPE :tensorflow:serving:request_count counter\n" in page
    assert _http(server, "PUT", METRICS_PATH, b"")[0] == 200
    status, content_type, text = _http(server, "GET", METRICS_PATH + "?x=1")
    assert (status, content_type) == (400, "text/plain")
    assert text.decode() == f"Unexpected path: {METRICS_PATH}?x=1. Should be {METRICS_PATH}"
    # evhttp_server.cc looks the handler up by the path as sent, still percent-encoded
    encoded = METRICS_PATH.replace("/metrics", "/%6Detrics")
    assert _http(server, "GET", encoded)[0] == 404
    # and a request its HTTP server refuses reaches no handler (http_target)
    assert _http(server, "PROPFIND", METRICS_PATH)[0] == 501
    assert _http(server, "GET", METRICS_PATH + "|")[0] == 400


def _reload(server, names: tuple[str, ...], metric_names: list[str] = ()):
    request = model_management_pb2.ReloadConfigRequest(metric_names=list(metric_names))
    text_format.Parse(_config(server.root, *names), request.config)
    with grpc.insecure_channel(server.address) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        return stub.HandleReloadConfigRequest(request, timeout=120)


@pytest.mark.integration
def test_reload_config_answers_the_increase_of_each_requested_metric(server):
    # A failed load is counted as "fail" under its folder.
    with pytest.raises(grpc.RpcError):
        _reload(server, ("toy", "zz", "zzbad"))
    bad = str(server.root / "zzbad" / "1")
    page = _scrape(server)
    assert (
        page[
            (
                ":tensorflow:cc:saved_model:load_attempt_count",
                _labels(model_path=bad, status="fail"),
            )
        ]
        >= 1
    )
    _reload(server, ("zz",))  # toy unloaded
    wanted = [
        "/tensorflow/cc/saved_model/load_attempt_count",  # first point: toy/1, success
        "/tensorflow/serving/request_count",
        "/no/such/metric",
        "/tensorflow/cc/saved_model/load_attempt_count",  # asked twice, answered once
    ]
    response = _reload(server, ("toy", "zz"), wanted)  # toy loads again
    assert [(m.name, m.int64_value_increase) for m in response.metric] == [
        ("/tensorflow/cc/saved_model/load_attempt_count", 1),
        ("/tensorflow/serving/request_count", 0),
        ("/no/such/metric", 0),
    ]
    # model_service_impl.cc sets the response's status (OK: an empty StatusProto)
    assert response.HasField("status") and response.status.error_code == 0


@pytest.mark.integration
def test_with_rest_off_the_monitoring_file_is_not_read(tmp_path):
    build_toy_model(tmp_path / "toy" / "1", 1.0)
    broken = tmp_path / "monitoring.config"
    broken.write_text("prometheus_config { enable: maybe }")  # not a MonitoringConfig
    with running_server(
        "--model_name=toy",
        f"--model_base_path={tmp_path / 'toy'}",
        f"--monitoring_config_file={broken}",
        rest=False,
        log_path=tmp_path / "server.log",
    ) as proc:
        assert proc.alive()
        assert "--monitoring_config_file is not read" in proc.log()
