"""The transfer-learning family: the pushed CNN's convolutional base, a new head, a new task.

The base is conv1/pool1/conv2/pool2 of the LeNet-5 the CNN pipeline pushed: the highest
numeric version under `<serving root>/cnn`, the one TF Serving serves, handed to the Trainer
as its `base_model` input by the pipeline's BaseModelGen step. The new task is a
new label set over the same images: is the digit 5–9 ("5-9") or 0–4 ("0-4")? Only a small
labelled set is used (`examples_per_class`, default 50 per class, drawn from the train split).

Two models with the same architecture (LeNet-5 with a 2-way head) train on exactly those
examples for the same steps:
  transferred: conv weights copied from the CNN and frozen, the dense head trained; an
               optional fine-tune phase then unfreezes the base at a 10× smaller rate;
  from scratch: every weight random, trained for the same phases and rates.
The transferred model is the candidate (exported as the Trainer's model); the from-scratch one
the reference the Evaluator must see it beat.

The pushed SavedModel is a tf.Module whose `.model` comes back from tf.saved_model.load as a
generic restored object, not a Keras model; the conv weights are read from its variables (by
their Keras names, e.g. `conv1/kernel`) and set on layers built by `build_lenet5`.
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
from tfsp.core.errors import UserError
from tfsp.trainers.cnn.family import LeNetConfig
from tfsp.trainers.cnn.model import build_lenet5
from tfsp.trainers.common import (
    TrainerInputs,
    compile_classifier,
    write_json,
)
from tfsp.trainers.export import export_classifier
from tfsp.trainers.transfer.family import FAMILY, TransferConfig

if TYPE_CHECKING:  # annotations only: importing TFX takes ~4.5 s
    from tfx import v1 as tfx

BASE_LAYERS = ("conv1", "conv2")
CLASS_NAMES = ("0-4", "5-9")
COMPARISON_FILE = "comparison.json"


class BaseModelNotFoundError(RuntimeError):
    """The Trainer was given no base CNN (its `base_model` input), so nothing to transfer."""


def task_label(digits: np.ndarray | tf.Tensor) -> np.ndarray | tf.Tensor:
    """The new task's label: 1 if the digit is 5–9, 0 if 0–4 (numpy or TF, same rule)."""
    if isinstance(digits, tf.Tensor):
        return tf.cast(digits >= 5, tf.int64)
    return (np.asarray(digits) >= 5).astype(np.int64)


def base_model_dir(fn_args: tfx.components.FnArgs) -> str:
    """The base CNN's SavedModel: the Trainer's `base_model` input (a pushed CNN version)."""
    path = fn_args.base_model
    if not path or not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        raise BaseModelNotFoundError(
            f"the Trainer's base_model input holds no SavedModel ({path or 'not given'}); "
            "the pipeline's BaseModelGen must feed it a pushed CNN"
        )
    return path


def _variables_by_name(root: object) -> dict[str, tf.Variable]:
    """Every tf.Variable reachable from a restored object, by its name without ':0'."""
    found: dict[str, tf.Variable] = {}
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, tf.Variable):
            found.setdefault(node.name.split(":")[0], node)
            continue
        children = getattr(node, "_trackable_children", None)
        if callable(children):
            stack.extend(children().values())
    return found


def load_base_weights(saved_model_dir: str) -> dict[str, list[np.ndarray]]:
    """[kernel, bias] of conv1 and conv2 of the pushed CNN's Keras model."""
    loaded = tf.saved_model.load(saved_model_dir)
    model = getattr(loaded, "model", None)
    if model is None:
        raise BaseModelNotFoundError(f"{saved_model_dir} holds no `.model` (not a pushed CNN)")
    variables = _variables_by_name(model)
    weights = {}
    for layer in BASE_LAYERS:
        try:
            weights[layer] = [variables[f"{layer}/{part}"].numpy() for part in ("kernel", "bias")]
        except KeyError:
            raise BaseModelNotFoundError(
                f"{saved_model_dir} has no {layer} weights; found {sorted(variables)}"
            ) from None
    return weights


def build_transfer_model(
    base_weights: dict[str, list[np.ndarray]] | None, num_classes: int = len(CLASS_NAMES)
) -> keras.Model:
    """LeNet-5 with a `num_classes` head; with `base_weights`, conv layers set and frozen."""
    model = build_lenet5(LeNetConfig(num_classes=num_classes))
    if base_weights is not None:
        for name in BASE_LAYERS:
            layer = model.get_layer(name)
            layer.set_weights(base_weights[name])
            layer.trainable = False
    return model


def set_base_trainable(model: keras.Model, trainable: bool) -> None:
    """Freeze or unfreeze the convolutional base (recompile afterwards)."""
    for name in BASE_LAYERS:
        model.get_layer(name).trainable = trainable


def small_labelled_set(
    images: np.ndarray, digits: np.ndarray, per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` examples of each task class, drawn without replacement, shuffled."""
    labels = task_label(digits)
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in range(len(CLASS_NAMES)):
        candidates = np.flatnonzero(labels == cls)
        if len(candidates) < per_class:
            raise UserError(
                f"only {len(candidates)} training examples of class {CLASS_NAMES[cls]}, "
                f"{per_class} asked for"
            )
        chosen.append(rng.choice(candidates, per_class, replace=False))
    order = rng.permutation(np.concatenate(chosen))
    return images[order], labels[order]


def train_model(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    hparams: Hyperparameters,
    config: TransferConfig,
    transferred: bool,
) -> dict:
    """Train the head phase (base frozen if transferred), then the optional fine-tune phase.

    Both models go through the same phases, rates and steps; only the transferred one has a
    frozen base in the first phase.
    """
    compile_classifier(model, hparams.learning_rate)
    history = model.fit(
        *train, batch_size=hparams.batch_size, epochs=hparams.epochs, shuffle=True, verbose=2
    )
    record = {"head": {k: [float(v) for v in vs] for k, vs in history.history.items()}}
    if config.fine_tune_epochs:
        if transferred:
            set_base_trainable(model, True)
        # The notes: a transferred base is either frozen or updated with a smaller rate.
        compile_classifier(model, hparams.learning_rate / 10)
        history = model.fit(
            *train,
            batch_size=hparams.batch_size,
            epochs=config.fine_tune_epochs,
            shuffle=True,
            verbose=2,
        )
        record["fine_tune"] = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    return record


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point: transferred vs from-scratch on a small labelled set."""
    inputs = TrainerInputs.read(fn_args, FAMILY)
    hparams, config = inputs.hparams, inputs.options
    base_dir = base_model_dir(fn_args)
    logging.info("transfer from %s", base_dir)
    base_weights = load_base_weights(base_dir)
    train = small_labelled_set(
        *inputs.arrays(fn_args.train_files), config.examples_per_class, config.seed
    )
    eval_images, eval_digits = inputs.arrays(fn_args.eval_files)
    evaluation = (eval_images, task_label(eval_digits))
    results = {"base_model": base_dir, "config": asdict(config), "train_examples": len(train[1])}
    warmup = inputs.warmup()
    for name, transferred in (("from_scratch", False), ("transferred", True)):
        keras.utils.set_random_seed(config.seed)  # same head initialisation for both
        model = build_transfer_model(base_weights if transferred else None)
        history = train_model(model, train, hparams, config, transferred)
        loss, accuracy = model.evaluate(*evaluation, verbose=0)
        results[name] = {"eval_accuracy": accuracy, "eval_loss": loss, "history": history}
        directory = (
            fn_args.serving_model_dir
            if transferred
            else os.path.join(fn_args.model_run_dir, REFERENCE_MODEL_DIR)
        )
        export_classifier(
            model,
            inputs.transform_output,
            directory,
            class_names=CLASS_NAMES,
            label_fn=task_label,
            warmup=warmup,
        )
    logging.info(
        "eval accuracy on %s: transferred %.4f, from scratch %.4f",
        "/".join(CLASS_NAMES),
        results["transferred"]["eval_accuracy"],
        results["from_scratch"]["eval_accuracy"],
    )
    write_json(os.path.join(fn_args.model_run_dir, COMPARISON_FILE), results)
