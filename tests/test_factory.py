"""The pipeline factory's wiring, the gate's configuration and the anomaly gate's report."""

from tensorflow_metadata.proto.v0 import anomalies_pb2

from pipelines.components import describe_anomalies
from pipelines.factory import (
    ANOMALY_GATE,
    COMPONENT_IDS,
    EXAMPLE_VALIDATOR,
    TRANSFORM,
    PipelineSpec,
    create_pipeline,
    eval_config,
)
from pipelines.families import FAMILIES, get_family


def _spec(tmp_path, **overrides):
    values = dict(
        family=get_family("cnn"),
        pipeline_name="t",
        pipeline_root=str(tmp_path / "root"),
        data_root=str(tmp_path / "data"),
        serving_root=str(tmp_path / "serving"),
        epochs=2,
        learning_rate=0.01,
        batch_size=8,
    )
    values.update(overrides)
    return PipelineSpec(**values)


def test_every_family_builds_the_same_component_graph(tmp_path):
    for name in FAMILIES:
        pipeline = create_pipeline(_spec(tmp_path, family=get_family(name)))
        assert sorted(c.id for c in pipeline.components) == sorted(COMPONENT_IDS)


def test_transform_waits_for_the_anomaly_gate(tmp_path):
    components = {c.id: c for c in create_pipeline(_spec(tmp_path)).components}
    assert ANOMALY_GATE in {n.id for n in components[TRANSFORM].upstream_nodes}
    assert EXAMPLE_VALIDATOR in {n.id for n in components[ANOMALY_GATE].upstream_nodes}


def test_push_goes_to_the_family_folder_of_the_serving_root(tmp_path):
    pusher = {c.id: c for c in create_pipeline(_spec(tmp_path)).components}["Pusher"]
    destination = pusher.exec_properties["push_destination"]
    assert str(tmp_path / "serving" / "cnn") in str(destination)


def test_gate_has_an_absolute_bound_and_a_baseline_check():
    config = eval_config("SparseCategoricalAccuracy", 0.9)
    (metric,) = [
        m for m in config.metrics_specs[0].metrics if m.class_name == "SparseCategoricalAccuracy"
    ]
    assert metric.threshold.value_threshold.lower_bound.value == 0.9
    assert metric.threshold.change_threshold.absolute.value < 0
    assert config.model_specs[0].signature_name == "serving_default"
    assert config.model_specs[0].label_key == "label"


def test_anomalies_are_named_per_split_and_feature():
    found = anomalies_pb2.Anomalies()
    info = found.anomaly_info["label"]
    info.short_description = "Out-of-range values"
    info.description = "Unexpectedly large value: 12."
    clean = anomalies_pb2.Anomalies()
    assert describe_anomalies({"eval": found, "train": clean}) == [
        "eval: label: Out-of-range values (Unexpectedly large value: 12.)"
    ]
    assert describe_anomalies({"train": clean}) == []
