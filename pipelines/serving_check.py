"""The serving check before every push: serve the candidate the way TF Serving does and call it.

TFX's InfraValidator needs a Docker engine locally and does not run on Kubeflow Pipelines v2,
so this is ours. It starts our model server in a separate process (TF Serving's load path:
graph-mode loader, restore and init ops, warmup replay before AVAILABLE), sends every warmup
request of each SavedModel over gRPC, and compares the answers with the same requests run
in-process through TF2's loader (the path the Trainer and the Evaluator used). A model that
TF Serving could not run never becomes AVAILABLE there, or answers differently, and is
refused with the reason in one line.
"""

import dataclasses
import logging
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import prediction_log_pb2

from tfsp.pipelines.model_config import build_models_config
from tfsp.serving import tensors
from tfsp.serving.client import ClientError, ServingClient
from tfsp.serving.launcher import LocalServer, ModelNotServable
from tfsp.serving.warmup import WARMUP_FILE

log = logging.getLogger(__name__)

# The two load paths run the same kernels; they may differ only by op fusion and rounding.
OUTPUT_ATOL = 1e-5
DEFAULT_TIMEOUT_SECONDS = 300.0
_CHECK_VERSION = "1"


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """Whether every model served and answered as in-process; why not, in one line."""

    servable: bool
    reason: str = ""
    requests: int = 0  # warmup requests sent over gRPC and compared


def _records(saved_model_dir: Path) -> list[prediction_log_pb2.PredictionLog]:
    path = saved_model_dir / WARMUP_FILE
    if not path.exists():
        raise FileNotFoundError(f"{saved_model_dir} has no warmup requests ({WARMUP_FILE})")
    records = []
    for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        record = prediction_log_pb2.PredictionLog()
        record.ParseFromString(raw)
        records.append(record)
    return records


def _tensors(protos: object) -> dict[str, np.ndarray]:
    return {key: tf.make_ndarray(proto) for key, proto in protos.items()}  # type: ignore[attr-defined]


class _Mismatch(Exception):
    pass


def _compare(what: str, served: np.ndarray, local: np.ndarray) -> None:
    if served.shape != local.shape:
        raise _Mismatch(f"{what}: served shape {served.shape}, in-process {local.shape}")
    if served.dtype.kind in "fc":
        worst = float(np.max(np.abs(served - local))) if served.size else 0.0
        if not worst <= OUTPUT_ATOL:
            raise _Mismatch(f"{what}: served and in-process outputs differ by {worst:.3g}")
    elif not np.array_equal(served, local):
        raise _Mismatch(f"{what}: served and in-process outputs differ")


def _replay(
    client: ServingClient, name: str, loaded: object, record: prediction_log_pb2.PredictionLog
) -> None:
    """Send one warmup record to `name` over gRPC and compare with `loaded` in-process."""
    kind = record.WhichOneof("log_type")
    request = getattr(record, kind).request
    request.model_spec.name = name
    signature = request.model_spec.signature_name or "serving_default"
    function = loaded.signatures[signature]  # type: ignore[attr-defined]
    where = f"{name} {signature}"
    if kind == "predict_log":
        response = client.send("Predict", request)
        local = function(**{k: tf.constant(v) for k, v in _tensors(request.inputs).items()})
        served = {key: tensors.to_numpy(key, proto) for key, proto in response.outputs.items()}
        keys = list(request.output_filter) or sorted(local)
        if sorted(served) != sorted(keys):
            raise _Mismatch(f"{where}: served outputs {sorted(served)}, expected {keys}")
        for key in keys:
            _compare(f"{where} {key}", served[key], local[key].numpy())
    elif kind == "classify_log":
        response = client.send("Classify", request)
        serialized = [e.SerializeToString() for e in request.input.example_list.examples]
        (input_key,) = function.structured_input_signature[1]
        local = function(**{input_key: tf.constant(serialized)})
        rows = response.result.classifications
        if "scores" in local:
            served = np.array([[c.score for c in row.classes] for row in rows], np.float32)
            _compare(f"{where} scores", served, local["scores"].numpy())
        if "classes" in local:
            served = np.array([[c.label.encode() for c in row.classes] for row in rows])
            _compare(f"{where} classes", served, local["classes"].numpy().astype(bytes))
    else:
        raise _Mismatch(f"{where}: the serving check does not replay {kind} requests")


def check_servable(
    models: dict[str, str], *, log_file: Path, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> CheckResult:
    """Serve `models` ({served name: SavedModel folder}) in a model server and call them."""
    with tempfile.TemporaryDirectory(prefix="tfsp-serving-check-") as scratch:
        root = Path(scratch)
        for name, folder in models.items():
            (root / name).mkdir()
            (root / name / _CHECK_VERSION).symlink_to(Path(folder).resolve())
        config = root / "models.config"
        config.write_text(text_format.MessageToString(build_models_config(str(root), list(models))))
        records = {name: _records(Path(folder)) for name, folder in models.items()}
        server = LocalServer(config, log_file)
        try:
            server.start(list(models), timeout=timeout)
        except ModelNotServable as exc:
            return CheckResult(False, str(exc))
        sent = 0
        try:
            with ServingClient(server.address, timeout=60) as client:
                for name, folder in models.items():
                    loaded = tf.saved_model.load(folder)
                    for record in records[name]:
                        _replay(client, name, loaded, record)
                        sent += 1
        except ClientError as exc:
            return CheckResult(False, str(exc), sent)
        except _Mismatch as exc:
            return CheckResult(False, str(exc), sent)
        finally:
            server.stop()
    log.info("serving check: %d warmup requests answered as in-process by %s", sent, list(models))
    return CheckResult(True, "", sent)
