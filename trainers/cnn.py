"""The CNN family: LeNet-5 as the study notes lay it out.

32×32×1 → 6 kernels 5×5 → 28×28×6 → pool → 14×14×6 → 16 kernels 5×5 → 10×10×16 → pool
→ 5×5×16 → two dense layers (120, 84) → 10-way softmax. Each convolution is followed by its
activation and then by pooling (the notes: convolution is linear, the activation makes it
non-linear, pooling then selects features). Padding, stride and pooling type are options
whose output sizes follow `output_size`.
"""

import logging
import math
from dataclasses import dataclass

import tensorflow as tf
from tfx import v1 as tfx

from tfsp.errors import UserError
from tfsp.features import IMAGE_KEY, IMAGE_PIXELS, IMAGE_SIZE, NUM_CLASSES
from trainers.common import Hyperparameters, fit_and_export_classifier

PADDINGS = ("valid", "same")
POOLINGS = ("max", "average")


def output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """Spatial size after a convolution or pooling window, by the notes' rules.

    valid keeps only windows that lie wholly on the image: ceil((size - kernel + 1) / stride);
    same pads with zeros so every pixel is sampled: ceil(size / stride).
    """
    if padding == "valid":
        return math.ceil((size - kernel + 1) / stride)
    if padding == "same":
        return math.ceil(size / stride)
    raise UserError(f"padding must be one of {PADDINGS}, got {padding!r}")


@dataclass(frozen=True)
class LeNetConfig:
    """Architecture options; the defaults are exactly the notes' LeNet-5."""

    filters: tuple[int, int] = (6, 16)
    kernel_size: int = 5
    conv_stride: int = 1
    conv_padding: str = "valid"
    pooling: str = "max"
    pool_size: int = 2
    pool_stride: int = 2
    dense_units: tuple[int, int] = (120, 84)
    activation: str = "relu"
    num_classes: int = NUM_CLASSES

    def feature_map_sizes(self) -> list[int]:
        """Spatial size after conv1, pool1, conv2, pool2; errors if the image vanishes."""
        if self.conv_padding not in PADDINGS:
            raise UserError(f"conv padding must be one of {PADDINGS}, got {self.conv_padding!r}")
        if self.pooling not in POOLINGS:
            raise UserError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if min(self.kernel_size, self.conv_stride, self.pool_size, self.pool_stride) < 1:
            raise UserError("kernel size, pool size and strides must be positive")
        sizes, size = [], IMAGE_SIZE
        for _ in self.filters:
            size = output_size(size, self.kernel_size, self.conv_stride, self.conv_padding)
            sizes.append(size)
            size = output_size(size, self.pool_size, self.pool_stride, "valid")
            sizes.append(size)
        if min(sizes) < 1:
            raise UserError(f"these conv/pool options shrink the 32×32 input to nothing: {sizes}")
        return sizes


def build_lenet5(config: LeNetConfig = LeNetConfig()) -> tf.keras.Model:
    """LeNet-5 taking the flat `image` feature (1,024 floats) and returning class probabilities."""
    config.feature_map_sizes()  # validates before any layer is built
    pool_layer = (
        tf.keras.layers.MaxPooling2D
        if config.pooling == "max"
        else (tf.keras.layers.AveragePooling2D)
    )
    inputs = tf.keras.Input(shape=(IMAGE_PIXELS,), name=IMAGE_KEY)
    x = tf.keras.layers.Reshape((IMAGE_SIZE, IMAGE_SIZE, 1), name="to_32x32x1")(inputs)
    for i, filters in enumerate(config.filters, start=1):
        x = tf.keras.layers.Conv2D(
            filters,
            config.kernel_size,
            strides=config.conv_stride,
            padding=config.conv_padding,
            activation=config.activation,
            name=f"conv{i}",
        )(x)
        x = pool_layer(config.pool_size, strides=config.pool_stride, name=f"pool{i}")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(config.dense_units, start=1):
        x = tf.keras.layers.Dense(units, activation=config.activation, name=f"dense{i}")(x)
    outputs = tf.keras.layers.Dense(config.num_classes, activation="softmax", name="probs")(x)
    return tf.keras.Model(inputs, outputs, name="lenet5")


def compile_classifier(model: tf.keras.Model, learning_rate: float) -> None:
    """Adam + sparse categorical cross-entropy, the setup every classifier family uses."""
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def config_from_custom(custom_config: dict | None) -> LeNetConfig:
    """Architecture options from the Trainer's custom_config (absent keys keep LeNet-5)."""
    options = dict((custom_config or {}).get("lenet", {}))
    for key in ("filters", "dense_units"):
        if key in options:
            options[key] = tuple(options[key])
    try:
        return LeNetConfig(**options)
    except TypeError as exc:
        raise UserError(f"unknown LeNet option: {exc}") from exc


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point: train LeNet-5 on Transform's output and export it."""
    config = config_from_custom(fn_args.custom_config)
    logging.info("CNN architecture %s", config)

    def build(hparams: Hyperparameters) -> tf.keras.Model:
        model = build_lenet5(config)
        compile_classifier(model, hparams.learning_rate)
        return model

    fit_and_export_classifier(fn_args, build)
