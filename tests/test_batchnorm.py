"""The batch-normalization family: the two variants' layers, their shared start, the recorded
distributions and figure, and how a failed claim is reported."""

import keras
import numpy as np
import pytest
from tensorflow_model_analysis.proto import validation_result_pb2

from tfsp.core.errors import UserError
from tfsp.core.family import options_from_config
from tfsp.pipelines.results import RunResult, claim_summary, describe_failures
from tfsp.trainers.batchnorm.family import FAMILY, MLPConfig
from tfsp.trainers.batchnorm.model import (
    build_mlp,
    layer_values,
    plot_distributions,
    summarise,
)
from tfsp.trainers.registry import get_family


def test_bn_sits_between_each_dense_layer_and_its_activation():
    model = build_mlp(MLPConfig(), batch_norm=True)
    names = [layer.name for layer in model.layers]
    hidden = [n for n in names if n.startswith("dense")]
    assert len(hidden) >= 7
    for i in range(1, len(hidden) + 1):
        assert names.index(f"dense{i}") + 1 == names.index(f"bn{i}")
        assert names.index(f"bn{i}") + 1 == names.index(f"act{i}")
        assert not model.get_layer(f"dense{i}").use_bias  # BN's beta is the shift
    assert isinstance(model.get_layer("bn1"), keras.layers.BatchNormalization)


def test_plain_variant_has_no_bn_and_the_same_starting_weights():
    plain, bn = build_mlp(MLPConfig(), False), build_mlp(MLPConfig(), True)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)
    for i in range(1, 9):
        np.testing.assert_array_equal(
            plain.get_layer(f"dense{i}").kernel.numpy(), bn.get_layer(f"dense{i}").kernel.numpy()
        )
    assert plain.output_shape == bn.output_shape == (None, 10)


def test_the_notes_initialisation_saturates_tanh_without_bn():
    config = MLPConfig()
    images = np.random.default_rng(0).standard_normal((64, 1024)).astype(np.float32)
    rows = summarise(layer_values(build_mlp(config, False), images), "tanh")
    assert len(rows) == 8
    assert all(r["stuck_fraction"] > 0.5 for r in rows)  # most units pinned at ±1
    glorot = summarise(layer_values(build_mlp(MLPConfig(init="glorot"), False), images), "tanh")
    assert all(r["stuck_fraction"] < 0.5 for r in glorot)


def test_distribution_figure_is_a_png(tmp_path):
    images = np.random.default_rng(0).standard_normal((16, 1024)).astype(np.float32)
    config = MLPConfig(units=8)
    plain = layer_values(build_mlp(config, False), images)
    bn = layer_values(build_mlp(config, True), images)
    path = tmp_path / "d.png"
    plot_distributions(plain, bn, str(path), "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_options_and_refusals():
    assert options_from_config(FAMILY, {"batchnorm": {"activation": "relu"}}).activation == "relu"
    with pytest.raises(UserError, match="hidden_layers must be at least 7"):
        options_from_config(FAMILY, {"batchnorm": {"hidden_layers": 6}})
    with pytest.raises(UserError):
        options_from_config(FAMILY, {"batchnorm": {"init": "zeros"}})


def _failed_claim(diff: float) -> validation_result_pb2.ValidationResult:
    result = validation_result_pb2.ValidationResult(validation_ok=False)
    failure = result.metric_validations_per_slice.add().failures.add()
    failure.metric_key.name = "sparse_categorical_accuracy"
    failure.metric_key.is_diff = True
    failure.metric_value.double_value.value = diff
    return result


def test_a_failed_claim_names_the_claim_and_the_gap():
    family = get_family("batchnorm")
    (message,) = describe_failures(
        _failed_claim(-0.02),
        family,
        {"sparse_categorical_accuracy": 0.91},
        {"sparse_categorical_accuracy": 0.93},
    )
    assert message == (
        "claim failed: BN variant accuracy 0.91 is not above the plain variant's 0.93 (by -0.02)"
    )


def test_a_failed_comparison_against_the_last_blessed_model_keeps_its_wording():
    (message,) = describe_failures(_failed_claim(-0.01), get_family("cnn"))
    assert message == (
        "sparse_categorical_accuracy is -0.01 against the last blessed model (must not be lower)"
    )


def test_claim_summary_gives_both_figures():
    result = RunResult(
        blessed=True,
        metrics={"sparse_categorical_accuracy": 0.95},
        failures=[],
        pushed_dir=None,
        pushed_version=None,
        cached=False,
        baseline_metrics={"sparse_categorical_accuracy": 0.25},
    )
    assert claim_summary(result, get_family("transfer")) == (
        "transferred model accuracy 0.95 vs from-scratch model 0.25 (+0.7)"
    )
    assert claim_summary(result, get_family("cnn")) is None
