"""What a finished run decided, read back from ML Metadata and the Evaluator's output."""

import os
from dataclasses import dataclass, field

import tensorflow_model_analysis as tfma
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from tfsp.core.family import Family
from tfsp.pipelines.components import SERVING_CHECK_REASON
from tfsp.pipelines.factory import EVALUATOR, PUSHER, SERVING_CHECK, TRAINER

_CACHED = metadata_store_pb2.Execution.CACHED


@dataclass
class RunResult:
    """The gates' verdict and, if blessed, where the model went."""

    blessed: bool  # the Evaluator blessed it and the ServingCheck served it
    metrics: dict[str, float]  # candidate's eval-split metrics, by TFMA metric name
    failures: list[str]  # the gate's failed checks, in TFMA's words with the figures
    pushed_dir: str | None
    pushed_version: str | None
    cached: bool  # the Trainer re-used an earlier execution (nothing new was trained)
    # The baseline's eval-split metrics (the reference model of a claim, or the last blessed
    # model), by TFMA metric name; empty when there was no baseline (a first run).
    baseline_metrics: dict[str, float] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)  # PNGs the Trainer left in its model_run


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


def _overall_metrics(evaluation_uri: str, model_names: tuple[str, ...]) -> dict[str, float]:
    metrics = {}
    for per_slice in tfma.load_metrics(evaluation_uri):
        if per_slice.slice_key.single_slice_keys:  # only the overall slice
            continue
        for kv in per_slice.metric_keys_and_values:
            if kv.key.is_diff or kv.key.model_name not in model_names:
                continue
            if kv.value.HasField("double_value"):
                metrics[kv.key.name] = kv.value.double_value.value
    return metrics


def _candidate_metrics(evaluation_uri: str) -> dict[str, float]:
    return _overall_metrics(evaluation_uri, ("", "candidate"))


def _baseline_metrics(evaluation_uri: str) -> dict[str, float]:
    return _overall_metrics(evaluation_uri, ("baseline",))


def readable_metric(name: str) -> str:
    """TFMA's metric name as the notes say it: sparse_categorical_accuracy is accuracy."""
    return name.removeprefix("sparse_categorical_")


def describe_failures(
    result: tfma.ValidationResult,
    family: Family | None = None,
    candidate: dict[str, float] | None = None,
    baseline: dict[str, float] | None = None,
) -> list[str]:
    """The gate's failed checks in words, with the figures: which claim, by how much.

    `candidate` and `baseline` are the two models' metrics (for the figures of a failed
    comparison); `family` names the two sides of its claim.
    """
    candidate, baseline = candidate or {}, baseline or {}
    messages = []
    for per_slice in result.metric_validations_per_slice:
        for failure in per_slice.failures:
            name = failure.metric_key.name
            value = failure.metric_value.double_value.value
            if failure.metric_key.is_diff:
                messages.append(_describe_change(family, name, value, candidate, baseline))
                continue
            bounds = failure.metric_threshold.value_threshold
            if bounds.HasField("lower_bound") and value < bounds.lower_bound.value:
                bound = bounds.lower_bound.value
                messages.append(
                    f"{name} {value:.4g} is below the bound {bound:.4g} "
                    f"(short by {bound - value:.4g})"
                )
            else:
                bound = bounds.upper_bound.value
                messages.append(
                    f"{name} {value:.4g} is above the bound {bound:.4g} "
                    f"(over by {value - bound:.4g})"
                )
    return messages


def _describe_change(
    family: Family | None,
    name: str,
    diff: float,
    candidate: dict[str, float],
    baseline: dict[str, float],
) -> str:
    if family is None or family.baseline != "reference":
        worse = "higher" if family is not None and family.gate_direction == "lower" else "lower"
        return f"{name} is {diff:+.4g} against the last blessed model (must not be {worse})"
    better = "below" if family.gate_direction == "lower" else "above"
    figures = ""
    if name in candidate and name in baseline:
        figures = f" {candidate[name]:.4g}"
        against = f"the {family.reference_label}'s {baseline[name]:.4g}"
    else:
        against = f"the {family.reference_label}'s"
    return (
        f"claim failed: {family.candidate_label} {readable_metric(name)}{figures} is not "
        f"{better} {against} (by {diff:+.4g})"
    )


def claim_summary(result: RunResult, family: Family) -> str | None:
    """One line with both sides of a family's claim, e.g. for the closing note; None if the
    family does not compare against a reference, or the figures are missing."""
    name = _GATE_METRIC_NAMES.get(family.gate_metric, family.gate_metric)
    if family.baseline != "reference" or name not in result.metrics:
        return None
    if name not in result.baseline_metrics:
        return None
    cand, base = result.metrics[name], result.baseline_metrics[name]
    return (
        f"{family.candidate_label} {readable_metric(name)} {cand:.4g} vs "
        f"{family.reference_label} {base:.4g} ({cand - base:+.4g})"
    )


# The names TFMA reports the gate metrics under (Keras class name -> metric name).
_GATE_METRIC_NAMES = {
    "SparseCategoricalAccuracy": "sparse_categorical_accuracy",
    "MeanSquaredError": "mean_squared_error",
}


def _figures(model_run_uri: str | None) -> list[str]:
    if not model_run_uri or not os.path.isdir(model_run_uri):
        return []
    return sorted(
        os.path.join(model_run_uri, f) for f in os.listdir(model_run_uri) if f.endswith(".png")
    )


def read_run_result(
    connection_config: metadata_store_pb2.ConnectionConfig,
    pipeline_name: str,
    family: Family | None = None,
) -> RunResult:
    """The latest Trainer, Evaluator and Pusher outcome of `pipeline_name` (`family`'s)."""
    store = metadata_store.MetadataStore(connection_config)
    trainer_execution, trainer_outputs = _latest_outputs(store, pipeline_name, TRAINER)
    _, evaluator_outputs = _latest_outputs(store, pipeline_name, EVALUATOR)
    _, pusher_outputs = _latest_outputs(store, pipeline_name, PUSHER)
    _, check_outputs = _latest_outputs(store, pipeline_name, SERVING_CHECK)
    blessing = evaluator_outputs["blessing"]
    infra = check_outputs["blessing"].custom_properties
    servable = infra["blessed"].int_value == 1

    evaluation_uri = evaluator_outputs["evaluation"].uri
    pushed = pusher_outputs["pushed_model"].custom_properties
    was_pushed = pushed.get("pushed") is not None and pushed["pushed"].int_value == 1
    candidate, baseline = _candidate_metrics(evaluation_uri), _baseline_metrics(evaluation_uri)
    model_run = trainer_outputs.get("model_run")
    failures = describe_failures(
        tfma.load_validation_result(evaluation_uri), family, candidate, baseline
    )
    if not servable:
        failures.append(f"not servable: {infra[SERVING_CHECK_REASON].string_value}")
    return RunResult(
        blessed=blessing.custom_properties["blessed"].int_value == 1 and servable,
        metrics=candidate,
        baseline_metrics=baseline,
        figures=_figures(model_run.uri if model_run else None),
        failures=failures,
        pushed_dir=pushed["pushed_destination"].string_value if was_pushed else None,
        pushed_version=pushed["pushed_version"].string_value if was_pushed else None,
        cached=trainer_execution.last_known_state == _CACHED,
    )


def split_accuracy(saved_model_dir: str, records_file: str, batch_size: int = 256) -> float:
    """Accuracy of an exported classifier on a TFRecord split, through `serving_default`.

    Goes through the same signature TF Serving's Classify uses, so it measures the model as
    clients see it (Transform graph included), not the Keras object the Trainer held. A model
    trained on a derived label (the transfer family) says what its label is through its
    `transformed_labels` signature, as it does for TFMA.
    """
    import tensorflow as tf  # heavy; only this function needs it

    from tfsp.core.features import LABEL_KEY
    from tfsp.core.signatures import EXAMPLES_INPUT, TASK_LABEL_KEY, TRANSFORMED_LABELS

    loaded = tf.saved_model.load(saved_model_dir)
    classify = loaded.signatures["serving_default"]
    derived = loaded.signatures.get(TRANSFORMED_LABELS)
    label_spec = {LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64)}
    correct = total = 0
    for batch in tf.data.TFRecordDataset(records_file).batch(batch_size):
        scores = classify(**{EXAMPLES_INPUT: batch})["scores"]
        if derived is not None:
            labels = derived(examples=batch)[TASK_LABEL_KEY][:, 0]
        else:
            labels = tf.io.parse_example(batch, label_spec)[LABEL_KEY][:, 0]
        correct += int(tf.reduce_sum(tf.cast(tf.argmax(scores, -1) == labels, tf.int32)))
        total += int(labels.shape[0])
    if total == 0:
        raise ValueError(f"{records_file} holds no examples")
    return correct / total


def split_reconstruction_mse(
    saved_model_dir: str, records_file: str, batch_size: int = 256
) -> float:
    """Mean squared pixel error of an exported autoencoder on a split, via `serving_default`."""
    import tensorflow as tf

    from tfsp.core.features import IMAGE_KEY, IMAGE_PIXELS
    from tfsp.core.signatures import EXAMPLES_INPUT, RECONSTRUCTION_KEY

    reconstruct = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
    spec = {IMAGE_KEY: tf.io.FixedLenFeature([IMAGE_PIXELS], tf.float32)}
    squared = count = 0.0
    for batch in tf.data.TFRecordDataset(records_file).batch(batch_size):
        pixels = tf.io.parse_example(batch, spec)[IMAGE_KEY]
        error = reconstruct(**{EXAMPLES_INPUT: batch})[RECONSTRUCTION_KEY] - pixels
        squared += float(tf.reduce_sum(tf.square(error)))
        count += float(tf.size(pixels))
    if count == 0:
        raise ValueError(f"{records_file} holds no examples")
    return squared / count


def test_split_figure(family: Family, saved_model_dir: str, records_file: str) -> tuple[str, float]:
    """(what, value) of a pushed model on the held-out test split: accuracy, or for the
    autoencoder reconstruction MSE."""
    from tfsp.core.signatures import RECONSTRUCTION_KEY

    if family.prediction_key == RECONSTRUCTION_KEY:
        return "test MSE", split_reconstruction_mse(saved_model_dir, records_file)
    return "test accuracy", split_accuracy(saved_model_dir, records_file)
