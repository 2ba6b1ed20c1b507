"""Warmup requests that every export carries, in TF Serving's format.

TF Serving replays `<version>/assets.extra/tf_serving_warmup_requests` (a TFRecord file of
`tensorflow.serving.PredictionLog`) when it loads a version, before the version is
AVAILABLE, so the first client request does not pay for lazy initialisation; a request that
fails there fails the load. Our model server does the same, and the pipeline's ServingCheck
replays the same records over gRPC against the candidate.

The requests are built from a few real eval examples. The Trainer only sees Transform's
output, so the raw pixels are recovered from the transformed ones by inverting the
Transform graph, which is affine per pixel for every family (a z-score); the inversion is
checked by running the recovered pixels forward again.
"""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    input_pb2,
    predict_pb2,
    prediction_log_pb2,
)

from tfsp.core.features import IMAGE_KEY, IMAGE_PIXELS, IMAGE_SIZE, LABEL_KEY

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
WARMUP_EXAMPLE_COUNT = 4
# How far the recovered raw pixels may miss the transformed ones when run forward again.
_ROUND_TRIP_ATOL = 1e-4


@dataclasses.dataclass(frozen=True)
class WarmupData:
    """A few raw examples, as tensors and as the serialized tf.Examples clients send."""

    images: np.ndarray  # float32 [n, 32, 32, 1], raw pixels in [0, 1]
    labels: np.ndarray | None  # int64 [n], the digit (None when the examples carry none)

    def examples(self) -> list[tf.train.Example]:
        """The raw tf.Examples (`image`, and `label` when known), as clients build them."""
        flat = self.images.reshape(len(self.images), IMAGE_PIXELS)
        result = []
        for row, pixels in enumerate(flat):
            feature = {IMAGE_KEY: tf.train.Feature(float_list=tf.train.FloatList(value=pixels))}
            if self.labels is not None:
                feature[LABEL_KEY] = tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[int(self.labels[row])])
                )
            result.append(tf.train.Example(features=tf.train.Features(feature=feature)))
        return result

    def png_bytes(self) -> np.ndarray:
        """The images as 8-bit grey PNG files, as a string array (`predict_image_bytes`)."""
        array = np.empty(len(self.images), dtype=object)
        grey = np.round(np.clip(self.images, 0.0, 1.0) * 255).astype(np.uint8)
        array[:] = [tf.io.encode_png(image).numpy() for image in grey]
        return array

    def serialized(self) -> np.ndarray:
        """The examples serialized, as a string array (a Predict `inputs` tensor)."""
        array = np.empty(len(self.images), dtype=object)
        array[:] = [e.SerializeToString() for e in self.examples()]
        return array


class WarmupDataError(ValueError):
    """The eval split could not give raw examples for the warmup requests."""


def raw_pixels(transform_layer: keras.layers.Layer, transformed: np.ndarray) -> np.ndarray:
    """Raw pixels [n, 1024] whose transform is `transformed` ([n, 1024]), checked.

    Probes the Transform graph with all-zero and all-one images: for a per-pixel affine map
    t(x) = a·x + b these give b and a + b, so x = (t - b) / a. Pixels the map ignores (a = 0,
    a constant pixel in training) come back as 0. The result is run forward again and must
    match `transformed`, so a non-affine Transform fails here instead of producing wrong
    requests.
    """

    def forward(pixels: np.ndarray) -> np.ndarray:
        return transform_layer({IMAGE_KEY: tf.constant(pixels, tf.float32)})[IMAGE_KEY].numpy()

    zeros = forward(np.zeros((1, IMAGE_PIXELS), np.float32))
    ones = forward(np.ones((1, IMAGE_PIXELS), np.float32))
    scale = ones - zeros
    safe = np.where(np.abs(scale) > 1e-12, scale, 1.0)
    raw = np.where(np.abs(scale) > 1e-12, (transformed - zeros) / safe, 0.0)
    raw = np.clip(raw, 0.0, 1.0).astype(np.float32)
    if not np.allclose(forward(raw), transformed, atol=_ROUND_TRIP_ATOL):
        raise WarmupDataError(
            "the Transform graph is not affine per pixel; cannot recover raw eval images"
        )
    return raw


def warmup_data(
    transformed: dict[str, np.ndarray], transform_layer: keras.layers.Layer | None
) -> WarmupData:
    """Raw warmup examples from a batch of Transform's output (its `image`, maybe `label`)."""
    pixels = np.asarray(transformed[IMAGE_KEY], np.float32).reshape(-1, IMAGE_PIXELS)
    if not len(pixels):
        raise WarmupDataError("the eval split holds no examples for the warmup requests")
    if transform_layer is not None:
        pixels = raw_pixels(transform_layer, pixels)
    labels = transformed.get(LABEL_KEY)
    if labels is not None:
        labels = np.asarray(labels, np.int64).reshape(-1)
    return WarmupData(pixels.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1), labels)


def predict_log(signature: str, inputs: dict[str, np.ndarray]) -> prediction_log_pb2.PredictionLog:
    """A Predict request on `signature` with these input tensors."""
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.CopyFrom(request)
    return log


def classify_log(
    signature: str, examples: list[tf.train.Example]
) -> prediction_log_pb2.PredictionLog:
    """A Classify request on `signature` with these tf.Examples."""
    request = classification_pb2.ClassificationRequest(
        input=input_pb2.Input(example_list=input_pb2.ExampleList(examples=examples))
    )
    request.model_spec.signature_name = signature
    log = prediction_log_pb2.PredictionLog()
    log.classify_log.request.CopyFrom(request)
    return log


def write_warmup_file(export_dir: str, records: list[prediction_log_pb2.PredictionLog]) -> str:
    """Write `records` where TF Serving looks for them; returns the file's path."""
    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record.SerializeToString())
    return path
