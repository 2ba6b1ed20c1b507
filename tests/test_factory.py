"""The pipeline factory's wiring, the gate's configuration and the anomaly gate's report."""

import pytest
import tensorflow_model_analysis as tfma
from tensorflow_metadata.proto.v0 import anomalies_pb2

from tfsp.pipelines.components import describe_anomalies
from tfsp.pipelines.factory import (
    ANOMALY_GATE,
    BASE_MODEL_GEN,
    BASELINE_MODEL_GEN,
    EVALUATOR,
    EXAMPLE_VALIDATOR,
    REFERENCE_MODEL_GEN,
    TRAINER,
    TRANSFORM,
    PipelineSpec,
    component_ids,
    create_pipeline,
    eval_config,
    family_eval_config,
)
from tfsp.trainers.registry import FAMILIES, get_family, run_order


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


def test_every_family_builds_its_declared_component_graph(tmp_path):
    for name in FAMILIES:
        family = get_family(name)
        pipeline = create_pipeline(_spec(tmp_path, family=family))
        assert sorted(c.id for c in pipeline.components) == sorted(component_ids(family))
    # A family gated against its last blessed model, with no base and no companion (the CNN).
    assert component_ids(get_family("cnn")) == (
        "ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
        "AnomalyGate", "Transform", "HyperparametersGen", "Trainer", BASELINE_MODEL_GEN,
        EVALUATOR, "ServingCheck", "Pusher",
    )  # fmt: skip


@pytest.mark.parametrize("name", ["batchnorm", "transfer"])
def test_claim_families_compare_against_the_trainers_reference_model(tmp_path, name):
    components = {
        c.id: c for c in create_pipeline(_spec(tmp_path, family=get_family(name))).components
    }
    assert BASELINE_MODEL_GEN not in components
    assert {n.id for n in components[REFERENCE_MODEL_GEN].upstream_nodes} == {TRAINER}
    evaluator = components[EVALUATOR]
    assert REFERENCE_MODEL_GEN in {n.id for n in evaluator.upstream_nodes}
    baseline = evaluator.inputs["baseline_model"]
    assert baseline.producer_component_id == REFERENCE_MODEL_GEN


@pytest.mark.parametrize("name", ["cnn", "rnn"])
def test_other_families_compare_against_their_last_blessed_model(tmp_path, name):
    components = {
        c.id: c for c in create_pipeline(_spec(tmp_path, family=get_family(name))).components
    }
    assert REFERENCE_MODEL_GEN not in components
    baseline = components[BASELINE_MODEL_GEN]
    assert baseline.exec_properties["model_name"] == name
    assert baseline.exec_properties["required"] == 0
    assert components[EVALUATOR].inputs["baseline_model"].producer_component_id == (
        BASELINE_MODEL_GEN
    )


def test_a_family_built_on_another_gets_it_as_the_trainers_base_model(tmp_path):
    spec = _spec(tmp_path, family=get_family("transfer"), pinned_versions={"cnn": "7"})
    components = {c.id: c for c in create_pipeline(spec).components}
    base = components[BASE_MODEL_GEN]
    assert base.exec_properties == {
        "serving_root": str(tmp_path / "serving"),
        "model_name": "cnn",
        "version": "7",
        "required": 1,
    }
    assert components[TRAINER].inputs["base_model"].producer_component_id == BASE_MODEL_GEN
    cnn = {c.id: c for c in create_pipeline(_spec(tmp_path)).components}
    assert BASE_MODEL_GEN not in cnn and "base_model" not in cnn[TRAINER].inputs


def test_run_order_puts_dependencies_first():
    order = run_order()
    assert set(order) == set(FAMILIES)
    assert order.index("cnn") < order.index("transfer")
    assert run_order(["transfer"]) == ["transfer"]  # a dependency not asked for is not added
    assert run_order(["transfer", "cnn"]) == ["cnn", "transfer"]


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


def _change(config: tfma.EvalConfig, metric: str):
    (found,) = [m for m in config.metrics_specs[0].metrics if m.class_name == metric]
    return found.threshold.change_threshold


def test_a_claim_needs_a_strict_improvement_over_the_reference():
    # TFMA passes HIGHER_IS_BETTER when candidate - baseline >= absolute: a positive absolute
    # makes a tie fail; LOWER_IS_BETTER passes when the difference <= absolute.
    config = family_eval_config(get_family("batchnorm"))
    change = _change(config, "SparseCategoricalAccuracy")
    assert change.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    assert change.absolute.value > 0
    lower = eval_config(
        "MeanSquaredError",
        None,
        upper_bound=0.1,
        direction="lower",
        baseline="reference",
        label_key="image",
        prediction_key="reconstruction",
    )
    change = _change(lower, "MeanSquaredError")
    assert change.direction == tfma.MetricDirection.LOWER_IS_BETTER
    assert change.absolute.value < 0
    (metric,) = [m for m in lower.metrics_specs[0].metrics if m.class_name == "MeanSquaredError"]
    assert metric.threshold.value_threshold.upper_bound.value == 0.1
    assert not metric.threshold.value_threshold.HasField("lower_bound")
    assert lower.model_specs[0].label_key == "image"
    assert lower.model_specs[0].prediction_key == "reconstruction"


def test_transfer_gate_reads_its_label_from_the_models_signature():
    spec = family_eval_config(get_family("transfer")).model_specs[0]
    assert spec.label_key == "task_label"
    assert list(spec.preprocessing_function_names) == ["transformed_labels"]
    assert (
        family_eval_config(get_family("batchnorm"), 0.3)
        .metrics_specs[0]
        .metrics[1]
        .threshold.value_threshold.lower_bound.value
        == 0.3
    )


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


def test_an_accuracy_floor_never_becomes_a_floor_on_an_error():
    # `--min-accuracy` applies to every family of `--family all`; the autoencoder's gate is MSE.
    from tfsp.pipelines.factory import family_eval_config

    config = family_eval_config(get_family("autoencoder"), lower_bound=0.5)
    (metric,) = [m for m in config.metrics_specs[0].metrics if m.class_name == "MeanSquaredError"]
    assert not metric.threshold.value_threshold.HasField("lower_bound")
    assert metric.threshold.value_threshold.upper_bound.value == 0.02
    classifier = family_eval_config(get_family("cnn"), lower_bound=0.5)
    (accuracy,) = [
        m
        for m in classifier.metrics_specs[0].metrics
        if m.class_name == "SparseCategoricalAccuracy"
    ]
    assert accuracy.threshold.value_threshold.lower_bound.value == 0.5
