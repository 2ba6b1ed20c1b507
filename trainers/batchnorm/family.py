"""The batch-normalization family's entry and options (the model is in model.py)."""

from dataclasses import dataclass

from tfsp.core.family import Family, Options, option
from tfsp.core.features import NUM_CLASSES

ACTIVATIONS = ("tanh", "relu")
INITS = ("normal", "glorot")


@dataclass(frozen=True)
class MLPConfig(Options):
    """The deep MLP both variants share."""

    # The notes' claim is about a deep network; 7 is the shallowest this family accepts.
    hidden_layers: int = option(8, "MLP hidden layers, at least 7", minimum=7)
    units: int = 64
    activation: str = option("tanh", "activation", choices=ACTIVATIONS)
    init: str = option(
        "normal", "weight init: N(0,1) as in the notes' experiment, or Glorot", choices=INITS
    )
    bn_momentum: float = 0.9  # moving statistics settle within our few hundred steps
    num_classes: int = NUM_CLASSES


# The claim is the comparison: the BN variant must beat the plain one trained on the same
# data and steps. The floor only rejects a run where neither learned anything.
FAMILY = Family(
    name="batchnorm",
    title="batch normalization",
    run_fn="tfsp.trainers.batchnorm.model.run_fn",
    options=MLPConfig,
    gate_lower_bound=0.5,
    default_epochs=15,
    default_learning_rate=1e-3,
    default_batch_size=32,
    baseline="reference",
    candidate_label="BN variant",
    reference_label="plain variant",
)
