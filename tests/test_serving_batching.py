"""Batching (in process on a real SavedModel, then through a server), metrics, SIGTERM drain."""

import asyncio
import http.client
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tensorflow as tf

from tests.serving_harness import (
    BatchRecorder,
    build_counting_model,
    build_toy_model,
    running_server,
    warmup_predict,
    write_warmup,
)
from tfsp.serving.batching import QUEUE_TIMED_OUT, BatchingRunner
from tfsp.serving.client import ClientError, ServingClient
from tfsp.serving.config import BatchingSettings
from tfsp.serving.errors import ServingError
from tfsp.serving.servable import RUN_TIMED_OUT, Servable, load_servable
from tfsp.serving.workers import ModelWorkers

pytestmark = pytest.mark.integration  # starts model servers


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("batching")
    build_toy_model(root / "toy" / "3", 3.0)
    return root


@pytest.fixture(scope="module")
def servable(toy_dir):
    return load_servable("toy", 3, str(toy_dir / "toy" / "3"))


def _submit(runner: BatchingRunner, servable: Servable, signature: str, inputs: dict, keys: list):
    """A signature call through the runner, as the data plane makes it (by tensor names)."""
    feed_names, fetches = servable.tensor_names(signature, tuple(inputs), tuple(keys))
    return runner.submit_async(dict(zip(feed_names, inputs.values(), strict=True)), fetches)


def test_concurrent_calls_are_merged_padded_and_split_back(servable):
    recorder = BatchRecorder()
    settings = BatchingSettings(
        max_batch_size=8, batch_timeout_micros=500_000, num_batch_threads=1,
        allowed_batch_sizes=(4, 8),
    )  # fmt: skip
    fallback = ModelWorkers(2)
    runner = BatchingRunner(servable, settings, fallback, recorder)
    rows = [np.full((1, 3), i, dtype=np.float32) for i in range(5)]

    async def calls() -> list:
        futures = [_submit(runner, servable, "serving_default", {"x": r}, ["y"]) for r in rows]
        return await asyncio.wait_for(asyncio.gather(*futures), timeout=30)

    try:
        results = asyncio.run(calls())
    finally:
        runner.close()
        fallback.shutdown()
    for i, result in enumerate(results):
        np.testing.assert_allclose(result[0], np.full((1, 3), 3.0 * i))
    assert recorder.batches == [(8, 3)]  # one batch of 5 rows, padded to the allowed size 8


def test_run_timeouts_as_batching_session_applies_them(tmp_path):
    """batching_session.cc ProcessBatch: a batch whose tasks' deadlines all passed in the
    queue is not run (RESOURCE_EXHAUSTED, its words); otherwise it runs with the latest
    deadline left as its timeout. One batch thread, busy with the endless run (a batch of
    its own: the later tasks arrive once it runs) while the later tasks wait. Batches are
    counted as they are merged, before they run, as TF Serving records them."""
    counting = load_servable("count", 1, str(build_counting_model(tmp_path / "count" / "1")))
    (feed,), fetches = counting.tensor_names("count", ("n",), ("out",))
    recorder = BatchRecorder()
    settings = BatchingSettings(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1)
    fallback = ModelWorkers(2)
    runner = BatchingRunner(counting, settings, fallback, recorder)

    def submit(n: list, timeout_ms: int) -> asyncio.Future:
        return runner.submit_async({feed: np.array(n, np.int64)}, fetches, timeout_ms)

    async def outcome(future: asyncio.Future) -> object:
        try:
            return (await asyncio.wait_for(future, timeout=60))[0].tolist()
        except (ServingError, tf.errors.OpError) as exc:
            return type(exc).__name__, getattr(exc, "message", "")

    async def phase(late: list[int]) -> list:
        endless = submit([10**15], 400)  # years of loop, cancelled after 400 ms
        await asyncio.sleep(0.1)
        queued = [submit([i], timeout) for i, timeout in enumerate(late, 1)]
        return [await outcome(f) for f in [endless, *queued]]

    try:
        expired = asyncio.run(phase([100, 100]))
        mixed = asyncio.run(phase([100, 60_000]))
    finally:
        runner.close()
        fallback.shutdown()
        counting.close()
    timed_out = ("DeadlineExceededError", RUN_TIMED_OUT)
    refused = ("ServingError", QUEUE_TIMED_OUT)
    assert expired == [timed_out, refused, refused]
    assert mixed == [timed_out, [1], [2]]  # one live task: the whole batch runs
    assert [size for size, _ in recorder.batches] == [1, 1, 2]


def test_incompatible_and_oversized_tasks(servable):
    settings = BatchingSettings(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=2)
    fallback = ModelWorkers(2)
    runner = BatchingRunner(servable, settings, fallback)

    async def calls() -> None:
        with pytest.raises(ServingError) as caught:
            _submit(runner, servable, "serving_default", {"x": np.zeros((5, 3), np.float32)}, ["y"])
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.message == "Task size 5 is larger than maximum input batch size 4"
        with pytest.raises(ServingError) as caught:
            inputs = {"a": np.int64(1), "s": np.array([b"x"]), "h": np.zeros((1, 2))}
            _submit(runner, servable, "types", inputs, ["a2"])
        # TF Serving's words (batching_util.h ComputeTensorBatchSize)
        assert (
            caught.value.message == "Batching Run() input tensors must have at least one dimension"
        )
        with pytest.raises(ServingError) as caught:
            inputs = {"a": np.array([1, 2], np.int64), "s": np.array([b"x"]), "h": np.zeros((1, 2))}
            _submit(runner, servable, "types", inputs, ["a2"])
        assert (
            caught.value.message
            == "Batching Run() input tensors must have equal 0th-dimension size"
        )
        with pytest.raises(ServingError) as caught:
            runner.submit_async({}, ("y:0",))
        assert caught.value.message == "Batching Run() must have at least one input tensor"
        # different signatures queued together still each get their own answer
        a = _submit(runner, servable, "serving_default", {"x": np.ones((2, 3), np.float32)}, ["y"])
        b = _submit(
            runner,
            servable,
            "types",
            {
                "a": np.array([1], np.int64),
                "s": np.array([b"q"], dtype=object),
                "h": np.array([[1, 2]], np.int32),
            },
            ["a2"],
        )
        assert (await asyncio.wait_for(a, timeout=30))[0].shape == (2, 3)
        assert (await asyncio.wait_for(b, timeout=30))[0].tolist() == [2]
        runner.close()
        # after close (an unloaded version), calls still complete, unbatched
        late = _submit(
            runner, servable, "serving_default", {"x": np.ones((1, 3), np.float32)}, ["y"]
        )
        assert (await asyncio.wait_for(late, timeout=30))[0].tolist() == [[3.0, 3.0, 3.0]]

    try:
        asyncio.run(calls())
    finally:
        runner.close()
        fallback.shutdown()


def test_sessions_run_in_the_calling_thread_on_a_negative_inter_op_count(toy_dir):
    """intra-op 1 with inter-op -1 is TensorFlow's run-in-the-caller's-thread mode; TF Serving
    passes both flags to every session as given, so the server must start and answer."""
    flags = ("--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=-1")
    with running_server("--model_name=toy", f"--model_base_path={toy_dir / 'toy'}", *flags) as proc:

        def one(i: int) -> list:
            with ServingClient(proc.address, timeout=30) as client:
                return client.predict("toy", {"x": np.full((1, 3), i, np.float32)})[1]["y"].tolist()

        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(one, range(8))) == [[[3.0 * i] * 3] for i in range(8)]


BATCHING = """
max_batch_size { value: 4 }
batch_timeout_micros { value: 1500000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 1 }
allowed_batch_sizes: 2
allowed_batch_sizes: 4
"""


@pytest.fixture(scope="module")
def batching_server(toy_dir):
    params = toy_dir / "batching.config"
    params.write_text(BATCHING)
    monitoring = toy_dir / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/metrics" }')
    server = running_server(
        "--model_name=toy",
        f"--model_base_path={toy_dir / 'toy'}",
        "--enable_batching",
        f"--batching_parameters_file={params}",
        f"--monitoring_config_file={monitoring}",
        "--grpc_max_threads=16",  # 8 calls at once below; each thread runs one, one waits
        log_path=toy_dir / "server.log",
    )
    with server as proc:
        yield proc


def _metrics(server) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    return text


def _sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_server_batches_concurrent_predicts(batching_server):
    def one(i):
        with ServingClient(batching_server.address, timeout=30) as client:
            spec, outputs = client.predict("toy", {"x": np.full((1, 3), i, np.float32)})
        return spec.version.value, outputs["y"].tolist()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert results == [(3, [[3.0 * i] * 3]) for i in range(8)]
    text = _metrics(batching_server)
    # batching_session.cc and batching_util.h: every call's input rows and queue wait, each
    # merged batch's size after padding (allowed sizes 2 and 4), and each session run
    family = ":tensorflow:serving:batching_session:"
    assert _sample(text, family + "input_batch_size_count") == 8
    assert _sample(text, family + "input_batch_size_sum") == 8
    assert 'queuing_latency_count{thread_pool_name=""} 8' in text
    batches = _sample(text, family + "processed_batch_size_count")
    assert _sample(text, family + "processed_batch_size_sum") >= 8 and batches < 8  # merged
    assert _sample(text, family + "wrapped_run_count") == batches
    assert ':tensorflow:serving:request_count{model_name="toy",status="OK"} 8' in text


def test_server_rejects_a_task_above_max_batch_size(batching_server):
    with ServingClient(batching_server.address, timeout=30) as client:
        with pytest.raises(ClientError) as caught:
            client.predict("toy", {"x": np.zeros((5, 3), np.float32)})
    assert caught.value.code == "INVALID_ARGUMENT"


def test_sigterm_drains_in_flight_requests_then_exits_0(batching_server):
    # One row waits for the 1.5 s batch timeout: SIGTERM arrives while it is in flight.
    results: list = []

    def call():
        with ServingClient(batching_server.address, timeout=30) as client:
            try:
                results.append(client.predict("toy", {"x": np.ones((1, 3), np.float32)})[1])
            except ClientError as exc:
                results.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.7)
    code = batching_server.stop()
    thread.join(timeout=30)
    assert code == 0
    assert len(results) == 1 and not isinstance(results[0], Exception), results
    assert results[0]["y"].tolist() == [[3.0, 3.0, 3.0]]
    channel = grpc.insecure_channel(batching_server.address)
    with pytest.raises(grpc.FutureTimeoutError):
        grpc.channel_ready_future(channel).result(timeout=1)
    channel.close()
    assert "draining" in batching_server.log()


@pytest.mark.parametrize("problem", ["warmup above max_batch_size", "last allowed size"])
def test_batching_refused_when_a_version_loads_as_tf_serving_refuses_it(tmp_path, problem):
    """TF Serving checks batching parameters as each version loads (bundle_factory_util.cc,
    shared_batch_scheduler.h), and warms the version up through its batching session: a
    failure is that version's load error, which stops a server starting with it."""
    version = build_toy_model(tmp_path / "m" / "1", 1.0)
    if problem == "warmup above max_batch_size":
        write_warmup(
            version, [warmup_predict("serving_default", {"x": np.ones((4, 3), np.float32)})]
        )
        params = "max_batch_size { value: 2 }"
        due = f"warmup of {version} failed: Task size 4 is larger than maximum input batch size 2"
    else:
        params = "max_batch_size { value: 16 } allowed_batch_sizes: 4 allowed_batch_sizes: 8"
        due = (
            f"loading {version} failed: Last entry in allowed_batch_sizes must match "
            "max_batch_size; last entry was 8; expected 16"
        )
    (tmp_path / "batching.config").write_text(params)
    flags = ("--enable_batching", f"--batching_parameters_file={tmp_path / 'batching.config'}")
    with pytest.raises(RuntimeError, match="server exited with 1") as caught:
        with running_server(
            "--model_name=m", f"--model_base_path={tmp_path / 'm'}", *flags,
            log_path=tmp_path / "log",
        ):  # fmt: skip
            pass
    assert (
        "Failed to start server: 1 model(s) did not become available: {{{name: m version: 1} "
        f"due to error: INVALID_ARGUMENT: {due}}}, }}"
    ) in str(caught.value)


def test_per_model_batching_parameters_come_from_each_version(tmp_path):
    """--enable_per_model_batching_parameters: a version with batching_params.pbtxt is batched
    by it, one without is not batched (saved_model_bundle_factory.cc)."""
    own = build_toy_model(tmp_path / "own" / "1", 1.0)
    (own / "batching_params.pbtxt").write_text("max_batch_size { value: 2 }")
    build_toy_model(tmp_path / "plain" / "1", 1.0)
    config = tmp_path / "models.config"
    entries = " ".join(
        f'config {{ name: "{name}" base_path: "{tmp_path / name}" model_platform: "tensorflow" }}'
        for name in ("own", "plain")
    )
    config.write_text(f"model_config_list {{ {entries} }}")
    rows = np.ones((3, 3), np.float32)
    with running_server(
        f"--model_config_file={config}",
        "--enable_batching",
        "--enable_per_model_batching_parameters",
        log_path=tmp_path / "log",
    ) as server:
        with ServingClient(server.address, timeout=30) as client:
            with pytest.raises(ClientError) as caught:
                client.predict("own", {"x": rows})
            assert caught.value.code == "INVALID_ARGUMENT"
            assert "Task size 3 is larger than maximum input batch size 2" in str(caught.value)
            assert client.predict("plain", {"x": rows})[1]["y"].tolist() == rows.tolist()


def test_a_call_past_the_grpc_threads_is_refused_not_queued(toy_dir, tmp_path):
    """TF Serving's gRPC server runs each call on a thread of its own under a quota of
    --grpc_max_threads, one thread always waiting for calls: with 3, two calls run, and a
    third that arrives meanwhile is RESOURCE_EXHAUSTED "Server Threadpool Exhausted" at once
    (grpc thread_manager.cc), whatever its service. Here two calls wait 3 s for a batch."""
    params = tmp_path / "batching.config"
    params.write_text("max_batch_size { value: 8 } batch_timeout_micros { value: 3000000 }")
    with running_server(
        "--model_name=toy",
        f"--model_base_path={toy_dir / 'toy'}",
        "--enable_batching",
        f"--batching_parameters_file={params}",
        "--grpc_max_threads=3",
        log_path=tmp_path / "server.log",
    ) as server:
        row = np.ones((1, 3), np.float32)
        with ThreadPoolExecutor(2) as pool, ServingClient(server.address, timeout=30) as client:
            held = [pool.submit(client.predict, "toy", {"x": row}) for _ in range(2)]
            time.sleep(1.0)  # both are running, waiting for their batch
            refused = []
            for call in (lambda: client.predict("toy", {"x": row}), lambda: client.status("toy")):
                started = time.monotonic()
                with pytest.raises(ClientError) as caught:
                    call()
                refused.append((caught.value.code, caught.value.message))
                assert time.monotonic() - started < 1.0  # answered at once, not queued
            assert refused == [("RESOURCE_EXHAUSTED", "Server Threadpool Exhausted")] * 2
            assert [f.result()[1]["y"].tolist() for f in held] == [[[3.0] * 3]] * 2
            # the threads are free again
            assert client.status("toy").model_version_status[0].version == 3
