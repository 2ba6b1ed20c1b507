"""The batch-normalization family: one deep MLP trained twice, with and without BN.

The notes: without BN a deep network's pre-activations spread wide, tanh saturates (outputs
pinned at ±1) and learning stalls; BN, placed between each Dense layer and its activation,
keeps them in the activation's sensitive range. Both variants here have the same layers,
initialisation, data, order of examples, optimiser and number of steps; the only difference
is BN. The default initialisation is the one the notes' experiment uses (weights drawn from
N(0, 1)), where the effect is plain to see; `init="glorot"` is the modern default, where the
gap is much smaller (see the README's measurements).

The Trainer exports the BN variant as its model and the plain one as the reference
(`<model_run>/reference`); the Evaluator blesses the BN model only if it beats the plain one.
Per-layer pre-activation and activation histograms of both go to `<model_run>/distributions.png`
(with the numbers in `distributions.json`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from tfsp.core.contract import REFERENCE_MODEL_DIR, Hyperparameters
from tfsp.core.features import IMAGE_KEY, IMAGE_PIXELS
from tfsp.trainers.batchnorm.family import FAMILY, MLPConfig
from tfsp.trainers.common import (
    TrainerInputs,
    compile_classifier,
    cosine_epoch_schedule,
    write_json,
)
from tfsp.trainers.export import export_classifier

if TYPE_CHECKING:  # annotations only: importing TFX takes ~4.5 s
    from tfx import v1 as tfx

FIGURE_FILE = "distributions.png"
DISTRIBUTIONS_FILE = "distributions.json"
COMPARISON_FILE = "comparison.json"
# Examples of the eval split whose per-layer values are recorded (enough for smooth histograms).
_PROBE_EXAMPLES = 256


def _initializer(init: str, seed: int) -> keras.initializers.Initializer:
    if init == "normal":
        return keras.initializers.RandomNormal(0.0, 1.0, seed=seed)
    return keras.initializers.GlorotUniform(seed=seed)


def build_mlp(config: MLPConfig, batch_norm: bool) -> keras.Model:
    """The MLP: hidden layers `dense{i}` → (`bn{i}`) → `act{i}`, then the softmax `probs`.

    Layer i's initial weights depend only on i, so both variants start from the same weights.
    With BN the Dense layer has no bias: BN's shift β replaces it.
    """
    inputs = keras.Input(shape=(IMAGE_PIXELS,), name=IMAGE_KEY)
    x = inputs
    for i in range(1, config.hidden_layers + 1):
        x = keras.layers.Dense(
            config.units,
            use_bias=not batch_norm,
            kernel_initializer=_initializer(config.init, seed=i),
            name=f"dense{i}",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(momentum=config.bn_momentum, name=f"bn{i}")(x)
        x = keras.layers.Activation(config.activation, name=f"act{i}")(x)
    outputs = keras.layers.Dense(
        config.num_classes,
        activation="softmax",
        kernel_initializer=keras.initializers.GlorotUniform(seed=0),
        name="probs",
    )(x)
    return keras.Model(inputs, outputs, name="mlp_bn" if batch_norm else "mlp_plain")


def layer_values(model: keras.Model, images: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Per hidden layer, the pre-activations (what enters act{i}) and activations, flattened."""
    acts = [layer for layer in model.layers if layer.name.startswith("act")]
    probe = keras.Model(model.inputs, [out for a in acts for out in (a.input, a.output)])
    outputs = probe({IMAGE_KEY: images}, training=False)
    values = [v.numpy() if hasattr(v, "numpy") else v for v in outputs]
    return {
        "pre_activation": [np.ravel(v) for v in values[0::2]],
        "activation": [np.ravel(v) for v in values[1::2]],
    }


def summarise(values: dict[str, list[np.ndarray]], activation: str) -> list[dict]:
    """Per layer: mean/std of both, and the share of units saturated or dead."""
    rows = []
    for pre, act in zip(values["pre_activation"], values["activation"], strict=True):
        stuck = np.abs(act) > 0.99 if activation == "tanh" else act <= 0.0
        rows.append(
            {
                "pre_activation_mean": float(pre.mean()),
                "pre_activation_std": float(pre.std()),
                "activation_mean": float(act.mean()),
                "activation_std": float(act.std()),
                # tanh: |a| > 0.99 (saturated, gradient ≈ 0); relu: a = 0 (dead).
                "stuck_fraction": float(stuck.mean()),
            }
        )
    return rows


def plot_distributions(
    plain: dict[str, list[np.ndarray]], bn: dict[str, list[np.ndarray]], path: str, title: str
) -> None:
    """Histograms per layer (rows); columns: plain pre-activation, activation, BN ditto."""
    import matplotlib

    matplotlib.use("Agg")  # no display on build machines
    import matplotlib.pyplot as plt

    layers = len(plain["pre_activation"])
    fig, axes = plt.subplots(layers, 4, figsize=(12, 1.6 * layers), squeeze=False)
    columns = [
        ("plain: pre-activation", plain["pre_activation"]),
        ("plain: activation", plain["activation"]),
        ("BN: pre-activation", bn["pre_activation"]),
        ("BN: activation", bn["activation"]),
    ]
    for col, (name, per_layer) in enumerate(columns):
        for row, values in enumerate(per_layer):
            ax = axes[row][col]
            ax.hist(values, bins=50, color="tab:blue" if col < 2 else "tab:orange")
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            if row == 0:
                ax.set_title(name, fontsize=9)
            if col == 0:
                ax.set_ylabel(f"layer {row + 1}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with tf.io.gfile.GFile(path, "wb") as f:
        fig.savefig(f, format="png", dpi=80)
    plt.close(fig)


def train_variant(
    config: MLPConfig,
    batch_norm: bool,
    train: tuple[np.ndarray, np.ndarray],
    hparams: Hyperparameters,
) -> tuple[keras.Model, dict]:
    """Build and train one variant; same seed, data order and steps for both."""
    keras.utils.set_random_seed(0)
    model = build_mlp(config, batch_norm)
    compile_classifier(model, hparams.learning_rate)
    history = model.fit(
        *train,
        batch_size=hparams.batch_size,
        epochs=hparams.epochs,
        shuffle=True,
        callbacks=[cosine_epoch_schedule(hparams.learning_rate, hparams.epochs)],
        verbose=2,
    )
    return model, {k: [float(v) for v in vs] for k, vs in history.history.items()}


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point: train both variants, record distributions, export both."""
    inputs = TrainerInputs.read(fn_args, FAMILY)
    hparams, config = inputs.hparams, inputs.options
    train, evaluation = inputs.arrays(fn_args.train_files), inputs.arrays(fn_args.eval_files)
    probe = evaluation[0][:_PROBE_EXAMPLES]
    results, values = {}, {}
    warmup = inputs.warmup()
    for name, batch_norm in (("plain", False), ("bn", True)):
        model, history = train_variant(config, batch_norm, train, hparams)
        loss, accuracy = model.evaluate(*evaluation, verbose=0)
        results[name] = {"eval_accuracy": accuracy, "eval_loss": loss, "history": history}
        values[name] = layer_values(model, probe)
        results[name]["layers"] = summarise(values[name], config.activation)
        # The BN variant is the candidate (pushed if blessed); the plain one the reference.
        directory = (
            fn_args.serving_model_dir
            if batch_norm
            else os.path.join(fn_args.model_run_dir, REFERENCE_MODEL_DIR)
        )
        export_classifier(model, inputs.transform_output, directory, warmup=warmup)
    logging.info(
        "eval accuracy after %d epochs: BN %.4f, plain %.4f",
        hparams.epochs,
        results["bn"]["eval_accuracy"],
        results["plain"]["eval_accuracy"],
    )
    figure = os.path.join(fn_args.model_run_dir, FIGURE_FILE)
    plot_distributions(
        values["plain"],
        values["bn"],
        figure,
        f"{config.hidden_layers} hidden layers × {config.units}, {config.activation}, "
        f"init {config.init}, after {hparams.epochs} epochs (eval examples)",
    )
    logging.info("per-layer distributions: %s", figure)
    write_json(
        os.path.join(fn_args.model_run_dir, DISTRIBUTIONS_FILE),
        {"config": asdict(config), **{k: v["layers"] for k, v in results.items()}},
    )
    write_json(os.path.join(fn_args.model_run_dir, COMPARISON_FILE), results)
