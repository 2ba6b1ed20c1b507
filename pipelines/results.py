"""What a finished run decided, read back from ML Metadata and the Evaluator's output."""

from dataclasses import dataclass

import tensorflow_model_analysis as tfma
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipelines.factory import EVALUATOR, PUSHER, TRAINER

_CACHED = metadata_store_pb2.Execution.CACHED


@dataclass
class RunResult:
    """The gate's verdict and, if blessed, where the model went."""

    blessed: bool
    metrics: dict[str, float]  # candidate's eval-split metrics, by TFMA metric name
    failures: list[str]  # the gate's failed checks, in TFMA's words with the figures
    pushed_dir: str | None
    pushed_version: str | None
    trained_model_dir: str | None
    cached: bool  # the Trainer re-used an earlier execution (nothing new was trained)


def _latest_outputs(
    store: metadata_store.MetadataStore, pipeline_name: str, node_id: str
) -> tuple[metadata_store_pb2.Execution, dict[str, metadata_store_pb2.Artifact]]:
    context = store.get_context_by_type_and_name("node", f"{pipeline_name}.{node_id}")
    if context is None:
        raise LookupError(f"no executions of {node_id} in pipeline {pipeline_name}")
    execution = max(store.get_executions_by_context(context.id), key=lambda e: e.id)
    events = store.get_events_by_execution_ids([execution.id])
    output_ids = {
        e.artifact_id: e.path.steps[0].key
        for e in events
        if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    }
    artifacts = store.get_artifacts_by_id(list(output_ids))
    return execution, {output_ids[a.id]: a for a in artifacts}


def _candidate_metrics(evaluation_uri: str) -> dict[str, float]:
    metrics = {}
    for per_slice in tfma.load_metrics(evaluation_uri):
        if per_slice.slice_key.single_slice_keys:  # only the overall slice
            continue
        for kv in per_slice.metric_keys_and_values:
            if kv.key.is_diff or kv.key.model_name not in ("", "candidate"):
                continue
            if kv.value.HasField("double_value"):
                metrics[kv.key.name] = kv.value.double_value.value
    return metrics


def _failures(evaluation_uri: str) -> list[str]:
    result = tfma.load_validation_result(evaluation_uri)
    messages = []
    for per_slice in result.metric_validations_per_slice:
        for failure in per_slice.failures:
            name = failure.metric_key.name
            value = failure.metric_value.double_value.value
            if failure.metric_key.is_diff:
                messages.append(
                    f"{name} is {value:+.4f} against the last blessed model (must not be lower)"
                )
            else:
                bound = failure.metric_threshold.value_threshold.lower_bound.value
                messages.append(
                    f"{name} {value:.4f} is below the bound {bound:.4f} "
                    f"(short by {bound - value:.4f})"
                )
    return messages


def read_run_result(
    connection_config: metadata_store_pb2.ConnectionConfig, pipeline_name: str
) -> RunResult:
    """The latest Trainer, Evaluator and Pusher outcome of `pipeline_name`."""
    store = metadata_store.MetadataStore(connection_config)
    trainer_execution, trainer_outputs = _latest_outputs(store, pipeline_name, TRAINER)
    _, evaluator_outputs = _latest_outputs(store, pipeline_name, EVALUATOR)
    _, pusher_outputs = _latest_outputs(store, pipeline_name, PUSHER)
    blessing = evaluator_outputs["blessing"]
    evaluation_uri = evaluator_outputs["evaluation"].uri
    pushed = pusher_outputs["pushed_model"].custom_properties
    was_pushed = pushed.get("pushed") is not None and pushed["pushed"].int_value == 1
    return RunResult(
        blessed=blessing.custom_properties["blessed"].int_value == 1,
        metrics=_candidate_metrics(evaluation_uri),
        failures=_failures(evaluation_uri),
        pushed_dir=pushed["pushed_destination"].string_value if was_pushed else None,
        pushed_version=pushed["pushed_version"].string_value if was_pushed else None,
        trained_model_dir=trainer_outputs["model"].uri,
        cached=trainer_execution.last_known_state == _CACHED,
    )


def split_accuracy(saved_model_dir: str, records_file: str, batch_size: int = 256) -> float:
    """Accuracy of an exported classifier on a TFRecord split, through `serving_default`.

    Goes through the same signature TF Serving's Classify uses, so it measures the model as
    clients see it (Transform graph included), not the Keras object the Trainer held.
    """
    import tensorflow as tf  # heavy; only this function needs it

    from tfsp.features import LABEL_KEY

    classify = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    label_spec = {LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64)}
    correct = total = 0
    for batch in tf.data.TFRecordDataset(records_file).batch(batch_size):
        scores = classify(examples=batch)["scores"]
        labels = tf.io.parse_example(batch, label_spec)[LABEL_KEY][:, 0]
        correct += int(tf.reduce_sum(tf.cast(tf.argmax(scores, -1) == labels, tf.int32)))
        total += int(labels.shape[0])
    if total == 0:
        raise ValueError(f"{records_file} holds no examples")
    return correct / total
