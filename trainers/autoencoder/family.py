"""The AutoEncoder family's entry and options (the models are in model.py)."""

from dataclasses import dataclass

from tfsp.core.family import Family, Options, option
from tfsp.core.features import IMAGE_KEY, IMAGE_PIXELS
from tfsp.core.signatures import RECONSTRUCTION_KEY

KINDS = ("conv", "dense")
ENCODER_DIR = "encoder"  # under the Trainer's model_run: the encoder-only SavedModel


@dataclass(frozen=True)
class AutoEncoderConfig(Options):
    """Architecture options of the autoencoder."""

    code_size: int = option(32, "code size", minimum=1, maximum=IMAGE_PIXELS - 1)
    kind: str = option("conv", "encoder/decoder layers", choices=KINDS, flag="ae-kind")
    channels: tuple[int, int] = (16, 32)  # conv encoder; the decoder mirrors it
    hidden_units: tuple[int, int] = (256, 128)  # dense encoder; the decoder mirrors it


# The notes' claim that an autoencoder compresses better than PCA: the Trainer also fits PCA
# with as many components as the code, and the Evaluator blesses the autoencoder only if its
# test-split reconstruction MSE is lower. Trained without labels. The encoder alone is pushed
# beside it (same version) for feature extraction.
FAMILY = Family(
    name="autoencoder",
    title="autoencoder",
    run_fn="tfsp.trainers.autoencoder.model.run_fn",
    preprocessing_fn="tfsp.trainers.autoencoder.model.preprocessing_fn",
    options=AutoEncoderConfig,
    test_figure="reconstruction_mse",
    gate_metric="MeanSquaredError",
    gate_lower_bound=None,
    # Nothing learned: reconstructing every image as the mean image scores 0.071 on the
    # default data (handwritten and printed digits, 2026-12-05; 0.046 handwritten only).
    gate_upper_bound=0.02,
    gate_direction="lower",
    baseline="reference",
    candidate_label="autoencoder",
    reference_label="PCA",
    label_key=IMAGE_KEY,
    prediction_key=RECONSTRUCTION_KEY,
    default_epochs=100,
    default_learning_rate=2e-3,
    default_batch_size=32,
    companions=(("autoencoder_encoder", ENCODER_DIR),),
    evaluation_split="test",
    feature_encoder=ENCODER_DIR,
)
