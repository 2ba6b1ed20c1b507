"""What a model family is, for everything that is not its model code (no TensorFlow import).

A family is one package under trainers/ (trainers/cnn/, trainers/rnn/, ...):
  family.py  its options dataclass and FAMILY, the `Family` entry below: entry points, option
             class, training defaults, gate, test-split figure, served models;
  model.py   the TensorFlow side: model building and the TFX Trainer's `run_fn`.
trainers/registry.py lists every FAMILY. The pipeline factory, the runners, the CLI (whose
family flags are built from the options dataclasses) and the main job read only the entry.

Options are a frozen dataclass deriving from `Options`. Fields declared with `option(...)`
become CLI flags of `tfsp pipeline run`, `tfsp run` and `tfsp pipeline compile` (help,
choices and bounds from the declaration); other fields are settable through the Trainer's
custom_config only. Constructing the options checks the same choices and bounds, so a value
the CLI refuses is refused in the Trainer too (`options_from_config`), with the same words.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from tfsp.core.errors import UserError
from tfsp.core.features import LABEL_KEY
from tfsp.core.signatures import PREDICT_IMAGES

# How the Evaluator picks the model a candidate is compared with:
#   last_blessed: the family's latest blessed model (regression guard; none on a first run);
#   reference:    a second model the Trainer trained on the same data and steps (the claim).
Baseline = Literal["last_blessed", "reference"]
Direction = Literal["higher", "lower"]
# The figure `tfsp pipeline run` reports on the held-out test split.
TestFigure = Literal["accuracy", "reconstruction_mse"]


def option(
    default: Any,
    help: str,
    *,
    choices: tuple | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    flag: str | None = None,
) -> Any:
    """A dataclass field that is also a CLI flag (`--<flag>`, default: the field's name with
    dashes); `choices`, `minimum` and `maximum` bound it on the CLI and in the Trainer."""
    declared = dict(help=help, choices=choices, minimum=minimum, maximum=maximum, flag=flag)
    return field(default=default, metadata=declared)


def flag_fields(options: type) -> list[dataclasses.Field]:
    """The fields of an options dataclass declared with `option(...)` (the CLI flags)."""
    return [f for f in dataclasses.fields(options) if "help" in f.metadata]


def flag_name(options_field: dataclasses.Field) -> str:
    """`--name` of an option's CLI flag."""
    return "--" + (options_field.metadata.get("flag") or options_field.name.replace("_", "-"))


def _check_option(options_field: dataclasses.Field, value: object) -> None:
    """UserError if `value` breaks the option's declared choices or bounds."""
    meta, name = options_field.metadata, options_field.name
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise UserError(f"option {name} must be one of {choices}, got {value!r}")
    low, high = meta.get("minimum"), meta.get("maximum")
    if (low is not None or high is not None) and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        raise UserError(f"option {name} must be a number, got {value!r}")
    if low is not None and value < low:
        raise UserError(f"option {name} must be at least {low}, got {value!r}")
    if high is not None and value > high:
        raise UserError(f"option {name} must be at most {high}, got {value!r}")


class Options:
    """Base of a family's options dataclass: constructing one checks every option's declared
    choices and bounds, then `validate()` (override it for rules across options), so no model
    is ever built from options the CLI would refuse."""

    def __post_init__(self) -> None:
        for options_field in flag_fields(type(self)):
            _check_option(options_field, getattr(self, options_field.name))
        self.validate()

    def validate(self) -> None:
        """Rules across options; UserError with a one-line reason (none by default)."""


@dataclass(frozen=True)
class Family:
    """One model family: what the pipeline factory, the runners, the CLI and the main job need.

    Entry points are dotted paths, the way TFX's Trainer and Transform load them (in this
    process locally, in the step's container on Kubeflow).
    """

    name: str
    run_fn: str  # the Trainer's entry point
    gate_lower_bound: float | None  # absolute floor the candidate must reach (None: no floor)
    default_epochs: int
    default_learning_rate: float
    default_batch_size: int
    # The Transform function; by default the pixel standardisation the classifiers share.
    preprocessing_fn: str = "tfsp.trainers.preprocessing.preprocessing_fn"
    # A Keras metric class name TFMA computes on `evaluation_split` (default: a classifier's).
    gate_metric: str = "SparseCategoricalAccuracy"
    # The options dataclass; its values reach the Trainer under custom_config[name].
    options: type | None = None
    title: str = ""  # the heading of the family's flags in --help
    test_figure: TestFigure = "accuracy"
    # Every model the family serves answers this signature with an `images` input
    # [N, 32, 32, 1] (float, ink bright); the main job sends one Predict to each.
    check_signature: str = PREDICT_IMAGES
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

    def features_model(self) -> str | None:
        """The served name of the family's encoder (`feature_encoder`), if it has one."""
        for name, folder in self.companions:
            if folder == self.feature_encoder:
                return name
        return None


def options_from_config(family: Family, custom_config: dict | None) -> Any:
    """The family's options from the Trainer's custom_config[family.name]: absent keys keep
    their defaults, lists become tuples where the default is a tuple, and unknown keys or
    values the options class refuses (see `Options`) raise UserError naming the family."""
    if family.options is None:
        return None
    given = dict((custom_config or {}).get(family.name, {}))
    fields = {f.name: f for f in dataclasses.fields(family.options)}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise UserError(
            f"unknown {family.name} option(s) {', '.join(unknown)}; known: {', '.join(fields)}"
        )
    for name, value in given.items():
        if isinstance(fields[name].default, tuple) and isinstance(value, list):
            given[name] = tuple(value)
    try:
        return family.options(**given)
    except UserError as exc:
        raise UserError(f"{family.name}: {exc}") from None
