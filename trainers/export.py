"""The one way a classifier becomes a SavedModel that TFMA, TF Serving and our server read.

Signatures:
  serving_default(examples: string[batch]) -> scores: float[batch, C], classes: string[batch, C]
      Serialized tf.Example in, the shape TF Serving's Classify API and TFMA expect.
  predict_images(images: float[batch, 32, 32, 1]) -> probabilities: float[batch, C],
                                                   class_ids: int64[batch]
      Raw pixels in [0, 1] for clients that hold tensors, not tf.Examples.
Both run the Transform graph first, so clients always send raw features.
"""

import tensorflow as tf
import tensorflow_transform as tft

from tfsp.features import IMAGE_KEY, IMAGE_PIXELS, IMAGE_SIZE, LABEL_KEY

SERVING_DEFAULT = "serving_default"
PREDICT_IMAGES = "predict_images"


class _ClassifierServable(tf.Module):
    """Holds the model and the Transform layer so the SavedModel tracks both."""

    def __init__(self, model: tf.keras.Model, tf_transform_output: tft.TFTransformOutput) -> None:
        super().__init__()
        self.model = model
        self.tft_layer = tf_transform_output.transform_features_layer()
        raw_spec = tf_transform_output.raw_feature_spec()
        raw_spec.pop(LABEL_KEY)
        self._raw_spec = raw_spec
        num_classes = int(model.output_shape[-1])
        self._class_names = tf.constant([str(i) for i in range(num_classes)])

    def _probabilities(self, raw_features: dict[str, tf.Tensor]) -> tf.Tensor:
        transformed = self.tft_layer(raw_features)
        return self.model({IMAGE_KEY: transformed[IMAGE_KEY]}, training=False)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def classify_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(examples, self._raw_spec)
        scores = self._probabilities(parsed)
        classes = tf.tile(self._class_names[tf.newaxis, :], [tf.shape(scores)[0], 1])
        return {"scores": scores, "classes": classes}

    @tf.function(
        input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32, "images")]
    )
    def predict_images(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        flat = tf.reshape(images, [-1, IMAGE_PIXELS])
        probabilities = self._probabilities({IMAGE_KEY: flat})
        return {
            "probabilities": probabilities,
            "class_ids": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
        }


def export_classifier(
    model: tf.keras.Model, tf_transform_output: tft.TFTransformOutput, export_dir: str
) -> None:
    """Write `model` with the Transform graph as a SavedModel with the two signatures above."""
    servable = _ClassifierServable(model, tf_transform_output)
    tf.saved_model.save(
        servable,
        export_dir,
        signatures={
            SERVING_DEFAULT: servable.classify_examples,
            PREDICT_IMAGES: servable.predict_images,
        },
    )
