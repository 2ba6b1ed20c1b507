"""Our own small TFX components: hyper-parameters as an artifact, the anomaly gate, the
reference model a claim is measured against, a pushed model as an input artifact, the
Evaluator that accepts "no baseline yet", the serving check before the Pusher, and the
features of a pushed encoder over every split."""

import json
import os
from pathlib import Path

import apache_beam as beam
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import Artifact, artifact_utils, standard_component_specs
from tfx.utils import io_utils, path_utils

from tfsp.core.contract import HYPERPARAMETERS_FILE, REFERENCE_MODEL_DIR, Hyperparameters
from tfsp.pipelines.model_store import latest_pushed_version, pushed_model

# The file ExampleValidator writes per split (tfx.components.example_validator.executor).
_ANOMALIES_FILE = "SchemaDiff.pb"


@tfx.dsl.components.component
def HyperparametersGen(  # noqa: N802 - TFX names component classes in CamelCase
    hyperparameters: tfx.dsl.components.OutputArtifact[
        tfx.types.standard_artifacts.HyperParameters
    ],
    epochs: tfx.dsl.components.Parameter[int],
    learning_rate: tfx.dsl.components.Parameter[float],
    batch_size: tfx.dsl.components.Parameter[int],
) -> None:
    """Record the training knobs as the HyperParameters artifact the Trainer consumes.

    Taking them as component parameters (not baked into the Trainer's config) is what lets
    Kubeflow expose epochs and learning rate as run-time parameters of the compiled pipeline.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    values = Hyperparameters(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size)
    io_utils.write_string_file(
        os.path.join(hyperparameters.uri, HYPERPARAMETERS_FILE), values.to_json()
    )


class DataAnomaliesError(RuntimeError):
    """The examples do not match the schema; raised to stop the run before Transform."""


def describe_anomalies(split_anomalies: dict[str, anomalies_pb2.Anomalies]) -> list[str]:
    """One line per anomalous feature: `split: feature: short description (details)`."""
    lines = []
    for split, anomalies in sorted(split_anomalies.items()):
        for feature, info in sorted(anomalies.anomaly_info.items()):
            lines.append(f"{split}: {feature}: {info.short_description} ({info.description})")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            lines.append(f"{split}: <dataset>: {info.short_description} ({info.description})")
    return lines


@tfx.dsl.components.component
def AnomalyGate(  # noqa: N802 - TFX names component classes in CamelCase
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
) -> None:
    """Fail the run, naming every anomaly, when ExampleValidator found any.

    ExampleValidator only records anomalies; without this gate a run would train on data that
    contradicts the schema.
    """
    per_split = {}
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        path = os.path.join(artifact_utils.get_split_uri([anomalies], split), _ANOMALIES_FILE)
        found = anomalies_pb2.Anomalies()
        found.ParseFromString(io_utils.read_bytes_file(path))
        per_split[split] = found
    problems = describe_anomalies(per_split)
    if problems:
        raise DataAnomaliesError("data anomalies against the schema: " + "; ".join(problems))


class MissingReferenceModelError(RuntimeError):
    """The Trainer of a family gated against a reference model did not export one."""


@tfx.dsl.components.component
def ReferenceModelGen(  # noqa: N802 - TFX names component classes in CamelCase
    model_run: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelRun],
    reference: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
) -> None:
    """Publish the reference SavedModel the Trainer left in its model_run as a Model artifact.

    A family whose claim compares two trainings (BN vs plain, transferred vs from scratch)
    trains both in one Trainer run, on the same data and steps; the Evaluator can only compare
    Model artifacts, so the reference is copied to where a Model keeps its SavedModel
    (`<uri>/Format-Serving`, tfx.utils.path_utils) and handed to it as the baseline.
    """
    source = os.path.join(model_run.uri, REFERENCE_MODEL_DIR)
    if not tfx.dsl.io.fileio.exists(os.path.join(source, "saved_model.pb")):
        raise MissingReferenceModelError(
            f"the Trainer exported no reference model (expected a SavedModel in {source})"
        )
    io_utils.copy_dir(source, path_utils.serving_model_dir(reference.uri))


# Custom properties of a PushedModelGen output: which version of which model it copies, and
# where from. NO_PUSHED_VERSION (a string, not "", so it survives every orchestrator's metadata
# round trip) marks "nothing pushed yet".
PUSHED_VERSION = "pushed_version"
PUSHED_MODEL_NAME = "pushed_model_name"
PUSHED_FROM = "pushed_from"
NO_PUSHED_VERSION = "none"


@tfx.dsl.components.component
def PushedModelGen(  # noqa: N802 - TFX names component classes in CamelCase
    model: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
    serving_root: tfx.dsl.components.Parameter[str],
    model_name: tfx.dsl.components.Parameter[str],
    version: tfx.dsl.components.Parameter[str],
    required: tfx.dsl.components.Parameter[int],
) -> None:
    """Publish a model from the model store as a Model artifact: the pinned `version`, else
    the highest version served at run time.

    Only blessed, servable models reach the model store, so its latest version is the latest
    blessed model: the baseline a candidate must not fall behind, found the same way under
    every orchestrator (open-source KFP runs no resolvers). It is also how a family gets the
    model it builds on (transfer: the CNN). Copying the version into the artifact pins it in
    the lineage: the artifact says which version, and holds it, whatever is pushed later.

    With nothing pushed, `required` fails the run; otherwise the artifact is marked
    NO_PUSHED_VERSION and holds no model, and the Evaluator runs without a baseline.
    """
    model.set_string_custom_property(PUSHED_MODEL_NAME, model_name)
    tfx.dsl.io.fileio.makedirs(model.uri)
    version = version or latest_pushed_version(os.path.join(serving_root, model_name)) or ""
    if not version and not required:
        model.set_string_custom_property(PUSHED_VERSION, NO_PUSHED_VERSION)
        return
    chosen, source = pushed_model(serving_root, model_name, version)
    io_utils.copy_dir(source, path_utils.serving_model_dir(model.uri))
    model.set_string_custom_property(PUSHED_VERSION, chosen)
    model.set_string_custom_property(PUSHED_FROM, source)


def holds_no_model(artifact: Artifact) -> bool:
    """True for a PushedModelGen output that found nothing pushed."""
    return (
        artifact.has_custom_property(PUSHED_VERSION)
        and artifact.get_string_custom_property(PUSHED_VERSION) == NO_PUSHED_VERSION
    )


class BaselineAwareEvaluatorExecutor(evaluator_executor.Executor):
    """TFX's Evaluator, treating a baseline that holds no model as no baseline at all.

    A resolver hands the Evaluator zero artifacts when nothing is blessed yet; a component
    always outputs one, so the empty one is dropped here. TFX's Evaluator then ignores the
    change thresholds and gates on the absolute ones, as it does without a resolver result.
    """

    def Do(self, input_dict: dict, output_dict: dict, exec_properties: dict) -> None:  # noqa: N802
        """Run TFX's Evaluator without the baseline when it holds no model."""
        key = standard_component_specs.BASELINE_MODEL_KEY
        baselines = [a for a in input_dict.get(key, []) if not holds_no_model(a)]
        inputs = {k: v for k, v in input_dict.items() if k != key}
        if baselines:
            inputs[key] = baselines
        super().Do(inputs, output_dict, exec_properties)


class Evaluator(tfx.components.Evaluator):
    """TFX's Evaluator component with BaselineAwareEvaluatorExecutor."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(BaselineAwareEvaluatorExecutor)


@tfx.dsl.components.component
def CompanionPusher(  # noqa: N802 - TFX names component classes in CamelCase
    pushed_model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.PushedModel],
    model_run: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelRun],
    serving_root: tfx.dsl.components.Parameter[str],
    companions: tfx.dsl.components.Parameter[str],
) -> None:
    """Push the Trainer's companion SavedModels beside the model the Pusher just pushed.

    Same gate, same version: only when the Pusher pushed, each companion (`companions` is
    JSON [[name, model_run sub-folder], ...]) goes to `<serving_root>/<name>/<version>/`,
    written beside and renamed into place so a server never sees half a version.
    """
    if pushed_model.get_int_custom_property("pushed") != 1:
        return
    version = pushed_model.get_string_custom_property("pushed_version")
    for name, folder in json.loads(companions):
        source = os.path.join(model_run.uri, folder)
        target = os.path.join(serving_root, name, version)
        staging = os.path.join(serving_root, name, f".{version}.incomplete")
        if tfx.dsl.io.fileio.exists(staging):
            tfx.dsl.io.fileio.rmtree(staging)
        io_utils.copy_dir(source, staging)
        tfx.dsl.io.fileio.rename(staging, target)


# What TFX's InfraValidator writes, so TFX's Pusher and tools read our blessing as theirs
# (tfx/components/infra_validator/executor.py, tfx/utils/model_utils.is_infra_validated).
_INFRA_BLESSED_FILE = "INFRA_BLESSED"
_INFRA_NOT_BLESSED_FILE = "INFRA_NOT_BLESSED"
SERVING_CHECK_REASON = "reason"  # custom property: why the candidate cannot be served


@tfx.dsl.components.component
def ServingCheck(  # noqa: N802 - TFX names component classes in CamelCase
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    model_run: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelRun],
    blessing: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.InfraBlessing],
    model_name: tfx.dsl.components.Parameter[str],
    companions: tfx.dsl.components.Parameter[str],
    timeout_seconds: tfx.dsl.components.Parameter[int],
) -> None:
    """Bless the candidate for the Pusher only if the model server serves it as TF Serving would.

    Serves the candidate (and the companions the CompanionPusher would push beside it,
    `companions` as JSON [[name, model_run sub-folder], ...]) in a separate model server
    process, replays each SavedModel's warmup requests over gRPC and compares the answers
    with the in-process ones (pipelines/serving_check.py). Writes the InfraBlessing the
    Pusher requires, with the reason in its `reason` property when it refuses.
    """
    from tfsp.pipelines.serving_check import check_servable  # starts TensorFlow; only here

    models = {model_name: path_utils.serving_model_path(model.uri)}
    for name, folder in json.loads(companions):
        models[name] = os.path.join(model_run.uri, folder)
    tfx.dsl.io.fileio.makedirs(blessing.uri)
    result = check_servable(
        models, log_file=Path(blessing.uri) / "model_server.log", timeout=timeout_seconds
    )
    marker = _INFRA_BLESSED_FILE if result.servable else _INFRA_NOT_BLESSED_FILE
    io_utils.write_string_file(os.path.join(blessing.uri, marker), result.reason)
    blessing.set_int_custom_property("blessed", int(result.servable))
    blessing.set_string_custom_property(SERVING_CHECK_REASON, result.reason)


FEATURE_FILE_PREFIX = "data_tfrecord"  # as ExampleGen names its files, gzip-compressed
FEATURES_ENCODED = "encoded"  # custom property: 1 when the examples carry the codes


@tfx.dsl.components.component(use_beam=True)
def FeatureGen(  # noqa: N802 - TFX names component classes in CamelCase
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    pushed_model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.PushedModel],
    model_run: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelRun],
    features: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
    encoder: tfx.dsl.components.Parameter[str],
    batch_size: tfx.dsl.components.Parameter[int] = 256,
    beam_pipeline: tfx.dsl.components.BeamComponentParameter[beam.Pipeline] = None,
) -> None:
    """Every split's tf.Examples with the pushed encoder's `codes` added as a feature.

    The same Beam job as `tfsp features --saved-model` (tfsp.serving.features_beam), on the
    pipeline's Beam options, with the encoder the Trainer left in its model_run under
    `encoder`. Only when the Pusher pushed: features of a model nobody serves would not
    match what a client pulls. Then the output holds no split and `encoded` is 0.
    """
    from tfsp.serving.features_beam import (
        encode,
        read_rows,
        tfrecord_input,
        write_examples_with_codes,
    )

    if pushed_model.get_int_custom_property("pushed") != 1:
        features.split_names = artifact_utils.encode_split_names([])
        features.set_int_custom_property(FEATURES_ENCODED, 0)
        return
    splits = artifact_utils.decode_split_names(examples.split_names)
    saved_model = os.path.join(model_run.uri, encoder)
    with beam_pipeline as pipeline:
        for split in splits:
            files = tfx.dsl.io.fileio.glob(os.path.join(examples.uri, f"Split-{split}", "*"))
            rows = read_rows(pipeline, tfrecord_input(files, split), batch_size, f"{split}/")
            encoded = encode(rows, saved_model, label=f"{split}/")
            prefix = os.path.join(features.uri, f"Split-{split}", FEATURE_FILE_PREFIX)
            write_examples_with_codes(encoded, prefix, ".gz", label=f"{split}/")
    features.split_names = artifact_utils.encode_split_names(splits)
    features.set_int_custom_property(FEATURES_ENCODED, 1)
