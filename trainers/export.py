"""The one way a classifier becomes a SavedModel that TFMA, TF Serving and our server read.

Signatures:
  serving_default(inputs: string[batch]) -> scores: float[batch, C], classes: string[batch, C]
      Serialized tf.Example in, the shape TF Serving's Classify API and TFMA expect.
  predict_images(images: float[batch, 32, 32, 1]) -> probabilities: float[batch, C],
                                                   class_ids: int64[batch]
      Raw pixels in [0, 1] for clients that hold tensors, not tf.Examples.
  predict_image_bytes(image_bytes: string[batch]) -> the same outputs as predict_images
      Encoded images (PNG/JPEG/GIF/BMP, any size, grey or colour, either polarity), decoded
      and framed in the graph as `tfsp data prepare` frames training images
      (tfsp/data/framing.py); REST clients send {"b64": ...}.
All run the Transform graph first, so clients always send raw features. C is the number of
classes the model predicts; `classes` holds their names (default "0", "1", ...).

A model trained on a label derived from the digit (the transfer family's digit >= 5) also has
  transformed_labels(examples: string[batch]) -> task_label: int64[batch, 1]
      The label this model predicts, computed from the example's `label`; TFMA calls it (as a
      preprocessing function) to find the label the raw examples do not hold.

The model may take the image as 1,024 floats (what Transform emits) and reshape it inside
(LeNet to 32×32×1, the RNN to 32 rows × 32 features), so every family exports this one way.

Every export runs on TF Serving's load path (graph-mode loader, restore op, signatures by
tensor name in a Session): the servable module tracks the TensorFlow variables under the
Keras model itself, so the restore op fills the very variables the signatures read (a
Keras 3 model held by a tf.Module otherwise gets a second, never-restored set:
keras-team/keras#19274). Every export also carries TF Serving's warmup requests
(trainers/warmup.py): one per signature, on a few real eval examples.
"""

from collections.abc import Callable, Sequence

import keras
import tensorflow as tf
import tensorflow_transform as tft

from tfsp.core.features import IMAGE_KEY, IMAGE_PIXELS, IMAGE_SIZE, LABEL_KEY
from tfsp.core.signatures import (
    CODES_KEY,
    ENCODE_IMAGES,
    EXAMPLES_INPUT,
    IMAGE_BYTES_INPUT,
    IMAGES_INPUT,
    PREDICT_IMAGE_BYTES,
    PREDICT_IMAGES,
    PROBABILITIES_KEY,
    RECONSTRUCTION_KEY,
    SERVING_DEFAULT,
    TASK_LABEL_KEY,
    TRANSFORMED_LABELS,
)
from tfsp.data.framing import frame_encoded
from tfsp.trainers.warmup import WarmupData, classify_log, predict_log, write_warmup_file

LabelFn = Callable[[tf.Tensor], tf.Tensor]
_IMAGE_BYTES_SPEC = tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)


def _tensorflow_variables(*models: tf.Module) -> list[tf.Variable]:
    """The tf.Variables under Keras variables (or plain ones), for the module to track.

    Tracked by the module, they are what the SavedModel's restore op restores, and the
    signatures captured exactly these handles when they were traced.
    """
    found: list[tf.Variable] = []
    for model in models:
        for variable in model.variables:
            inner = variable if isinstance(variable, tf.Variable) else variable.value
            if not isinstance(inner, tf.Variable):
                raise TypeError(f"variable {variable.name} holds no tf.Variable: {type(inner)}")
            found.append(inner)
    return found


def _save(
    module: tf.Module,
    export_dir: str,
    signatures: dict[str, tf.types.experimental.GenericFunction],
    warmup: list,
) -> None:
    tf.saved_model.save(module, export_dir, signatures=signatures)
    write_warmup_file(export_dir, warmup)


class _ClassifierServable(tf.Module):
    """Holds the model and the Transform layer so the SavedModel tracks both."""

    def __init__(
        self,
        model: keras.Model,
        tf_transform_output: tft.TFTransformOutput,
        class_names: Sequence[str] | None = None,
        label_fn: LabelFn | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.model_variables = _tensorflow_variables(model)
        self.tft_layer = tf_transform_output.transform_features_layer()
        raw_spec = tf_transform_output.raw_feature_spec()
        self._label_spec = {LABEL_KEY: raw_spec.pop(LABEL_KEY)}
        self._raw_spec = raw_spec
        num_classes = int(model.output_shape[-1])
        names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for {num_classes} classes: {names}")
        self._class_names = tf.constant(names)
        self._label_fn = label_fn
        if label_fn is not None:
            # Only models with a derived label carry the function: TFMA calls any callable
            # named transformed_labels it finds on a model.
            self.transformed_labels = tf.function(
                self._transformed_labels,
                input_signature=[tf.TensorSpec([None], tf.string, name="examples")],
            )

    def _probabilities(self, raw_features: dict[str, tf.Tensor]) -> tf.Tensor:
        transformed = self.tft_layer(raw_features)
        return self.model({IMAGE_KEY: transformed[IMAGE_KEY]}, training=False)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def classify_examples(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(inputs, self._raw_spec)
        scores = self._probabilities(parsed)
        classes = tf.tile(self._class_names[tf.newaxis, :], [tf.shape(scores)[0], 1])
        return {"scores": scores, "classes": classes}

    @tf.function(
        input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32, IMAGES_INPUT)]
    )
    def predict_images(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        flat = tf.reshape(images, [-1, IMAGE_PIXELS])
        probabilities = self._probabilities({IMAGE_KEY: flat})
        return {
            PROBABILITIES_KEY: probabilities,
            "class_ids": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
        }

    @tf.function(input_signature=[_IMAGE_BYTES_SPEC])
    def predict_image_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.predict_images(frame_encoded(image_bytes))

    def _transformed_labels(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        labels = tf.io.parse_example(examples, self._label_spec)[LABEL_KEY]
        return {TASK_LABEL_KEY: tf.cast(self._label_fn(labels), tf.int64)}


def export_classifier(
    model: keras.Model,
    tf_transform_output: tft.TFTransformOutput,
    export_dir: str,
    *,
    class_names: Sequence[str] | None = None,
    label_fn: LabelFn | None = None,
    warmup: WarmupData,
) -> None:
    """Write `model` with the Transform graph as a SavedModel with the signatures above.

    `label_fn` maps the raw `label` (int64[batch, 1]) to the label the model predicts; when
    given, the SavedModel also has the `transformed_labels` signature. `warmup` holds the
    examples of the warmup requests (Classify on serving_default, Predict on the others).
    """
    servable = _ClassifierServable(model, tf_transform_output, class_names, label_fn)
    signatures = {
        SERVING_DEFAULT: servable.classify_examples,
        PREDICT_IMAGES: servable.predict_images,
        PREDICT_IMAGE_BYTES: servable.predict_image_bytes,
    }
    requests = [
        classify_log(SERVING_DEFAULT, warmup.examples()),
        predict_log(PREDICT_IMAGES, {IMAGES_INPUT: warmup.images}),
        predict_log(PREDICT_IMAGE_BYTES, {IMAGE_BYTES_INPUT: warmup.png_bytes()}),
    ]
    if label_fn is not None:
        signatures[TRANSFORMED_LABELS] = servable.transformed_labels
        requests.append(predict_log(TRANSFORMED_LABELS, {"examples": warmup.serialized()}))
    _save(servable, export_dir, signatures, requests)


class _ImageMapServable(tf.Module):
    """An image-to-tensor model (autoencoder, encoder, PCA) with the same three entry points.

    serving_default(examples: string[batch]) -> {output_key: float[batch, k]}
    predict_images(images: float[batch, 32, 32, 1]) -> {output_key: float[batch, k]}, or
        [batch, 32, 32, 1] when the output is itself an image (a reconstruction).
    predict_image_bytes(image_bytes: string[batch]) -> as predict_images, each encoded image
        file framed in the model first.
    With a Transform output the model sees transformed pixels; without, raw pixels.
    """

    def __init__(
        self,
        model: tf.Module,
        apply: Callable[[tf.Tensor], tf.Tensor],
        tf_transform_output: tft.TFTransformOutput | None,
        output_key: str,
        output_is_image: bool,
    ) -> None:
        super().__init__()
        self.model = model
        self.model_variables = _tensorflow_variables(model)
        self._apply_model = apply
        self.tft_layer = (
            tf_transform_output.transform_features_layer() if tf_transform_output else None
        )
        self._output_key = output_key
        self._output_is_image = output_is_image

    def _outputs(self, pixels: tf.Tensor) -> tf.Tensor:
        inputs = self.tft_layer({IMAGE_KEY: pixels})[IMAGE_KEY] if self.tft_layer else pixels
        return self._apply_model(inputs)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def serve_examples(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        spec = {IMAGE_KEY: tf.io.FixedLenFeature([IMAGE_PIXELS], tf.float32)}
        pixels = tf.io.parse_example(inputs, spec)[IMAGE_KEY]
        return {self._output_key: self._outputs(pixels)}

    @tf.function(
        input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32, IMAGES_INPUT)]
    )
    def predict_images(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = self._outputs(tf.reshape(images, [-1, IMAGE_PIXELS]))
        if self._output_is_image:
            outputs = tf.reshape(outputs, [-1, IMAGE_SIZE, IMAGE_SIZE, 1])
        return {self._output_key: outputs}

    @tf.function(input_signature=[_IMAGE_BYTES_SPEC])
    def predict_image_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.predict_images(frame_encoded(image_bytes))


def _save_image_map(
    servable: _ImageMapServable, export_dir: str, warmup: WarmupData, extra: dict | None = None
) -> None:
    signatures = {
        SERVING_DEFAULT: servable.serve_examples,
        PREDICT_IMAGES: servable.predict_images,
        PREDICT_IMAGE_BYTES: servable.predict_image_bytes,
        **(extra or {}),
    }
    # Predict everywhere: these outputs are not classes or scores, so Classify does not apply.
    requests = [
        predict_log(SERVING_DEFAULT, {EXAMPLES_INPUT: warmup.serialized()}),
        predict_log(PREDICT_IMAGE_BYTES, {IMAGE_BYTES_INPUT: warmup.png_bytes()}),
    ]
    requests += [
        predict_log(name, {IMAGES_INPUT: warmup.images})
        for name in signatures
        if name not in (SERVING_DEFAULT, PREDICT_IMAGE_BYTES)
    ]
    _save(servable, export_dir, signatures, requests)


def export_autoencoder(
    autoencoder: keras.Model,
    encoder: keras.Model,
    tf_transform_output: tft.TFTransformOutput,
    export_dir: str,
    warmup: WarmupData,
) -> None:
    """Image → reconstruction (`reconstruction`: [batch, 1024] / [batch, 32, 32, 1]).

    Also `encode_images` (images → `codes`), the code layer inside the same model: what the
    encoder-only export must agree with.
    """
    servable = _ImageMapServable(
        autoencoder,
        lambda x: autoencoder(x, training=False),
        tf_transform_output,
        RECONSTRUCTION_KEY,
        output_is_image=True,
    )
    servable.code_layer = _encoder_servable(encoder, tf_transform_output)
    _save_image_map(
        servable, export_dir, warmup, {ENCODE_IMAGES: servable.code_layer.predict_images}
    )


def _encoder_servable(
    encoder: keras.Model, tf_transform_output: tft.TFTransformOutput
) -> _ImageMapServable:
    # One definition for both exports of the code, so they cannot drift apart.
    return _ImageMapServable(
        encoder,
        lambda x: encoder(x, training=False),
        tf_transform_output,
        CODES_KEY,
        output_is_image=False,
    )


def export_encoder(
    encoder: keras.Model,
    tf_transform_output: tft.TFTransformOutput,
    export_dir: str,
    warmup: WarmupData,
) -> None:
    """Image → code (`codes`: [batch, code size]): what users pull features from."""
    _save_image_map(_encoder_servable(encoder, tf_transform_output), export_dir, warmup)


def export_pca(pca: tf.Module, export_dir: str, warmup: WarmupData) -> None:
    """PCA reconstruction of raw pixels, with the autoencoder's signatures (its baseline)."""
    servable = _ImageMapServable(
        pca, pca.reconstruct, None, RECONSTRUCTION_KEY, output_is_image=True
    )
    _save_image_map(servable, export_dir, warmup)
