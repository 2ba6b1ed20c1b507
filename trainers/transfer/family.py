"""The transfer-learning family's entry and options (the models are in model.py)."""

from dataclasses import dataclass

from tfsp.core.family import Family, Options, option
from tfsp.core.signatures import TASK_LABEL_KEY, TRANSFORMED_LABELS


@dataclass(frozen=True)
class TransferConfig(Options):
    """How much labelled data, and whether to fine-tune the base after training the head."""

    examples_per_class: int = option(50, "labelled examples per class", minimum=1)
    fine_tune_epochs: int = option(
        0, "then unfreeze the base for N epochs at a 10x smaller rate", minimum=0
    )
    seed: int = option(
        0,
        "seed of the small labelled set's draw and of both models' initialisation",
        minimum=0,
        flag="transfer-seed",
    )


# A new label set (is the digit 5-9?) over the same images: the label comes from the model's
# `transformed_labels` signature, since the raw examples only hold the digit. The claim is
# the comparison with a from-scratch model trained on the same examples and steps.
FAMILY = Family(
    name="transfer",
    title="transfer learning",
    run_fn="tfsp.trainers.transfer.model.run_fn",
    options=TransferConfig,
    gate_lower_bound=0.6,
    default_epochs=20,
    default_learning_rate=1e-3,
    default_batch_size=16,
    baseline="reference",
    candidate_label="transferred model",
    reference_label="from-scratch model",
    label_key=TASK_LABEL_KEY,
    label_signatures=(TRANSFORMED_LABELS,),
    depends_on=("cnn",),
)
