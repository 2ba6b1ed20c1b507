"""Names our SavedModels' signatures, inputs and outputs carry, which clients call them by.

trainers/export.py writes them; the CLI, the features pull, the pipeline's checks and the
main job call them. TF Serving's own names (serving_default, Classify's `inputs`) are here
because our exports use them too.
"""

SERVING_DEFAULT = "serving_default"
# Classify and Regress feed serialized tf.Examples to this input (kClassifyInputs in TF
# Serving's classifier.cc); a Classify call on a string input of another name is refused.
EXAMPLES_INPUT = "inputs"

# Decoded images: float [N, 32, 32, 1], ink bright (every family's models answer it).
PREDICT_IMAGES = "predict_images"
IMAGES_INPUT = "images"
# Encoded image files (PNG/JPEG/...) as they are: the model decodes and frames them.
PREDICT_IMAGE_BYTES = "predict_image_bytes"
IMAGE_BYTES_INPUT = "image_bytes"

# A classifier's answer on predict_images: one probability per class (with `class_ids`).
PROBABILITIES_KEY = "probabilities"

# The transfer family's label, derived from the digit by the model's own signature.
TRANSFORMED_LABELS = "transformed_labels"
TASK_LABEL_KEY = "task_label"

# The autoencoder's outputs; the encoder's `codes` are the features users pull.
RECONSTRUCTION_KEY = "reconstruction"
CODES_KEY = "codes"
ENCODE_IMAGES = "encode_images"
