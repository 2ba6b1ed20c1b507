"""Feature keys and shapes of the image data every family reads (one source of truth).

Each example is a tf.Example with:
  image: 1,024 floats, a 32×32 grey image in row-major order, 0.0 = background, 1.0 = ink;
  label: one int64 class id in [0, NUM_CLASSES).
"""

IMAGE_KEY = "image"
LABEL_KEY = "label"
IMAGE_SIZE = 32
IMAGE_PIXELS = IMAGE_SIZE * IMAGE_SIZE
NUM_CLASSES = 10
SPLITS = ("train", "eval", "test")
# Image files the data preparation and the features pull read.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
