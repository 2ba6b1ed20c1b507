"""SIGTERM: every request received before it is answered, new ones get UNAVAILABLE, exit 0.

The drain's steps in-process first (tfsp.serving.drain), then real server processes under load,
with and without batching, over gRPC and REST.
"""

import asyncio
import collections
import http.client
import signal
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.serving_harness import build_toy_model, running_server
from tfsp.serving import drain

GRACE_SECONDS = 10


# ---- the drain's steps, in-process ----


def test_wait_quiet_returns_once_arrivals_stop():
    async def scenario() -> tuple[float, float]:
        gate = drain.Gate()

        async def arrivals() -> None:
            for _ in range(20):
                gate.admit()
                await asyncio.sleep(0.01)

        started = time.monotonic()
        feeder = asyncio.ensure_future(arrivals())
        assert await gate.wait_quiet(0.05, limit=5.0)
        await feeder
        return time.monotonic() - started, gate.last_arrival - started

    waited, last_arrival = asyncio.run(scenario())
    assert waited >= last_arrival + 0.05  # quiet counted from the last arrival
    assert waited < 2.0


def test_wait_quiet_gives_up_at_its_limit_under_sustained_arrivals():
    async def scenario() -> tuple[bool, float]:
        gate = drain.Gate()
        stop = asyncio.Event()

        async def arrivals() -> None:
            while not stop.is_set():
                gate.admit()
                await asyncio.sleep(0.005)

        feeder = asyncio.ensure_future(arrivals())
        started = time.monotonic()
        quiet = await gate.wait_quiet(0.05, limit=0.3)
        waited = time.monotonic() - started
        stop.set()
        await feeder
        return quiet, waited

    quiet, waited = asyncio.run(scenario())
    assert quiet is False
    assert 0.3 <= waited < 1.5


def test_time_the_event_loop_was_blocked_is_not_quiet():
    # Calls reaching the transport while the loop is busy are handed over only after it:
    # a blocked loop must not look like a quiet one.
    async def scenario() -> tuple[float, float]:
        gate = drain.Gate()
        loop = asyncio.get_running_loop()
        unblocked = []

        def block() -> None:
            time.sleep(0.3)
            unblocked.append(time.monotonic())

        loop.call_later(0.01, block)
        await gate.wait_quiet(0.05, limit=5.0)
        return time.monotonic(), unblocked[0]

    finished, unblocked = asyncio.run(scenario())
    assert finished >= unblocked + 0.04


def test_drain_takes_then_refuses_then_closes_within_the_grace_period():
    async def scenario() -> dict:
        gate = drain.Gate()
        seen: dict = {"admitted": 0, "refused": 0}
        stop = asyncio.Event()

        async def arrivals() -> None:  # a client that never stops sending
            while not stop.is_set():
                seen["admitted" if gate.admit() else "refused"] += 1
                await asyncio.sleep(0.005)

        async def close_listeners(seconds: float) -> None:
            seen["closed_after"] = time.monotonic() - started
            seen["left"] = seconds
            stop.set()

        feeder = asyncio.ensure_future(arrivals())
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await drain.drain(gate, 5.0, close_listeners)
        await feeder
        return seen

    seen = asyncio.run(scenario())
    cap = drain.INTAKE_SECONDS + drain.REFUSAL_SECONDS
    assert seen["admitted"] > 0 and seen["refused"] > 0
    assert cap <= seen["closed_after"] < cap + 1.0 < 5.0
    assert abs(seen["left"] - (5.0 - seen["closed_after"])) < 0.1


def test_a_grace_period_shorter_than_the_steps_bounds_them():
    async def scenario() -> tuple[float, float]:
        gate = drain.Gate()
        left = []
        stop = asyncio.Event()

        async def arrivals() -> None:
            while not stop.is_set():
                gate.admit()
                await asyncio.sleep(0.005)

        async def close_listeners(seconds: float) -> None:
            left.append(seconds)
            stop.set()

        feeder = asyncio.ensure_future(arrivals())
        started = time.monotonic()
        await drain.drain(gate, 0.2, close_listeners)
        await feeder
        return time.monotonic() - started, left[0]

    took, left = asyncio.run(scenario())
    assert took < 0.6 and left == 0.0


# ---- real servers ----


def _request(rows: int) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "toy"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones((rows, 3), np.float32)))
    return request


class _Load:
    """Closed-loop clients (gRPC, large and small requests, and REST) recording, per call,
    when it was sent and the status it got, until the server is gone."""

    def __init__(self, server: object, large_rows: int) -> None:
        self.server = server
        self.results: list[tuple[float, str, str]] = []  # (sent at, kind, status)
        self._stop = threading.Event()
        self._channel = grpc.insecure_channel(
            server.address,
            options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
        )
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        kinds = [("large", _request(large_rows))] * 4 + [("small", _request(1))] * 10
        self._threads = [threading.Thread(target=self._grpc, args=k) for k in kinds]
        self._threads += [threading.Thread(target=self._rest) for _ in range(2)]

    def _grpc(self, kind: str, request: predict_pb2.PredictRequest) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                self._stub.Predict(request, timeout=60)
                status = "OK"
            except grpc.RpcError as exc:
                status = exc.code().name
            self.results.append((sent, kind, status))

    def _rest(self) -> None:
        host, port = self.server.rest_address.split(":")
        while not self._stop.is_set():
            sent = time.monotonic()
            connection = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                connection.request("POST", "/v1/models/toy:predict", b'{"instances": [[1,2,3]]}')
                code = connection.getresponse().status
                status = {200: "OK", 503: "UNAVAILABLE"}.get(code, f"HTTP {code}")
            except ConnectionRefusedError:
                status = "UNAVAILABLE"  # the listener is closed
            except (ConnectionError, http.client.HTTPException) as exc:
                status = f"dropped: {type(exc).__name__}"
            finally:
                connection.close()
            self.results.append((sent, "rest", status))

    def __enter__(self) -> "_Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)
        self._channel.close()


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shutdown") / "toy"
    build_toy_model(root / "1", 1.0)
    return root


@pytest.mark.integration
@pytest.mark.parametrize("batching", [False, True], ids=["unbatched", "batching"])
def test_sigterm_under_load_answers_everything_received_then_refuses(toy_root, batching):
    flags = [
        "--model_name=toy",
        f"--model_base_path={toy_root}",
        f"--shutdown_grace_period_seconds={GRACE_SECONDS}",
        "--grpc_max_threads=32",  # the load's 14 gRPC callers run at once, none refused
    ]
    if batching:
        parameters = toy_root.parent / "batching.config"
        parameters.write_text(
            "max_batch_size { value: 64 } batch_timeout_micros { value: 10000 } "
            "num_batch_threads { value: 2 } max_enqueued_batches { value: 1000 }"
        )
        flags += ["--enable_batching", f"--batching_parameters_file={parameters}"]
    log_path = toy_root.parent / f"server-{batching}.log"
    with running_server(*flags, log_path=log_path) as server:
        # large requests (24 MiB unbatched) hold the event loop while small ones queue
        with _Load(server, large_rows=60 if batching else 2_000_000) as load:
            time.sleep(2.0)
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            code = server.process.wait(GRACE_SECONDS + 15)
            exited = time.monotonic() - signalled
        log = server.log()
    before = collections.Counter((k, s) for t, k, s in load.results if t < signalled)
    after = collections.Counter(s for t, _, s in load.results if t >= signalled)
    assert code == 0, log
    assert exited < GRACE_SECONDS, (exited, log)
    # every request sent before the signal was answered, under load and behind large ones
    assert {status for _, status in before} == {"OK"}, before
    assert before[("large", "OK")] > 0 and before[("small", "OK")] > 0 and before[("rest", "OK")]
    # after it, calls are answered (still in the transport) or refused; gRPC's core cancels
    # a call that arrives at the very moment the listener closes (seen once in ~10 runs on a
    # loaded machine), which no server of grpc.aio can prevent
    assert set(after) <= {"OK", "UNAVAILABLE", "CANCELLED"}, after
    assert after["CANCELLED"] <= 2 and after["UNAVAILABLE"] > 10 * after["CANCELLED"], after
    assert "draining:" in log and "refused" in log


def _held_in_a_batch(toy_root: Path, grace_seconds: int) -> list[str]:
    """Server flags under which one row waits 60 s for its batch to fill: longer than the
    grace period."""
    parameters = toy_root.parent / "slow-batching.config"
    parameters.write_text(
        "max_batch_size { value: 64 } batch_timeout_micros { value: 60000000 } "
        "num_batch_threads { value: 1 }"
    )
    return [
        "--model_name=toy",
        f"--model_base_path={toy_root}",
        f"--shutdown_grace_period_seconds={grace_seconds}",
        "--enable_batching",
        f"--batching_parameters_file={parameters}",
    ]


@pytest.mark.integration
def test_calls_still_running_when_the_grace_period_ends_are_ended_and_exit_is_0(toy_root):
    flags = _held_in_a_batch(toy_root, 2)
    with running_server(*flags, log_path=toy_root.parent / "server-grace.log") as server:
        channel = grpc.insecure_channel(server.address)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        future = stub.Predict.future(_request(1), timeout=120)
        time.sleep(0.5)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(30)
        exited = time.monotonic() - signalled
        with pytest.raises(grpc.RpcError) as caught:
            future.result(timeout=10)
        channel.close()
    assert code == 0
    assert 2.0 <= exited < 6.0  # the grace period, then the rest of the shutdown
    # gRPC's core ends it (grpc_server_cancel_all_calls)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "Cancelling all calls"


@pytest.mark.integration
def test_rest_requests_still_running_when_the_grace_period_ends_are_ended_then(toy_root):
    # aiohttp's own shutdown cancels only a handler that reads its body, and waits twice its
    # timeout for any other: with a 10 s grace period, a REST call held in a batch kept the
    # server up for 15.5 s. It is ended when the grace period is, as gRPC's calls are.
    grace = 10
    log_path = toy_root.parent / "server-rest-grace.log"
    with running_server(*_held_in_a_batch(toy_root, grace), log_path=log_path) as server:
        host, port = server.rest_address.split(":")
        outcome: list = []

        def predict() -> None:
            connection = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                connection.request(
                    "POST", "/v1/models/toy:predict", body=b'{"instances": [[1, 2, 3]]}'
                )
                outcome.append(connection.getresponse().status)
            except (ConnectionError, http.client.HTTPException) as exc:
                outcome.append(type(exc).__name__)
            finally:
                connection.close()

        caller = threading.Thread(target=predict)
        caller.start()
        time.sleep(0.5)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(60)
        exited = time.monotonic() - signalled
        caller.join(10)
        log = server.log()
    assert code == 0
    assert grace <= exited < grace + 3.5, log
    # the connection closes without an answer
    assert outcome in (["RemoteDisconnected"], ["ConnectionResetError"]), outcome
    assert "ended 1 REST request(s) still running" in log


# ---- gRPC health checking (--enable_grpc_healthcheck_service) ----


@pytest.mark.integration
def test_the_health_service_answers_as_tf_servings_and_turns_not_serving_on_sigterm(tmp_path):
    """server.cc marks "ModelService" and "PredictionService" SERVING in gRPC's default health
    service, whose "" (the whole server) is SERVING from the start; other names are
    NOT_FOUND. On SIGTERM every status turns NOT_SERVING before the drain closes the port."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    build_toy_model(tmp_path / "toy" / "1", 1.0)
    flags = ("--model_name=toy", f"--model_base_path={tmp_path / 'toy'}")
    with running_server(*flags) as plain:
        with grpc.insecure_channel(plain.address) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED  # off by default
    with running_server(*flags, "--enable_grpc_healthcheck_service") as proc:
        with grpc.insecure_channel(proc.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            def check(service: str) -> int:
                return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status

            assert [check(s) for s in ("", "ModelService", "PredictionService")] == [serving] * 3
            with pytest.raises(grpc.RpcError) as caught:
                check("tensorflow.serving.PredictionService")
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            watch = stub.Watch(health_pb2.HealthCheckRequest(service="PredictionService"))
            assert next(watch).status == serving
            proc.process.send_signal(signal.SIGTERM)
            assert next(watch).status == not_serving
            # The stream then ends: it does not hold the drain until its grace period.
            assert [r.status for r in watch] in ([], [not_serving])
            assert watch.code() == grpc.StatusCode.OK
            assert proc.process.wait(timeout=GRACE_SECONDS + 30) == 0


class _HeldWrites:
    """A Watch call's context whose writes after the first wait for `release`, like a write
    gRPC has not finished sending; counts writes cancelled in flight."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.cancelled = 0
        self.release = asyncio.Event()

    async def write(self, message: object) -> None:
        try:
            if self.statuses:
                await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.statuses.append(message.status)


async def _watching() -> tuple[object, _HeldWrites, asyncio.Future]:
    """(our HealthService, its Watch call's context, the Watch) once the Watch has written
    PredictionService's SERVING."""
    from grpc_health.v1 import health_pb2

    from tfsp.serving.grpc_service import HealthService

    service = HealthService()
    await service.set("PredictionService", health_pb2.HealthCheckResponse.SERVING)
    stream = _HeldWrites()
    request = health_pb2.HealthCheckRequest(service="PredictionService")
    watch = asyncio.ensure_future(service.Watch(request, stream))
    while not stream.statuses:
        await asyncio.sleep(0.001)
    return service, stream, watch


def test_a_health_watch_ends_after_its_last_write_not_by_cancelling_it():
    """On shutdown the library's Watch may be writing NOT_SERVING. Cancelling that write left
    the real call unable to take the next one: the stream hung until the server stopped
    (seen under load). The wrapper lets the write finish and ends the stream."""
    from grpc_health.v1 import health_pb2

    async def scenario() -> _HeldWrites:
        service, stream, watch = await _watching()
        await service.enter_graceful_shutdown()  # the library starts writing NOT_SERVING
        await asyncio.sleep(0.01)
        await service.shut_down()
        await asyncio.sleep(0.01)
        stream.release.set()
        await asyncio.wait_for(watch, timeout=10)
        return stream

    stream = asyncio.run(scenario())
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    assert (stream.statuses, stream.cancelled) == ([serving, not_serving], 0)


def test_a_health_watch_the_client_cancels_ends_the_librarys_watch_too():
    async def scenario() -> tuple[bool, bool]:
        service, _, watch = await _watching()
        library_tasks = [t for t in asyncio.all_tasks() if t is not watch and not t.done()]
        watch.cancel()  # what grpc.aio does when the client cancels
        await asyncio.gather(watch, return_exceptions=True)
        await asyncio.sleep(0.01)
        current = asyncio.current_task()
        leaked = [t for t in library_tasks if t is not current and not t.done()]
        return bool(leaked), "PredictionService" in service._server_watchers

    assert asyncio.run(scenario()) == (False, False)
