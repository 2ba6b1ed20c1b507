"""The model families the pipelines know: one entry each, the single source of truth."""

from dataclasses import dataclass, field
from typing import Literal

from tfsp.errors import UserError
from tfsp.features import IMAGE_KEY, LABEL_KEY

# How the Evaluator picks the model a candidate is compared with:
#   last_blessed: the family's latest blessed model (regression guard; none on a first run);
#   reference:    a second model the Trainer trained on the same data and steps (the claim).
Baseline = Literal["last_blessed", "reference"]
Direction = Literal["higher", "lower"]


@dataclass(frozen=True)
class Family:
    """What the pipeline factory needs to know about one model family."""

    name: str
    run_fn: str  # dotted path of the Trainer entry point
    preprocessing_fn: str  # dotted path of the Transform function
    gate_metric: str  # a Keras metric class name TFMA computes on the eval split
    gate_lower_bound: float | None  # absolute floor the candidate must reach (None: no floor)
    default_epochs: int
    default_learning_rate: float
    default_batch_size: int
    custom_config: dict = field(default_factory=dict)
    # SavedModels the Trainer leaves in its model_run beside the main model, pushed with it
    # under their own names and the same version: (served name, model_run sub-folder).
    companions: tuple[tuple[str, str], ...] = ()
    # The gate: which metric direction is better, an optional absolute ceiling (for metrics
    # where lower is better), and what the candidate is compared with.
    gate_direction: Direction = "higher"
    gate_upper_bound: float | None = None
    baseline: Baseline = "last_blessed"
    # What the claim calls the two models (failure messages, the closing note); used with
    # baseline="reference".
    candidate_label: str = "candidate"
    reference_label: str = "last blessed model"
    # TFMA's keys: where the label and the prediction are found. A label the raw examples do
    # not hold is produced by the model's own signatures named in `label_signatures` (TFMA
    # calls them on the serialized examples before looking the label up).
    label_key: str = LABEL_KEY
    prediction_key: str = "scores"
    label_signatures: tuple[str, ...] = ()
    # The split the Evaluator gates on. Classifiers pick nothing on the test split, so it
    # stays held out for the figure `tfsp pipeline run` reports; the autoencoder's claim is
    # stated on the test split itself.
    evaluation_split: str = "eval"
    # Families whose pushed models this one reads (run first by `--family all`).
    depends_on: tuple[str, ...] = ()
    # A model_run sub-folder holding an encoder SavedModel: once pushed, the FeatureGen step
    # adds its codes to every split's examples (the Beam job of `tfsp features`).
    feature_encoder: str = ""

    def served_models(self) -> tuple[str, ...]:
        """Names of the models this family pushes: its own name, then its companions'."""
        return (self.name, *(name for name, _ in self.companions))


_CLASSIFIER = dict(
    preprocessing_fn="trainers.preprocessing.preprocessing_fn",
    gate_metric="SparseCategoricalAccuracy",
)

FAMILIES: dict[str, Family] = {
    "cnn": Family(
        name="cnn",
        run_fn="trainers.cnn.run_fn",
        gate_lower_bound=0.97,
        default_epochs=30,
        default_learning_rate=2e-3,
        default_batch_size=32,
        **_CLASSIFIER,
    ),
    # The served model is the LSTM classifier reading the image row by row; the notes'
    # long-range and exploding-gradient claims are an experiment (`tfsp experiment
    # rnn-claims`), not this gate.
    "rnn": Family(
        name="rnn",
        run_fn="trainers.rnn.run_fn",
        gate_lower_bound=0.95,
        default_epochs=30,
        default_learning_rate=2e-3,
        default_batch_size=32,
        **_CLASSIFIER,
    ),
    # The claim is the comparison: the BN variant must beat the plain one trained on the same
    # data and steps. The floor only rejects a run where neither learned anything.
    "batchnorm": Family(
        name="batchnorm",
        run_fn="trainers.batchnorm.run_fn",
        gate_lower_bound=0.5,
        default_epochs=15,
        default_learning_rate=1e-3,
        default_batch_size=32,
        baseline="reference",
        candidate_label="BN variant",
        reference_label="plain variant",
        **_CLASSIFIER,
    ),
    # A new label set (odd/even) over the same images: the label comes from the model's
    # `transformed_labels` signature, since the raw examples only hold the digit.
    "transfer": Family(
        name="transfer",
        run_fn="trainers.transfer.run_fn",
        gate_lower_bound=0.6,
        default_epochs=20,
        default_learning_rate=1e-3,
        default_batch_size=16,
        baseline="reference",
        candidate_label="transferred model",
        reference_label="from-scratch model",
        label_key="task_label",
        label_signatures=("transformed_labels",),
        depends_on=("cnn",),
        **_CLASSIFIER,
    ),
    # The notes' claim that an autoencoder compresses better than PCA: the Trainer also fits
    # PCA with as many components as the code, and the Evaluator blesses the autoencoder only
    # if its eval-split reconstruction MSE is lower. Trained without labels. The encoder alone
    # is pushed beside it (same version) for feature extraction.
    "autoencoder": Family(
        name="autoencoder",
        run_fn="trainers.autoencoder.run_fn",
        preprocessing_fn="trainers.autoencoder.preprocessing_fn",
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
        prediction_key="reconstruction",
        default_epochs=100,
        default_learning_rate=2e-3,
        default_batch_size=32,
        companions=(("autoencoder_encoder", "encoder"),),
        evaluation_split="test",
        feature_encoder="encoder",
    ),
}


def get_family(name: str) -> Family:
    """The registered family called `name`, or a UserError listing the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise UserError(f"unknown family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None


def served_model_names() -> list[str]:
    """Every model name any family pushes, in registry order (what models.config lists)."""
    return [model for family in FAMILIES.values() for model in family.served_models()]


def run_order(names: list[str] | None = None) -> list[str]:
    """`names` (default: every family) with each family after the families it depends on.

    Dependencies not in `names` are not added: running `transfer` alone uses whatever CNN
    is already pushed.
    """
    wanted = list(FAMILIES) if names is None else [get_family(n).name for n in names]
    ordered: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in ordered:
            return
        if name in path:
            raise ValueError(f"families depend on each other in a cycle: {path + (name,)}")
        for dependency in FAMILIES[name].depends_on:
            if dependency in wanted:
                visit(dependency, path + (name,))
        ordered.append(name)

    for name in wanted:
        visit(name, ())
    return ordered
