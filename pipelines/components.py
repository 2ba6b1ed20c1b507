"""Our own small TFX components: hyper-parameters as an artifact, and the anomaly gate."""

import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import io_utils

from trainers.common import HYPERPARAMETERS_FILE, Hyperparameters

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
