"""What every family's trainer shares: input datasets, the strategy, training and export."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx_bsl.public import tfxio

from tfsp.core.contract import Hyperparameters
from tfsp.core.family import Family, options_from_config
from tfsp.core.features import IMAGE_KEY, LABEL_KEY
from tfsp.trainers.export import export_classifier
from tfsp.trainers.warmup import WARMUP_EXAMPLE_COUNT, WarmupData, warmup_data

if TYPE_CHECKING:  # annotations only: importing TFX takes ~4.5 s
    from tfx import v1 as tfx


def strategy_kind(gpu_names: list[str]) -> str:
    """Which tf.distribute strategy suits these GPUs: 'mirrored' for one or more, else 'default'.

    Kept apart from constructing the strategy so the decision is testable without a GPU.
    """
    return "mirrored" if gpu_names else "default"


def make_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy over every visible GPU, or the default (single-device) strategy."""
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if strategy_kind(gpus) == "mirrored":
        logging.info("training with MirroredStrategy on %s", gpus)
        return tf.distribute.MirroredStrategy(gpus)
    logging.info("no GPU visible; training with the default strategy on CPU")
    return tf.distribute.get_strategy()


def transformed_dataset(
    file_pattern: list[str],
    data_accessor: tfx.components.DataAccessor,
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    shuffle: bool,
    label_key: str = LABEL_KEY,
) -> tf.data.Dataset:
    """One pass over Transform's output as (features, label) batches.

    `label_key` names the transformed feature split off as the label (a family whose target
    is not the digit, e.g. a reconstruction, names its own).
    """
    return data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(
            batch_size=batch_size,
            label_key=label_key,
            num_epochs=1,
            shuffle=shuffle,
            shuffle_seed=0 if shuffle else None,
        ),
        tf_transform_output.transformed_metadata.schema,
    )


def cosine_epoch_schedule(learning_rate: float, epochs: int) -> keras.callbacks.Callback:
    """Anneal the rate from `learning_rate` towards 0 over `epochs` (half a cosine, per epoch).

    Small data sets make the last epochs' accuracy jumpy at a constant rate; annealing makes
    the exported (last-epoch) model a settled one.
    """

    def rate(epoch: int) -> float:
        return learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / max(epochs, 1)))

    return keras.callbacks.LearningRateScheduler(rate)


def dataset_arrays(dataset: tf.data.Dataset, feature: str) -> tuple[np.ndarray, np.ndarray]:
    """One pass over (features, label) batches as (features[feature], labels) numpy arrays.

    Families that train two models for a comparison train both on these arrays, so the two
    see exactly the same examples in the same order.
    """
    xs, ys = [], []
    for features, labels in dataset:
        x = features[feature].numpy()
        xs.append(x)
        # One label per example stays flat; a wider label (pixels) keeps a row per example.
        y = labels.numpy().reshape(len(x), -1)
        ys.append(y[:, 0] if y.shape[1] == 1 else y)
    if not xs:
        raise ValueError("the dataset holds no examples")
    return np.concatenate(xs), np.concatenate(ys)


@dataclass
class TrainerInputs:
    """What a Trainer that trains on in-memory arrays reads first: hyper-parameters, the
    family's options, Transform's output, and each split as arrays."""

    fn_args: tfx.components.FnArgs
    hparams: Hyperparameters
    options: object
    transform_output: tft.TFTransformOutput

    @classmethod
    def read(cls, fn_args: tfx.components.FnArgs, family: Family) -> TrainerInputs:
        """Read them (and log the values the run trains with)."""
        inputs = cls(
            fn_args,
            Hyperparameters.from_dict(fn_args.hyperparameters),
            options_from_config(family, fn_args.custom_config),
            tft.TFTransformOutput(fn_args.transform_output),
        )
        logging.info("%s: %s, %s", family.name, inputs.hparams, inputs.options)
        return inputs

    def arrays(self, files: list[str], label_key: str = LABEL_KEY) -> tuple[np.ndarray, np.ndarray]:
        """(standardised images, `label_key` values) of a split, in file order."""
        dataset = transformed_dataset(
            files,
            self.fn_args.data_accessor,
            self.transform_output,
            256,
            shuffle=False,
            label_key=label_key,
        )
        return dataset_arrays(dataset, IMAGE_KEY)

    def warmup(self) -> WarmupData:
        """The warmup requests' examples (eval_warmup_data)."""
        return eval_warmup_data(self.fn_args, self.transform_output)


def eval_warmup_data(
    fn_args: tfx.components.FnArgs, tf_transform_output: tft.TFTransformOutput
) -> WarmupData:
    """The first few eval examples, as raw pixels (and digits), for the warmup requests."""
    dataset = fn_args.data_accessor.tf_dataset_factory(
        fn_args.eval_files,
        tfxio.TensorFlowDatasetOptions(
            batch_size=WARMUP_EXAMPLE_COUNT, num_epochs=1, shuffle=False
        ),
        tf_transform_output.transformed_metadata.schema,
    )
    batch = next(iter(dataset))
    return warmup_data(
        {key: value.numpy() for key, value in batch.items()},
        tf_transform_output.transform_features_layer(),
    )


def write_json(path: str, values: dict) -> None:
    """Write `values` as indented JSON through tf.io.gfile (local or remote paths).

    The folder is created first: TFX's local runner creates model_run, its Kubeflow v2
    entrypoint does not.
    """
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(values, f, indent=2, sort_keys=True)


def compile_classifier(model: keras.Model, learning_rate: float, clip_norm: float = 0.0) -> None:
    """Adam + sparse categorical cross-entropy + accuracy: every classifier family's setup.

    `clip_norm` > 0 clips the gradient's global norm (the RNN family's option); 0 does not.
    """
    optimizer = keras.optimizers.Adam(learning_rate, global_clipnorm=clip_norm or None)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def fit_and_export_classifier(
    fn_args: tfx.components.FnArgs,
    build_compiled_model: Callable[[Hyperparameters], keras.Model],
) -> keras.Model:
    """Train a digit classifier on Transform's output and export it (the CNN and RNN run_fn).

    `build_compiled_model(hparams)` is called inside the distribution strategy's scope and
    returns a compiled Keras model; training uses the cosine schedule, the history goes to
    `<model_run>/history.json`, and the model is exported by `export_classifier`.
    """
    hparams = Hyperparameters.from_dict(fn_args.hyperparameters)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = transformed_dataset(
        fn_args.train_files, fn_args.data_accessor, tf_transform_output, hparams.batch_size, True
    )
    evaluation = transformed_dataset(
        fn_args.eval_files, fn_args.data_accessor, tf_transform_output, hparams.batch_size, False
    )
    keras.utils.set_random_seed(0)
    with make_strategy().scope():
        model = build_compiled_model(hparams)
    history = model.fit(
        train,
        validation_data=evaluation,
        epochs=hparams.epochs,
        callbacks=[cosine_epoch_schedule(hparams.learning_rate, hparams.epochs)],
        verbose=2,
    )
    write_json(
        os.path.join(fn_args.model_run_dir, "history.json"),
        {k: [float(v) for v in vs] for k, vs in history.history.items()},
    )
    export_classifier(
        model,
        tf_transform_output,
        fn_args.serving_model_dir,
        warmup=eval_warmup_data(fn_args, tf_transform_output),
    )
    return model
