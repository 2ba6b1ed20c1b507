"""The CNN family's model: LeNet-5 as the study notes lay it out (options in family.py)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import keras

from tfsp.core.contract import Hyperparameters
from tfsp.core.family import options_from_config
from tfsp.core.features import IMAGE_KEY, IMAGE_PIXELS, IMAGE_SIZE
from tfsp.trainers.cnn.family import FAMILY, LeNetConfig
from tfsp.trainers.common import compile_classifier, fit_and_export_classifier

if TYPE_CHECKING:  # annotations only: importing TFX takes ~4.5 s
    from tfx import v1 as tfx


def build_lenet5(config: LeNetConfig | None = None) -> keras.Model:
    """LeNet-5 taking the flat `image` feature (1,024 floats) and returning class probabilities."""
    config = config or LeNetConfig()
    pool_layer = {"max": keras.layers.MaxPooling2D, "average": keras.layers.AveragePooling2D}.get(
        config.pooling
    )  # None: no pooling
    inputs = keras.Input(shape=(IMAGE_PIXELS,), name=IMAGE_KEY)
    x = keras.layers.Reshape((IMAGE_SIZE, IMAGE_SIZE, 1), name="to_32x32x1")(inputs)
    for i, filters in enumerate(config.filters, start=1):
        x = keras.layers.Conv2D(
            filters,
            config.kernel_size,
            strides=config.conv_stride,
            padding=config.conv_padding,
            activation=config.activation,
            name=f"conv{i}",
        )(x)
        if pool_layer is not None:
            x = pool_layer(config.pool_size, strides=config.pool_stride, name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(config.dense_units, start=1):
        x = keras.layers.Dense(units, activation=config.activation, name=f"dense{i}")(x)
    outputs = keras.layers.Dense(config.num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="lenet5")


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point: train LeNet-5 on Transform's output and export it."""
    config = options_from_config(FAMILY, fn_args.custom_config)
    logging.info("CNN architecture %s", config)

    def build(hparams: Hyperparameters) -> keras.Model:
        model = build_lenet5(config)
        compile_classifier(model, hparams.learning_rate)
        return model

    fit_and_export_classifier(fn_args, build)
