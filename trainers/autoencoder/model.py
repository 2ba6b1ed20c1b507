"""The AutoEncoder family's model: compress a 32×32 image to a small code and reconstruct it.

Trained without labels: the input is the Transform-standardised image, the target its raw
pixels in [0, 1]. The notes claim an autoencoder extracts features "like PCA, even better";
the pipeline measures that: PCA with as many components as the code is exported next to
the autoencoder as the Evaluator's baseline, and the autoencoder is blessed only if its
test-split reconstruction error is lower (the Trainer's claim.json has the eval split's).

The encoder alone is what users pull features from (`autoencoder_encoder`).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from tfsp.core.contract import REFERENCE_MODEL_DIR
from tfsp.core.features import IMAGE_KEY, IMAGE_PIXELS, IMAGE_SIZE
from tfsp.trainers.autoencoder.family import ENCODER_DIR, FAMILY, AutoEncoderConfig
from tfsp.trainers.common import (
    TrainerInputs,
    cosine_epoch_schedule,
    make_strategy,
    write_json,
)
from tfsp.trainers.export import export_autoencoder, export_encoder, export_pca

if TYPE_CHECKING:  # annotations only: importing TFX takes ~4.5 s
    from tfx import v1 as tfx


def _conv_encoder(config: AutoEncoderConfig) -> keras.Model:
    layers = keras.layers
    inputs = keras.Input(shape=(IMAGE_PIXELS,), name=IMAGE_KEY)
    x = layers.Reshape((IMAGE_SIZE, IMAGE_SIZE, 1))(inputs)
    for i, channels in enumerate(config.channels, start=1):
        x = layers.Conv2D(
            channels, 3, strides=2, padding="same", activation="relu", name=f"enc_conv{i}"
        )(x)
    x = layers.Flatten()(x)
    code = layers.Dense(config.code_size, name="code")(x)
    return keras.Model(inputs, code, name="encoder")


def _conv_decoder(config: AutoEncoderConfig) -> keras.Model:
    layers = keras.layers
    side = IMAGE_SIZE // 2 ** len(config.channels)
    code = keras.Input(shape=(config.code_size,), name="code")
    x = layers.Dense(side * side * config.channels[-1], activation="relu")(code)
    x = layers.Reshape((side, side, config.channels[-1]))(x)
    for i, channels in enumerate(reversed(config.channels[:-1]), start=1):
        x = layers.Conv2DTranspose(
            channels, 3, strides=2, padding="same", activation="relu", name=f"dec_deconv{i}"
        )(x)
    # Linear output: the target is pixel intensity and MSE needs no squashing to learn it.
    x = layers.Conv2DTranspose(1, 3, strides=2, padding="same", name="dec_pixels")(x)
    return keras.Model(code, layers.Flatten()(x), name="decoder")


def _dense_encoder(config: AutoEncoderConfig) -> keras.Model:
    layers = keras.layers
    inputs = keras.Input(shape=(IMAGE_PIXELS,), name=IMAGE_KEY)
    x = inputs
    for i, units in enumerate(config.hidden_units, start=1):
        x = layers.Dense(units, activation="relu", name=f"enc_dense{i}")(x)
    code = layers.Dense(config.code_size, name="code")(x)
    return keras.Model(inputs, code, name="encoder")


def _dense_decoder(config: AutoEncoderConfig) -> keras.Model:
    layers = keras.layers
    code = keras.Input(shape=(config.code_size,), name="code")
    x = code
    for i, units in enumerate(reversed(config.hidden_units), start=1):
        x = layers.Dense(units, activation="relu", name=f"dec_dense{i}")(x)
    return keras.Model(code, layers.Dense(IMAGE_PIXELS, name="dec_pixels")(x), name="decoder")


def build_autoencoder(
    config: AutoEncoderConfig | None = None,
) -> tuple[keras.Model, keras.Model, keras.Model]:
    """(autoencoder, encoder, decoder); the autoencoder is decoder(encoder(x)), weights shared."""
    config = config or AutoEncoderConfig()
    if config.kind == "conv":
        encoder, decoder = _conv_encoder(config), _conv_decoder(config)
    else:
        encoder, decoder = _dense_encoder(config), _dense_decoder(config)
    inputs = keras.Input(shape=(IMAGE_PIXELS,), name=IMAGE_KEY)
    autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="autoencoder")
    return autoencoder, encoder, decoder


class PCAReconstruction(tf.Module):
    """PCA fitted with scikit-learn, as TensorFlow ops: x → (x − μ)Wᵀ → ·W + μ.

    Exported with the autoencoder's signatures so TFMA can score both the same way.
    """

    def __init__(self, mean: np.ndarray, components: np.ndarray) -> None:
        super().__init__()
        self.mean = tf.Variable(mean.astype(np.float32), trainable=False, name="mean")
        self.components = tf.Variable(
            components.astype(np.float32), trainable=False, name="components"
        )

    def encode(self, pixels: tf.Tensor) -> tf.Tensor:
        """Project raw pixels [batch, 1024] onto the components."""
        return tf.matmul(pixels - self.mean, self.components, transpose_b=True)

    def reconstruct(self, pixels: tf.Tensor) -> tf.Tensor:
        """Project and map back to pixel space."""
        return tf.matmul(self.encode(pixels), self.components) + self.mean


def fit_pca(pixels: np.ndarray, code_size: int) -> PCAReconstruction:
    """Fit PCA with `code_size` components on raw pixels [n, 1024]."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=code_size, random_state=0).fit(pixels)
    return PCAReconstruction(pca.mean_, pca.components_)


def reconstruction_mse(reconstructed: np.ndarray, pixels: np.ndarray) -> float:
    """Mean squared error over every pixel of every image."""
    return float(np.mean((np.asarray(reconstructed) - np.asarray(pixels)) ** 2))


# --- Training and export (the TFX Trainer entry point) -------------------------------------

PIXELS_KEY = "pixels"  # Transform's copy of the raw image: the reconstruction target
FIGURE_FILE = "reconstructions.png"
CLAIM_FILE = "claim.json"


def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Standardised image as the input, raw pixels as the target; the label is not used."""
    return {
        IMAGE_KEY: tft.scale_to_z_score(inputs[IMAGE_KEY]),
        PIXELS_KEY: tf.identity(inputs[IMAGE_KEY]),
    }


def save_reconstruction_figure(
    path: str, originals: np.ndarray, autoencoder: np.ndarray, pca: np.ndarray, count: int = 10
) -> None:
    """Originals, autoencoder and PCA reconstructions as three rows of `count` images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (("original", originals), ("autoencoder", autoencoder), ("PCA", pca))
    fig, axes = plt.subplots(3, count, figsize=(count * 1.1, 3.6))
    for r, (title, images) in enumerate(rows):
        for c in range(count):
            axis = axes[r, c]
            axis.imshow(
                np.clip(images[c].reshape(IMAGE_SIZE, IMAGE_SIZE), 0, 1),
                cmap="gray_r",
                vmin=0,
                vmax=1,
            )
            axis.set_xticks([])
            axis.set_yticks([])
        axes[r, 0].set_ylabel(title, fontsize=9)
    fig.tight_layout()
    with tf.io.gfile.GFile(path, "wb") as f:
        fig.savefig(f, format="png", dpi=80)
    plt.close(fig)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point: train the autoencoder; export it, its encoder, and PCA."""
    inputs = TrainerInputs.read(fn_args, FAMILY)
    hparams, config = inputs.hparams, inputs.options
    # (standardised inputs, raw pixel targets) of each split.
    train_x, train_pixels = inputs.arrays(fn_args.train_files, label_key=PIXELS_KEY)
    eval_x, eval_pixels = inputs.arrays(fn_args.eval_files, label_key=PIXELS_KEY)

    keras.utils.set_random_seed(0)
    with make_strategy().scope():
        autoencoder, encoder, _ = build_autoencoder(config)
        autoencoder.compile(optimizer=keras.optimizers.Adam(hparams.learning_rate), loss="mse")
    autoencoder.fit(
        train_x,
        train_pixels,
        batch_size=hparams.batch_size,
        epochs=hparams.epochs,
        validation_data=(eval_x, eval_pixels),
        shuffle=True,
        verbose=2,
        callbacks=[cosine_epoch_schedule(hparams.learning_rate, hparams.epochs)],
    )

    # The baseline of the claim: PCA with as many components as the code, on the same pixels.
    pca = fit_pca(train_pixels, config.code_size)
    ae_eval = autoencoder.predict(eval_x, verbose=0)
    pca_eval = pca.reconstruct(eval_pixels).numpy()
    claim = {
        "code_size": config.code_size,
        "autoencoder_eval_mse": reconstruction_mse(ae_eval, eval_pixels),
        "pca_eval_mse": reconstruction_mse(pca_eval, eval_pixels),
    }
    logging.info("reconstruction MSE on eval: %s", claim)

    warmup = inputs.warmup()
    export_autoencoder(
        autoencoder, encoder, inputs.transform_output, fn_args.serving_model_dir, warmup
    )
    export_encoder(
        encoder, inputs.transform_output, os.path.join(fn_args.model_run_dir, ENCODER_DIR), warmup
    )
    export_pca(pca, os.path.join(fn_args.model_run_dir, REFERENCE_MODEL_DIR), warmup)
    save_reconstruction_figure(
        os.path.join(fn_args.model_run_dir, FIGURE_FILE), eval_pixels, ae_eval, pca_eval
    )
    write_json(os.path.join(fn_args.model_run_dir, CLAIM_FILE), claim)
