"""The RNN family: a recurrent classifier reading each digit image row by row.

The 32×32 image is a sequence of 32 time steps of 32 features (one row per step). The cell is
an option, as the notes list them: SimpleRNN (Elman: the hidden layer is fed back), a Jordan
network (the *output* is fed back; `JordanCell`), LSTM (forget-gate bias initialised to 1, as
the notes advise) and GRU; `bidirectional` and stacked `layers` too. Gradients are clipped by
their global norm (the notes' remedy for the cliffs of an RNN's error surface); the threshold
is an option and 0 turns clipping off.

The notes' long-range and exploding-gradient claims, and truncated BPTT, are experiments in
`tfsp.trainers.rnn.experiments` (`tfsp experiment rnn-claims`), not part of the served model.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from typing import TYPE_CHECKING

import keras
import tensorflow as tf

from tfsp.core.contract import Hyperparameters
from tfsp.core.errors import UserError
from tfsp.core.family import options_from_config
from tfsp.core.features import IMAGE_KEY, IMAGE_PIXELS, IMAGE_SIZE
from tfsp.trainers.common import compile_classifier, fit_and_export_classifier, write_json
from tfsp.trainers.rnn.family import CELLS, FAMILY, RNNConfig

if TYPE_CHECKING:  # annotations only: importing TFX takes ~4.5 s
    from tfx import v1 as tfx


@keras.utils.register_keras_serializable(package="tfsp")
class JordanCell(keras.layers.Layer):
    """A Jordan network step: the previous *output* is fed back, not the hidden layer.

        h_t = tanh(x_t W + y_{t-1} U + b)
        y_t = tanh(h_t V + c)

    The state is y_{t-1} (`output_units` wide); an Elman network (SimpleRNN) would feed back
    h_{t-1} instead. Wrap it in `keras.layers.RNN`.
    """

    def __init__(self, units: int, output_units: int | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.output_units = output_units or units
        self.state_size = self.output_units
        self.output_size = self.output_units

    def build(self, input_shape: tuple) -> None:
        """Create W (input→hidden), U (output→hidden), b, V (hidden→output), c."""
        features = int(input_shape[-1])
        self.kernel = self.add_weight(
            shape=(features, self.units), initializer="glorot_uniform", name="kernel"
        )
        self.feedback_kernel = self.add_weight(
            shape=(self.output_units, self.units), initializer="orthogonal", name="feedback"
        )
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
        self.output_kernel = self.add_weight(
            shape=(self.units, self.output_units), initializer="glorot_uniform", name="output"
        )
        self.output_bias = self.add_weight(
            shape=(self.output_units,), initializer="zeros", name="output_bias"
        )
        super().build(input_shape)  # marks the cell built, so a later call keeps these weights

    def call(self, inputs: tf.Tensor, states: list) -> tuple[tf.Tensor, list]:
        """One time step: returns y_t as both the output and the next state."""
        previous_output = states[0] if isinstance(states, list | tuple) else states
        hidden = tf.tanh(
            tf.matmul(inputs, self.kernel)
            + tf.matmul(previous_output, self.feedback_kernel)
            + self.bias
        )
        output = tf.tanh(tf.matmul(hidden, self.output_kernel) + self.output_bias)
        return output, [output]

    def get_config(self) -> dict:
        """Keras serialisation."""
        return {**super().get_config(), "units": self.units, "output_units": self.output_units}


def recurrent_layer(
    cell: str,
    units: int,
    *,
    return_sequences: bool = False,
    return_state: bool = False,
    name: str | None = None,
) -> keras.layers.Layer:
    """One recurrent layer of the given cell type."""
    options = dict(return_sequences=return_sequences, return_state=return_state, name=name)
    if cell == "simple":
        return keras.layers.SimpleRNN(units, **options)
    if cell == "jordan":
        return keras.layers.RNN(JordanCell(units), **options)
    if cell == "lstm":
        # The notes: give the forget gate a large bias so it starts (mostly) open and memory
        # survives from the first updates on; Keras's unit_forget_bias sets it to 1.
        return keras.layers.LSTM(units, unit_forget_bias=True, **options)
    if cell == "gru":
        return keras.layers.GRU(units, **options)
    raise UserError(f"cell must be one of {CELLS}, got {cell!r}")


def build_rnn_classifier(config: RNNConfig | None = None) -> keras.Model:
    """The row-by-row classifier taking the flat `image` feature and returning probabilities."""
    config = config or RNNConfig()
    inputs = keras.Input(shape=(IMAGE_PIXELS,), name=IMAGE_KEY)
    x = keras.layers.Reshape((IMAGE_SIZE, IMAGE_SIZE), name="rows")(inputs)
    for i in range(1, config.layers + 1):
        sequences = i < config.layers  # every layer but the last feeds a sequence upwards
        if config.bidirectional:
            layer = keras.layers.Bidirectional(
                recurrent_layer(config.cell, config.units, return_sequences=sequences),
                name=f"bi_{config.cell}{i}",
            )
        else:
            layer = recurrent_layer(
                config.cell, config.units, return_sequences=sequences, name=f"{config.cell}{i}"
            )
        x = layer(x)
    outputs = keras.layers.Dense(config.num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=f"rnn_{config.cell}")


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point: train the row-by-row classifier and export it."""
    config = options_from_config(FAMILY, fn_args.custom_config)
    logging.info("RNN architecture %s", config)

    def build(hparams: Hyperparameters) -> keras.Model:
        model = build_rnn_classifier(config)
        compile_classifier(model, hparams.learning_rate, config.clip_norm)
        return model

    write_json(os.path.join(fn_args.model_run_dir, "rnn_config.json"), asdict(config))
    fit_and_export_classifier(fn_args, build)
