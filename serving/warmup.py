"""Replay a SavedModel's warmup requests before its version becomes available, as TF Serving does.

TF Serving reads `assets.extra/tf_serving_warmup_requests` (a TFRecord file of
`PredictionLog`) when a version loads and runs each request through the same Predict,
Classify, Regress and MultiInference logic as a client's, before the version is AVAILABLE.
A request that fails fails the load (saved_model_warmup.cc, saved_model_warmup_util.cc).
No file means no warmup. The error texts here are TF Serving's.
"""

import logging
import os
import time
from collections.abc import Callable

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from tfsp.serving import tensors
from tfsp.serving.dataplane import (
    EXAMPLES_INPUT,
    classification_result,
    example_signature,
    examples_array,
    execution_error,
    inference_response,
    inference_session_names,
    inference_tasks,
    predict_signature,
    prepare_predict,
    regression_result,
    result_keys,
)
from tfsp.serving.metrics import RUNTIME_API
from tfsp.serving.servable import Servable

log = logging.getLogger("serving")

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000  # WarmupConsts::kMaxNumRecords


class WarmupError(Exception):
    """A warmup request failed; `code` is the gRPC status TF Serving's load reports."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


RunTensors = Callable[[dict[str, np.ndarray], tuple[str, ...]], list]


def _call(
    servable: Servable,
    run_tensors: RunTensors,
    signature: str,
    inputs: dict[str, np.ndarray],
    keys: list[str] | None,
    timed: tuple[str, str],
) -> dict[str, np.ndarray]:
    """A signature's outputs, its run timed in runtime_latency as (model name as the record
    spells it, API): TF Serving's warmup calls RunPredict, RunClassify and RunRegress,
    which record it."""
    token = RUNTIME_API.set(timed)
    try:
        return servable.run(signature, inputs, keys, run_tensors=run_tensors)
    finally:
        RUNTIME_API.reset(token)


def _run_one(
    servable: Servable,
    run_tensors: RunTensors,
    record: prediction_log_pb2.PredictionLog,
    method_name_check: bool,
) -> None:
    kind = record.WhichOneof("log_type")
    if kind == "predict_log":
        request = record.predict_log.request
        name, signature = predict_signature(servable, request.model_spec.signature_name)
        inputs: dict = dict(request.inputs)
        keys = prepare_predict(
            signature,
            inputs,
            list(request.output_filter),
            tensors.to_numpy,
            method_name_check=method_name_check,
        )
        _call(servable, run_tensors, name, inputs, keys, (request.model_spec.name, "Predict"))
    elif kind in ("classify_log", "regress_log"):
        request = getattr(record, kind).request
        shape = "classification" if kind == "classify_log" else "regression"
        name, signature = example_signature(
            servable, request.model_spec.signature_name, shape, method_name_check=method_name_check
        )
        examples = examples_array(request.input)
        keys = result_keys(signature, shape)
        api = "Classify" if shape == "classification" else "Regress"
        outputs = _call(
            servable,
            run_tensors,
            name,
            {EXAMPLES_INPUT: examples},
            keys,
            (request.model_spec.name, api),
        )
        result = classification_result if shape == "classification" else regression_result
        result(outputs, len(examples))
    elif kind == "multi_inference_log":
        request = record.multi_inference_log.request
        tasks = inference_tasks(servable, request, method_name_check=method_name_check)
        examples = examples_array(request.input)
        feeds, fetches = inference_session_names(tasks, examples)
        values = run_tensors(feeds, fetches)
        inference_response(servable, tasks, fetches, values, len(examples))
    elif kind is not None:
        number = prediction_log_pb2.PredictionLog.DESCRIPTOR.fields_by_name[kind].number
        raise WarmupError(
            grpc.StatusCode.UNIMPLEMENTED, f"Unsupported log_type for warmup: {number}"
        )


def run_warmup(
    servable: Servable,
    iterations: int = 1,
    *,
    method_name_check: bool = False,
    run_tensors: RunTensors | None = None,
) -> int | None:
    """Replay the version's warmup file `iterations` times per record; the records run
    (None: the version has no warmup file).
    Requests are checked as a client's (`method_name_check`: the server's flag), and run
    through `run_tensors` (default: the servable's session; the server passes its batching
    session, through which TF Serving's warmup runs too, limits and all).

    Raises WarmupError with TF Serving's status for the first request that fails, a record
    that is not a PredictionLog, a file that is not TFRecord, or more than 1,000 records.
    """
    path = os.path.join(servable.path, WARMUP_FILE)
    if not os.path.exists(path):
        log.info("No warmup data file found at %s", path)
        return None
    started = time.monotonic()
    count = 0
    try:
        for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
            record = prediction_log_pb2.PredictionLog()
            try:
                record.ParseFromString(raw)
            except Exception:  # the protobuf runtime raises several types for garbage
                raise WarmupError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Failed to parse warmup record: {raw[:64]!r} from {path}",
                ) from None
            for _ in range(max(iterations, 1)):
                try:
                    _run_one(
                        servable, run_tensors or servable.run_tensors, record, method_name_check
                    )
                except WarmupError:
                    raise
                except Exception as exc:
                    failure = execution_error(exc)  # the status a client would get
                    raise WarmupError(failure.code, failure.message) from exc
            count += 1
            if count > MAX_RECORDS:
                raise WarmupError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}",
                )
    except tf.errors.DataLossError as exc:
        raise WarmupError(
            grpc.StatusCode.DATA_LOSS,
            f"{execution_error(exc).message}. Please verify your warmup data is in TFRecord "
            "format.",
        ) from exc
    log.info(
        "Finished reading warmup data for model at %s. Number of warmup records read: %d. "
        "Elapsed time (microseconds): %d.",
        path,
        count,
        (time.monotonic() - started) * 1e6,
    )
    return count
