"""How a picture of a digit becomes a 32×32 model input: the one definition, in TensorFlow ops.

The training digits fill their frame, bright ink on black; a user's photo or scan does not
(a digit somewhere on a page, dark on light). Framing, in order:
  1. stretch the grey levels to [0, 1];
  2. polarity: if the border is mostly bright, the ink is dark: invert (ink becomes 1);
  3. crop to the ink's bounding box (pixels above INK_LEVEL; a blank image stays whole);
  4. pad the shorter side with background to a centred square;
  5. resize to 32×32: area-averaging when shrinking (thin strokes survive), bilinear when
     enlarging (an 8×8 digit becomes smooth strokes, not 4×4 blocks).

`tfsp data prepare` frames every source with it (training and evaluation data), and every
exported image model has a `predict_image_bytes` signature that decodes and frames encoded
images in the graph (trainers/export.py), so any client, TF Serving's REST `{"b64": ...}`
included, gets the same framing as training did. Core TensorFlow ops only: TF Serving runs it.
"""

import numpy as np
import tensorflow as tf

from tfsp.core.features import IMAGE_SIZE

# A pixel is ink above this level, once stretched to [0, 1] with the ink bright.
INK_LEVEL = 0.25
# Mostly-bright border: dark ink on light paper.
BRIGHT_BORDER = 0.5


def frame_grey(image: tf.Tensor) -> tf.Tensor:
    """One grey image [h, w] (any range, any polarity) -> framed [32, 32] float32 in [0, 1]."""
    image = tf.cast(image, tf.float32)
    low, high = tf.reduce_min(image), tf.reduce_max(image)
    image = (image - low) / tf.maximum(high - low, 1e-6)
    border = tf.concat([image[0], image[-1], image[:, 0], image[:, -1]], axis=0)
    image = tf.cond(tf.reduce_mean(border) > BRIGHT_BORDER, lambda: 1.0 - image, lambda: image)
    ink = image > INK_LEVEL
    rows = tf.cast(tf.where(tf.reduce_any(ink, axis=1))[:, 0], tf.int32)
    cols = tf.cast(tf.where(tf.reduce_any(ink, axis=0))[:, 0], tf.int32)

    def ink_box() -> tf.Tensor:
        top, bottom = tf.reduce_min(rows), tf.reduce_max(rows) + 1
        left, right = tf.reduce_min(cols), tf.reduce_max(cols) + 1
        return image[top:bottom, left:right]

    cropped = tf.cond(tf.size(rows) > 0, ink_box, lambda: image)
    height, width = tf.shape(cropped)[0], tf.shape(cropped)[1]
    side = tf.maximum(height, width)
    pad_rows, pad_cols = side - height, side - width
    square = tf.pad(
        cropped,
        [[pad_rows // 2, pad_rows - pad_rows // 2], [pad_cols // 2, pad_cols - pad_cols // 2]],
    )
    size = [IMAGE_SIZE, IMAGE_SIZE]
    resized = tf.cond(
        side > IMAGE_SIZE,
        lambda: tf.image.resize(square[..., tf.newaxis], size, method="area"),
        lambda: tf.image.resize(square[..., tf.newaxis], size, method="bilinear"),
    )
    # Bilinear weights are convex, but float rounding can step just outside [0, 1].
    return tf.clip_by_value(resized[..., 0], 0.0, 1.0)


def decode_grey(encoded: tf.Tensor) -> tf.Tensor:
    """Encoded PNG/JPEG/GIF/BMP bytes (grey or colour, any size) -> grey [h, w] in [0, 1].

    A file that is not an image, or is truncated, fails in the graph with INVALID_ARGUMENT
    (TensorFlow's decoder names the problem); an animated GIF gives its first frame.
    """
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    grey = tf.image.rgb_to_grayscale(tf.image.convert_image_dtype(image, tf.float32))
    return grey[..., 0]


def frame_encoded(encoded_batch: tf.Tensor) -> tf.Tensor:
    """A batch of encoded images (string [n]) -> framed model input [n, 32, 32, 1]."""
    framed = tf.map_fn(
        lambda encoded: frame_grey(decode_grey(encoded)),
        encoded_batch,
        fn_output_signature=tf.TensorSpec([IMAGE_SIZE, IMAGE_SIZE], tf.float32),
    )
    return framed[..., tf.newaxis]


_frame_one = tf.function(frame_grey, input_signature=[tf.TensorSpec([None, None], tf.float32)])


def frame_arrays(images: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """Grey images ([n, h, w] or a list of [h, w], any sizes) -> framed [n, 32, 32] float32."""
    return np.stack([_frame_one(np.asarray(image, np.float32)).numpy() for image in images])
