"""The transfer family: finding the pushed CNN, reading its conv weights back from a generic
SavedModel, freezing them under a new head, the small labelled set and the new label."""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

from tfsp.core.contract import Hyperparameters
from tfsp.core.errors import UserError
from tfsp.core.family import options_from_config
from tfsp.core.signatures import TASK_LABEL_KEY, TRANSFORMED_LABELS
from tfsp.pipelines.components import (
    NO_PUSHED_VERSION,
    PUSHED_VERSION,
    PushedModelGen,
    holds_no_model,
)
from tfsp.pipelines.model_store import (
    PushedModelNotFoundError,
    latest_pushed_version,
    pinned_versions,
)
from tfsp.trainers.cnn.model import build_lenet5
from tfsp.trainers.registry import get_family
from tfsp.trainers.transfer.family import FAMILY, TransferConfig
from tfsp.trainers.transfer.model import (
    BASE_LAYERS,
    CLASS_NAMES,
    BaseModelNotFoundError,
    base_model_dir,
    build_transfer_model,
    load_base_weights,
    small_labelled_set,
    task_label,
    train_model,
)


class _Servable(tf.Module):
    """Shaped like the pushed CNN's servable: the Keras model under `.model`."""

    def __init__(self, model: keras.Model) -> None:
        super().__init__()
        self.model = model

    @tf.function(input_signature=[tf.TensorSpec([None, 1024], tf.float32)])
    def __call__(self, images):
        return self.model(images)


@pytest.fixture(scope="module")
def pushed_cnn(tmp_path_factory):
    """A serving root with a pushed LeNet-5 (versions 7 and 12, plus junk to ignore)."""
    root = tmp_path_factory.mktemp("serving")
    keras.utils.set_random_seed(3)
    model = build_lenet5()
    for version in ("7", "12"):
        tf.saved_model.save(_Servable(model), str(root / "cnn" / version))
    (root / "cnn" / "99-partial").mkdir()
    (root / "cnn" / "100").mkdir()  # no saved_model.pb: an interrupted push
    return root, model


def _pushed_model(tmp_path, serving_root, version="", required=1) -> standard_artifacts.Model:
    """Run PushedModelGen's executor for the CNN and return its output artifact."""
    output = standard_artifacts.Model()
    output.uri = str(tmp_path / f"out-{version or 'latest'}-{required}")
    executor = PushedModelGen.EXECUTOR_SPEC.executor_class()
    executor.Do(
        {},
        {"model": [output]},
        {"serving_root": str(serving_root), "model_name": "cnn", "version": version,
         "required": required},
    )  # fmt: skip
    return output


def test_the_base_is_the_highest_complete_numeric_version(pushed_cnn, tmp_path):
    root, _ = pushed_cnn
    assert latest_pushed_version(str(root / "cnn")) == "12"
    for pinned, expected in (("", "12"), ("7", "7")):
        model = _pushed_model(tmp_path, root, pinned)
        assert model.get_string_custom_property(PUSHED_VERSION) == expected
        assert (Path(model.uri) / "Format-Serving" / "saved_model.pb").is_file()
        assert not holds_no_model(model)


def test_no_pushed_cnn_is_a_clear_error_or_an_empty_baseline(tmp_path):
    with pytest.raises(PushedModelNotFoundError, match="no cnn model has been pushed"):
        _pushed_model(tmp_path, tmp_path / "empty")
    with pytest.raises(UserError, match="transfer family builds on the pushed cnn model: no cnn"):
        pinned_versions(get_family("transfer"), tmp_path)
    baseline = _pushed_model(tmp_path, tmp_path / "empty", required=0)
    assert baseline.get_string_custom_property(PUSHED_VERSION) == NO_PUSHED_VERSION
    assert holds_no_model(baseline)


def test_a_pinned_version_missing_from_the_store_is_a_clear_error(pushed_cnn, tmp_path):
    root, _ = pushed_cnn
    with pytest.raises(PushedModelNotFoundError, match="version 100 of the pushed cnn"):
        _pushed_model(tmp_path, root, "100")


def test_the_trainer_refuses_a_base_model_input_without_a_savedmodel(tmp_path):
    class _FnArgs:
        base_model = str(tmp_path)

    with pytest.raises(BaseModelNotFoundError, match="holds no SavedModel"):
        base_model_dir(_FnArgs())


def test_local_runner_pins_the_served_versions(pushed_cnn, tmp_path):
    root, _ = pushed_cnn
    assert pinned_versions(get_family("transfer"), root) == {"cnn": "12"}
    # The CNN's baseline: its own latest push, once there is one.
    assert pinned_versions(get_family("cnn"), root) == {"cnn": "12"}
    assert pinned_versions(get_family("cnn"), tmp_path) == {}
    assert pinned_versions(get_family("batchnorm"), root) == {}


def test_conv_weights_come_back_from_the_generic_savedmodel(pushed_cnn):
    root, model = pushed_cnn
    weights = load_base_weights(str(root / "cnn" / "12"))
    assert set(weights) == set(BASE_LAYERS)
    for name in BASE_LAYERS:
        for got, want in zip(weights[name], model.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(got, want)


def test_transferred_model_freezes_the_base_and_trains_a_new_head(pushed_cnn):
    root, cnn = pushed_cnn
    model = build_transfer_model(load_base_weights(str(root / "cnn" / "12")))
    assert model.output_shape == (None, len(CLASS_NAMES))
    for name in BASE_LAYERS:
        assert not model.get_layer(name).trainable
        np.testing.assert_array_equal(
            model.get_layer(name).kernel.numpy(), cnn.get_layer(name).kernel.numpy()
        )
    assert all(model.get_layer(n).trainable for n in ("dense1", "dense2", "probs"))
    conv_weights = {id(w) for n in BASE_LAYERS for w in model.get_layer(n).weights}
    assert {id(w) for w in model.non_trainable_weights} == conv_weights
    scratch = build_transfer_model(None)
    assert all(layer.trainable for layer in scratch.layers)
    assert [w.shape for w in scratch.weights] == [w.shape for w in model.weights]


@pytest.mark.parametrize("fine_tune_epochs", [0, 2])
def test_the_base_stays_frozen_unless_fine_tuned_and_then_at_a_tenth_of_the_rate(
    pushed_cnn, fine_tune_epochs
):
    root, _ = pushed_cnn
    base = load_base_weights(str(root / "cnn" / "12"))
    model = build_transfer_model(base)
    rng = np.random.default_rng(0)
    train = rng.random((32, 1024), dtype=np.float32), rng.integers(0, 2, 32)
    head_before = model.get_layer("probs").kernel.numpy().copy()
    record = train_model(
        model,
        train,
        Hyperparameters(epochs=2, learning_rate=1e-2, batch_size=8),
        TransferConfig(fine_tune_epochs=fine_tune_epochs),
        transferred=True,
    )
    assert not np.array_equal(model.get_layer("probs").kernel.numpy(), head_before)
    moved = [
        not np.array_equal(model.get_layer(name).kernel.numpy(), base[name][0])
        for name in BASE_LAYERS
    ]
    assert moved == [bool(fine_tune_epochs)] * len(BASE_LAYERS)
    assert all(model.get_layer(name).trainable == bool(fine_tune_epochs) for name in BASE_LAYERS)
    assert len(record["head"]["loss"]) == 2
    if fine_tune_epochs:
        assert len(record["fine_tune"]["loss"]) == fine_tune_epochs
        assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    else:
        assert "fine_tune" not in record


def test_the_new_label_is_the_same_in_numpy_and_tensorflow():
    digits = np.arange(10)
    expected = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert task_label(digits).tolist() == expected
    assert task_label(tf.constant(digits, tf.int64)).numpy().tolist() == expected


def test_small_labelled_set_is_balanced_and_deterministic():
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 10, 500)
    images = np.arange(500, dtype=np.float32)[:, None]
    x, y = small_labelled_set(images, digits, 20, seed=1)
    assert x.shape == (40, 1) and np.bincount(y).tolist() == [20, 20]
    assert (task_label(digits[x[:, 0].astype(int)]) == y).all()
    x2, _ = small_labelled_set(images, digits, 20, seed=1)
    np.testing.assert_array_equal(x, x2)
    with pytest.raises(UserError, match="only"):
        small_labelled_set(images[:5], digits[:5], 20, seed=1)


def test_registry_names_the_signature_the_exporter_writes():
    family = get_family("transfer")
    assert family.label_signatures == (TRANSFORMED_LABELS,)
    assert family.label_key == TASK_LABEL_KEY
    assert family.depends_on == ("cnn",)


def test_options():
    config = options_from_config(
        FAMILY, {"transfer": {"examples_per_class": 10, "fine_tune_epochs": 2}}
    )
    assert (config.examples_per_class, config.fine_tune_epochs) == (10, 2)
    with pytest.raises(UserError):
        options_from_config(FAMILY, {"transfer": {"examples_per_class": 0}})
