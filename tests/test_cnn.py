"""LeNet-5 shapes and the padding/stride/pooling rules from the notes."""

import keras
import pytest
import tensorflow as tf

from tfsp.core.contract import Hyperparameters
from tfsp.core.errors import UserError
from tfsp.core.family import options_from_config
from tfsp.trainers.cnn.family import FAMILY, LeNetConfig, output_size
from tfsp.trainers.cnn.model import build_lenet5
from tfsp.trainers.common import strategy_kind


def _spatial(model: keras.Model, name: str) -> tuple:
    return tuple(model.get_layer(name).output.shape[1:])


def test_default_is_the_notes_lenet5():
    model = build_lenet5()
    assert _spatial(model, "to_32x32x1") == (32, 32, 1)
    assert _spatial(model, "conv1") == (28, 28, 6)
    assert _spatial(model, "pool1") == (14, 14, 6)
    assert _spatial(model, "conv2") == (10, 10, 16)
    assert _spatial(model, "pool2") == (5, 5, 16)
    assert _spatial(model, "flatten") == (400,)
    assert [model.get_layer(n).units for n in ("dense1", "dense2", "probs")] == [120, 84, 10]
    assert model.get_layer("conv1").kernel_size == (5, 5)
    assert isinstance(model.get_layer("pool1"), keras.layers.MaxPooling2D)


def test_activation_follows_each_convolution_before_pooling():
    model = build_lenet5(LeNetConfig(activation="tanh"))
    names = [layer.name for layer in model.layers]
    assert names.index("conv1") + 1 == names.index("pool1")
    assert model.get_layer("conv1").activation.__name__ == "tanh"


@pytest.mark.parametrize(
    "size, kernel, stride, padding, expected",
    [
        (32, 5, 1, "valid", 28),  # the notes: valid shrinks by kernel - 1 at stride 1
        (32, 5, 1, "same", 32),  # same keeps the size at stride 1
        (32, 5, 2, "same", 16),  # stride 2 halves it
        (32, 5, 2, "valid", 14),
        (28, 2, 2, "valid", 14),  # 2×2 pooling, stride 2
        (5, 2, 2, "valid", 2),
        (5, 2, 2, "same", 3),
    ],
)
def test_output_size_rules(size, kernel, stride, padding, expected):
    assert output_size(size, kernel, stride, padding) == expected


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("conv_stride", [1, 2])
@pytest.mark.parametrize("pooling", ["max", "average"])
def test_built_shapes_follow_the_rules(padding, conv_stride, pooling):
    config = LeNetConfig(conv_padding=padding, conv_stride=conv_stride, pooling=pooling)
    model = build_lenet5(config)
    built = [_spatial(model, n)[0] for n in ("conv1", "pool1", "conv2", "pool2")]
    assert built == config.feature_map_sizes()
    expected_pool = (
        keras.layers.MaxPooling2D if pooling == "max" else (keras.layers.AveragePooling2D)
    )
    assert isinstance(model.get_layer("pool2"), expected_pool)
    probs = model(tf.zeros([2, 1024]))
    assert probs.shape == (2, 10)


def test_without_pooling_the_convolutions_feed_the_dense_layers_at_full_size():
    config = LeNetConfig(pooling="none")
    model = build_lenet5(config)
    assert not [layer for layer in model.layers if "pool" in layer.name]
    assert config.feature_map_sizes() == [28, 28, 24, 24]
    assert _spatial(model, "conv2") == (24, 24, 16)
    # the cost the notes say pooling saves: dense1 sees 24×24×16 values instead of 5×5×16
    assert model.get_layer("dense1").kernel.shape == (24 * 24 * 16, 120)
    assert build_lenet5().get_layer("dense1").kernel.shape == (5 * 5 * 16, 120)
    assert model(tf.zeros([2, 1024])).shape == (2, 10)


def test_options_that_shrink_the_image_to_nothing_are_refused():
    with pytest.raises(UserError, match="shrink"):
        build_lenet5(LeNetConfig(conv_stride=4, kernel_size=5))


def test_bad_padding_is_refused():
    with pytest.raises(UserError, match="padding"):
        LeNetConfig(conv_padding="full").feature_map_sizes()


def test_custom_config_reaches_the_architecture():
    config = options_from_config(FAMILY, {"cnn": {"pooling": "average", "conv_stride": 2}})
    assert (config.pooling, config.conv_stride, config.kernel_size) == ("average", 2, 5)
    with pytest.raises(UserError, match="unknown cnn option"):
        options_from_config(FAMILY, {"cnn": {"kernel": 3}})


def test_strategy_follows_the_devices():
    assert strategy_kind([]) == "default"
    assert strategy_kind(["/device:GPU:0"]) == "mirrored"
    assert strategy_kind(["/device:GPU:0", "/device:GPU:1"]) == "mirrored"


def test_hyperparameters_round_trip_and_require_every_field():
    hp = Hyperparameters(epochs=3, learning_rate=0.01, batch_size=16)
    import json

    assert Hyperparameters.from_dict(json.loads(hp.to_json())) == hp
    with pytest.raises(ValueError, match="batch_size"):
        Hyperparameters.from_dict({"epochs": 3, "learning_rate": 0.01})


def test_weight_sharing_cuts_the_parameters_as_the_notes_say():
    # Each conv kernel is shared across the image: 6 × (5·5·1 + 1) parameters for conv1,
    # where a dense layer giving the same 28×28×6 output from 32×32×1 needs a weight per
    # input-output pair (the notes' "参数巨多").
    model = build_lenet5()
    assert model.get_layer("conv1").count_params() == 6 * (5 * 5 * 1 + 1) == 156
    assert model.get_layer("conv2").count_params() == 16 * (5 * 5 * 6 + 1) == 2_416
    dense_equivalent = (32 * 32 * 1) * (28 * 28 * 6) + 28 * 28 * 6
    assert dense_equivalent == 4_821_600
    assert dense_equivalent // model.get_layer("conv1").count_params() == 30_907
    assert model.count_params() == 156 + 2_416 + (400 * 120 + 120) + (120 * 84 + 84) + 850
