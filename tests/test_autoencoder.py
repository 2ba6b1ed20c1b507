"""AutoEncoder shapes, the shared encoder, and the PCA baseline it is measured against."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn.decomposition import PCA

from tfsp.core.errors import UserError
from tfsp.trainers.autoencoder.family import AutoEncoderConfig
from tfsp.trainers.autoencoder.model import (
    build_autoencoder,
    fit_pca,
    reconstruction_mse,
)


@pytest.mark.parametrize("kind", ["conv", "dense"])
@pytest.mark.parametrize("code_size", [8, 32])
def test_shapes(kind, code_size):
    autoencoder, encoder, decoder = build_autoencoder(
        AutoEncoderConfig(code_size=code_size, kind=kind)
    )
    x = tf.random.uniform([3, 1024])
    assert encoder(x).shape == (3, code_size)
    assert decoder(encoder(x)).shape == (3, 1024)
    assert autoencoder(x).shape == (3, 1024)


def test_autoencoder_is_the_decoder_of_the_encoder_with_shared_weights():
    autoencoder, encoder, decoder = build_autoencoder(AutoEncoderConfig(code_size=16))
    x = tf.random.uniform([4, 1024])
    np.testing.assert_allclose(autoencoder(x), decoder(encoder(x)), atol=1e-6)
    encoder.get_layer("code").kernel.assign_add(tf.ones_like(encoder.get_layer("code").kernel))
    np.testing.assert_allclose(autoencoder(x), decoder(encoder(x)), atol=1e-6)


def test_bad_options_are_refused():
    with pytest.raises(UserError, match="kind"):
        AutoEncoderConfig(kind="vae")
    with pytest.raises(UserError, match="code_size must be at least 1"):
        AutoEncoderConfig(code_size=0)
    with pytest.raises(UserError, match="code_size must be at most 1023"):
        AutoEncoderConfig(code_size=1024)


def test_pca_module_matches_scikit_learn():
    rng = np.random.default_rng(0)
    pixels = rng.random((200, 1024)).astype(np.float32)
    module = fit_pca(pixels, code_size=10)
    reference = PCA(n_components=10, random_state=0).fit(pixels)
    expected = reference.inverse_transform(reference.transform(pixels[:20]))
    np.testing.assert_allclose(module.reconstruct(pixels[:20]).numpy(), expected, atol=1e-4)
    assert module.encode(pixels[:20]).shape == (20, 10)
    assert reconstruction_mse(expected, pixels[:20]) == pytest.approx(
        float(np.mean((expected - pixels[:20]) ** 2))
    )
