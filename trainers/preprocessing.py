"""The tf.Transform preprocessing shared by every image family.

Pixels are standardised with the mean and variance of the whole training split (a full-pass
statistic, which is what Transform is for); the same graph is embedded in every exported
model, so serving applies exactly the training-time scaling.
"""

import tensorflow as tf
import tensorflow_transform as tft

from tfsp.core.features import IMAGE_KEY, LABEL_KEY


def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Standardise the image with train-split statistics; pass the label through."""
    return {
        IMAGE_KEY: tft.scale_to_z_score(inputs[IMAGE_KEY]),
        LABEL_KEY: inputs[LABEL_KEY],
    }
