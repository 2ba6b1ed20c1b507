"""Shared by the server tests: tiny SavedModels, and a real server process to talk to."""

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfsp.serving.launcher import free_port

REPO = Path(__file__).resolve().parents[1]


class _Toy(tf.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = tf.Variable(scale, dtype=tf.float32)

    def _x0(self, examples: tf.Tensor) -> tf.Tensor:
        spec = {"x": tf.io.FixedLenFeature([1], tf.float32)}
        return tf.io.parse_example(examples, spec)["x"][:, 0] * self.scale

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def predict(self, x: tf.Tensor) -> dict:
        return {"y": x * self.scale}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs: tf.Tensor) -> dict:
        p = self._x0(inputs)
        scores = tf.stack([p, 1.0 - p], axis=1)
        classes = tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(p)[0], 1])
        return {"scores": scores, "classes": classes}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs: tf.Tensor) -> dict:
        return {"outputs": self._x0(inputs)}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int64, name="a"),
            tf.TensorSpec([None], tf.string, name="s"),
            tf.TensorSpec([None, 2], tf.int32, name="h"),
        ]
    )
    def types(self, a: tf.Tensor, s: tf.Tensor, h: tf.Tensor) -> dict:
        return {"a2": a * 2, "s_bytes": s, "h_sum": tf.reduce_sum(h, axis=1)}


def build_toy_model(path: Path, scale: float) -> Path:
    """A SavedModel whose outputs reveal `scale` (use the version number to tell them apart).

    Signatures:
      serving_default(x: float[None, 3]) -> y = x * scale
      classify(inputs: string[None]) -> scores [None, 2] = (x0*scale, 1-x0*scale),
                                          classes [None, 2] = ("neg", "pos")  (feature x)
      regress(inputs: string[None]) -> outputs [None] = x0 * scale
      types(a: int64[None], s: string[None], h: int32[None, 2]) ->
          a2 = a * 2, s_bytes = s, h_sum = sum(h, 1)
    """
    toy = _Toy(scale)
    tf.saved_model.save(
        toy,
        str(path),
        signatures={
            "serving_default": toy.predict,
            "classify": toy.classify,
            "regress": toy.regress,
            "types": toy.types,
        },
    )
    return path


_UNSERVABLE_SCRIPT = """
import sys
import keras
import tensorflow as tf

class KerasInModule(tf.Module):
    def __init__(self):
        super().__init__()
        inputs = keras.Input((3,), name="x")
        self.model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def predict(self, x):
        return {"y": self.model(x)}

module = KerasInModule()
tf.saved_model.save(module, sys.argv[1], signatures={"serving_default": module.predict})
"""


def build_unservable_model(path: Path, *, with_warmup: bool = False) -> Path:
    """A SavedModel TF Serving loads but cannot run: serving_default(x: float[None, 3]) -> y.

    A Keras 3 model held by a tf.Module that does not track its tf.Variables: the signature
    reads variables named after the Keras ones (`dense/kernel`) that the restore op never
    fills (keras-team/keras#19274). TF2's loader runs it, a graph-mode Session fails with
    FAILED_PRECONDITION. Built with the `keras` package (Keras 3) in a fresh interpreter:
    `tf.keras` is Keras 2 in any process where tensorflow_transform was imported first (it
    sets TF_USE_LEGACY_KERAS=1), and Keras 2 models do not have this bug.
    `with_warmup` adds one Predict warmup request.
    """
    subprocess.run(
        [sys.executable, "-c", _UNSERVABLE_SCRIPT, str(path)],
        env={k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"},
        check=True,
        capture_output=True,
        timeout=300,
    )
    if with_warmup:
        write_warmup(path, [warmup_predict("serving_default", {"x": np.ones((1, 3), np.float32)})])
    return path


def build_counting_model(path: Path) -> Path:
    """A SavedModel whose `count` signature loops as many times as the largest value of its
    int64 input `n` (any shape), then returns `n` as `out`: a run as long as a test needs."""
    graph = tf.Graph()
    with graph.as_default():
        n = tf.compat.v1.placeholder(tf.int64, None, name="n")
        limit = tf.reduce_max(n)
        (done,) = tf.while_loop(lambda i: i < limit, lambda i: i + 1, [tf.constant(0, tf.int64)])
        with tf.control_dependencies([done]):  # an arithmetic use could be folded away
            out = tf.identity(n, name="out")
        with tf.compat.v1.Session(graph=graph) as session:
            builder = tf.compat.v1.saved_model.Builder(str(path))
            signature = tf.compat.v1.saved_model.predict_signature_def({"n": n}, {"out": out})
            builder.add_meta_graph_and_variables(session, ["serve"], {"count": signature})
            builder.save()
    return path


def warmup_predict(signature: str, inputs: dict) -> object:
    """A PredictionLog holding a Predict request on `signature`."""
    from tensorflow_serving.apis import prediction_log_pb2

    record = prediction_log_pb2.PredictionLog()
    request = record.predict_log.request
    request.model_spec.signature_name = signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return record


def write_warmup(version_dir: Path, records: list, raw: list[bytes] = ()) -> Path:
    """Write TF Serving's warmup file (PredictionLog records, then `raw` records as given)."""
    path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record.SerializeToString())
        for data in raw:
            writer.write(data)
    return path


def copy_version(source: Path, target: Path) -> None:
    """Publish a version folder atomically (write beside, then rename), as a pusher should."""
    import shutil

    staging = target.parent / f".staging-{target.name}"
    shutil.copytree(source, staging)
    os.rename(staging, target)


class BatchRecorder:
    """A batcher's observer (tfsp.serving.batching.BatchObserver) that keeps each merged
    batch as (size after padding, padding rows)."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []

    def observe_batch_input(self, rows: int) -> None:
        """Not kept."""

    def observe_queuing(self, micros: int) -> None:
        """Not kept."""

    def observe_batch(self, padded: int, padding: int) -> None:
        """Keep (padded, padding)."""
        self.batches.append((padded, padding))

    def count_wrapped_run(self) -> None:
        """Not kept."""


def port_accepts(port: int) -> bool:
    """Whether something listens on 127.0.0.1:`port`."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class ServerProcess:
    """A `tfsp-model-server` subprocess on ephemeral ports."""

    def __init__(self, *flags: str, rest: bool = True, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.rest_port = free_port() if rest else 0
        self.flags = [f"--port={self.port}", *flags]
        if rest:
            self.flags.append(f"--rest_api_port={self.rest_port}")
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self._log_file = None

    @property
    def address(self) -> str:
        """host:port of the gRPC API."""
        return f"127.0.0.1:{self.port}"

    @property
    def rest_address(self) -> str:
        """host:port of the REST API."""
        return f"127.0.0.1:{self.rest_port}"

    def start(self, timeout: float = 90.0) -> "ServerProcess":
        """Start and wait until the gRPC port answers, and the REST port if there is one
        (the server opens it after gRPC's, as TF Serving does)."""
        import grpc

        self._log_file = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tfsp.serving.server", *self.flags],
            cwd=REPO,
            stdout=self._log_file,
            stderr=self._log_file,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log()}")
            channel = grpc.insecure_channel(self.address)
            try:
                grpc.channel_ready_future(channel).result(timeout=0.5)
                if not self.rest_port or port_accepts(self.rest_port):
                    return self
                time.sleep(0.05)
            except grpc.FutureTimeoutError:
                pass
            finally:
                channel.close()
        self.stop()
        raise RuntimeError(f"server did not start in {timeout}s: {self.log()}")

    def log(self) -> str:
        """The server's output so far."""
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait; returns the exit code (kills after `timeout`)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log_file not in (None, subprocess.DEVNULL):
            self._log_file.close()
        return self.process.returncode


def post_json(
    server: "ServerProcess", path: str, body: bytes, headers: dict | None = None
) -> tuple[int, object]:
    """POST `body` to the server's REST API; (HTTP status, the JSON reply, errors included)."""
    host, port = server.rest_address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("POST", path, body=body, headers=headers or {})
        response = connection.getresponse()
        status, raw = response.status, response.read()
    finally:
        connection.close()
    return status, json.loads(raw)


@contextlib.contextmanager
def running_server(
    *flags: str, log_path: Path | None = None, rest: bool = True
) -> Iterator[ServerProcess]:
    """Start a server for a `with` block and always stop it."""
    server = ServerProcess(*flags, rest=rest, log_path=log_path).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def in_process_dataplane(
    base_path: Path,
    name: str = "toy",
    batching: object | None = None,
    batch_observer: object | None = None,
    session_options: object | None = None,
    before_load: Callable[[str, int], None] | None = None,
) -> Iterator[object]:
    """The server's DataPlane over a real ModelManager, in this process (no gRPC, no REST).

    Versions under `base_path` load through the server's VersionLoader (tfsp.serving.loader:
    TF Serving's load path, then warmup if the version has a warmup file) and run on model
    worker threads, as in `tfsp serve` without batching; or, given `batching` (a
    tfsp.serving.config.BatchingSettings), through a BatchingRunner on a shared scheduler,
    which reports what it does to `batch_observer` (a tfsp.serving.batching.BatchObserver,
    e.g. a BatchRecorder). `session_options` (a tfsp.serving.servable.SessionOptions) is every
    session's config, as the server's flags make it. `before_load(name, version)`, if given,
    is called on the loading thread before each version loads (a test can hold a load there).
    """
    from tfsp.serving.batching import BatchScheduler
    from tfsp.serving.config import model_settings, single_model_config
    from tfsp.serving.dataplane import DataPlane
    from tfsp.serving.loader import LoadOptions, VersionLoader
    from tfsp.serving.manager import ModelManager
    from tfsp.serving.servable import SessionOptions
    from tfsp.serving.workers import ModelWorkers

    workers = ModelWorkers(2)
    scheduler = BatchScheduler(batching.num_batch_threads) if batching is not None else None
    load_options = LoadOptions(session=session_options or SessionOptions(), batching=batching)
    loader = VersionLoader(load_options, workers, scheduler, batch_observer=batch_observer)

    def load(name: str, version: int, path: str) -> object:
        if before_load is not None:
            before_load(name, version)
        return loader.load(name, version, path)

    manager = ModelManager(load, loader.make_runner)
    try:
        manager.configure(model_settings(single_model_config(name, str(base_path))))
        yield DataPlane(manager)
    finally:
        manager.shutdown()
        if scheduler is not None:
            scheduler.close()
        workers.shutdown(wait=True)
