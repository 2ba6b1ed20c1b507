"""The one factory that builds a family's TFX pipeline; it knows nothing of orchestrators.

ImportExampleGen → StatisticsGen → ImportSchemaGen (curated schema) → ExampleValidator →
AnomalyGate → Transform → Trainer (+ HyperparametersGen) → Evaluator (+ baseline) and
ServingCheck → Pusher (→ CompanionPusher, for families that push extra models with the same
version). The Pusher pushes only what the Evaluator blessed and the ServingCheck served the
way TF Serving serves it.

The baseline is per family (`Family.baseline`): the latest blessed model, which is the latest
version in the model store (BaselineModelGen, a PushedModelGen: no resolver, so every
orchestrator runs it the same way), or the reference model the Trainer trained alongside the
candidate (ReferenceModelGen turns it into a Model artifact), so the Evaluator itself gates
on the family's claim. A family built on another (transfer on the CNN) gets that model as the
Trainer's `base_model`, from BaseModelGen. Runners (local_runner.py, kubeflow_runner.py) own
paths, metadata and images; `PipelineSpec.for_family` gives both the family's defaults and
decides whether the versions those two read are pinned.
"""

import json
import os
from dataclasses import dataclass, field
from importlib import resources

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from tfsp.core.family import Baseline, Direction, Family
from tfsp.core.features import LABEL_KEY
from tfsp.pipelines.components import (
    AnomalyGate,
    CompanionPusher,
    Evaluator,
    FeatureGen,
    HyperparametersGen,
    PushedModelGen,
    ReferenceModelGen,
    ServingCheck,
)
from tfsp.pipelines.layout import pipeline_name
from tfsp.pipelines.model_store import pinned_versions

# Explicit component ids: runners, tests and the result reader find components by these.
EXAMPLE_GEN = "ImportExampleGen"
STATISTICS_GEN = "StatisticsGen"
SCHEMA_GEN = "ImportSchemaGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
ANOMALY_GATE = "AnomalyGate"
TRANSFORM = "Transform"
HYPERPARAMETERS_GEN = "HyperparametersGen"
TRAINER = "Trainer"
BASELINE_MODEL_GEN = "BaselineModelGen"
BASE_MODEL_GEN = "BaseModelGen"
REFERENCE_MODEL_GEN = "ReferenceModelGen"
EVALUATOR = "Evaluator"
SERVING_CHECK = "ServingCheck"
PUSHER = "Pusher"
COMPANION_PUSHER = "CompanionPusher"
FEATURE_GEN = "FeatureGen"

_COMMON_IDS = (
    EXAMPLE_GEN,
    STATISTICS_GEN,
    SCHEMA_GEN,
    EXAMPLE_VALIDATOR,
    ANOMALY_GATE,
    TRANSFORM,
    HYPERPARAMETERS_GEN,
)
_BASELINE_IDS: dict[str, str] = {
    "last_blessed": BASELINE_MODEL_GEN,
    "reference": REFERENCE_MODEL_GEN,
}
# Components whose output depends on the model store at run time, not only on their inputs:
# an orchestrator that cannot pin the version they read must not serve them from its cache.
MODEL_STORE_READERS = (BASELINE_MODEL_GEN, BASE_MODEL_GEN)


def component_ids(family: Family) -> tuple[str, ...]:
    """Every component of `family`'s pipeline (the Pipeline object orders them topologically)."""
    companion = (COMPANION_PUSHER,) if family.companions else ()
    features = (FEATURE_GEN,) if family.feature_encoder else ()
    base = (BASE_MODEL_GEN,) if family.depends_on else ()
    return (
        *_COMMON_IDS,
        *base,
        TRAINER,
        _BASELINE_IDS[family.baseline],
        EVALUATOR,
        SERVING_CHECK,
        PUSHER,
        *companion,
        *features,
    )


# TFMA's change check passes when (candidate - baseline) >= absolute for HIGHER_IS_BETTER and
# <= absolute for LOWER_IS_BETTER (tfma/evaluators/metrics_validator.py). Against the last
# blessed model a tie is fine; a claim needs a strict improvement. The epsilon sits far below
# one example's worth of any metric on our splits.
_EPSILON = 1e-10
_ALLOWED_CHANGE: dict[tuple[str, str], float] = {
    ("last_blessed", "higher"): -_EPSILON,
    ("last_blessed", "lower"): _EPSILON,
    ("reference", "higher"): _EPSILON,
    ("reference", "lower"): -_EPSILON,
}
_TFMA_DIRECTION = {
    "higher": tfma.MetricDirection.HIGHER_IS_BETTER,
    "lower": tfma.MetricDirection.LOWER_IS_BETTER,
}

Number = int | float | tfx.dsl.experimental.RuntimeParameter


def schema_path() -> str:
    """The curated schema file shipped inside the `pipelines` package."""
    return str(resources.files("tfsp.pipelines") / "schemas" / "digits.pbtxt")


@dataclass
class PipelineSpec:
    """Everything that varies between runs of one family's pipeline."""

    family: Family
    pipeline_name: str
    pipeline_root: str
    data_root: str
    serving_root: str
    epochs: Number
    learning_rate: Number
    batch_size: int
    schema_file: str = field(default_factory=lambda: schema_path())
    gate_lower_bound: float | None = None  # None: the family's own bound
    custom_config: dict = field(default_factory=dict)
    metadata_connection_config: object | None = None  # None: the orchestrator provides it
    beam_pipeline_args: list[str] = field(default_factory=list)
    enable_cache: bool = True
    serving_check_timeout_seconds: int = 300
    # Model store versions BaselineModelGen/BaseModelGen read, by model name; a model not
    # here is read at run time (its highest version then).
    pinned_versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_family(
        cls,
        family: Family,
        *,
        epochs: int | None = None,
        learning_rate: float | None = None,
        batch_size: int | None = None,
        run_time_parameters: bool = False,
        pin_versions: bool = False,
        **given: object,
    ) -> "PipelineSpec":
        """A run of `family` as every runner builds it; the one place training defaults and
        version pinning are decided.

        Training values not given are the family's defaults. `run_time_parameters` makes
        epochs and learning_rate run-time parameters (Kubeflow) with those values as their
        defaults. `pin_versions` reads the model store now and pins what BaselineModelGen and
        BaseModelGen will read (`pinned_versions`; UserError if a base is missing): right
        for a run that starts now (local), wrong for a package compiled once and run later,
        whose readers look at run time instead. `given` are the other fields.
        """
        epochs = family.default_epochs if epochs is None else epochs
        learning_rate = family.default_learning_rate if learning_rate is None else learning_rate
        if run_time_parameters:
            epochs = tfx.dsl.experimental.RuntimeParameter(name="epochs", ptype=int, default=epochs)
            learning_rate = tfx.dsl.experimental.RuntimeParameter(
                name="learning_rate", ptype=float, default=learning_rate
            )
        serving_root = str(given["serving_root"])
        return cls(
            family=family,
            pipeline_name=pipeline_name(family.name),
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=family.default_batch_size if batch_size is None else batch_size,
            pinned_versions=pinned_versions(family, serving_root) if pin_versions else {},
            **given,  # type: ignore[arg-type]
        )

    def run_time_parameter_values(self) -> dict[str, Number]:
        """The run-time parameters' defaults, by name (empty for a local run)."""
        return {
            value.name: value.default
            for value in (self.epochs, self.learning_rate)
            if isinstance(value, tfx.dsl.experimental.RuntimeParameter)
        }


def eval_config(
    metric: str,
    lower_bound: float | None,
    *,
    upper_bound: float | None = None,
    direction: Direction = "higher",
    baseline: Baseline = "last_blessed",
    label_key: str = LABEL_KEY,
    prediction_key: str = "scores",
    label_signatures: tuple[str, ...] = (),
) -> tfma.EvalConfig:
    """Bless a candidate within the absolute bounds that also passes the baseline check.

    Against the last blessed model the candidate may tie but not be worse; against a reference
    model (the claim) it must be strictly better, in `direction`.
    """
    bounds = {}
    if lower_bound is not None:
        bounds["lower_bound"] = {"value": lower_bound}
    if upper_bound is not None:
        bounds["upper_bound"] = {"value": upper_bound}
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(**bounds),
        change_threshold=tfma.GenericChangeThreshold(
            direction=_TFMA_DIRECTION[direction],
            absolute={"value": _ALLOWED_CHANGE[(baseline, direction)]},
        ),
    )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                label_key=label_key,
                prediction_key=prediction_key,
                preprocessing_function_names=list(label_signatures),
            )
        ],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    tfma.MetricConfig(class_name="ExampleCount"),
                    tfma.MetricConfig(class_name=metric, threshold=threshold),
                ]
            )
        ],
    )


def family_eval_config(family: Family, lower_bound: float | None = None) -> tfma.EvalConfig:
    """`family`'s gate; `lower_bound` (if given) replaces the floor of a higher-is-better
    metric (accuracy). A lower-is-better metric (the autoencoder's MSE) keeps its own bounds:
    one `--min-accuracy` for `--family all` must not become a floor on an error."""
    if lower_bound is None or family.gate_direction != "higher":
        lower_bound = family.gate_lower_bound
    return eval_config(
        family.gate_metric,
        lower_bound,
        upper_bound=family.gate_upper_bound,
        direction=family.gate_direction,
        baseline=family.baseline,
        label_key=family.label_key,
        prediction_key=family.prediction_key,
        label_signatures=family.label_signatures,
    )


def trainer_config(spec: PipelineSpec) -> dict:
    """The Trainer's custom_config: the family's, then the run's."""
    return {**spec.family.custom_config, **spec.custom_config}


def pushed_model_gen(spec: PipelineSpec, model_name: str, *, required: bool) -> PushedModelGen:
    """A PushedModelGen reading `model_name` from the spec's model store."""
    return PushedModelGen(
        serving_root=spec.serving_root,
        model_name=model_name,
        version=spec.pinned_versions.get(model_name, ""),
        required=int(required),
    )


def create_pipeline(spec: PipelineSpec) -> tfx.dsl.Pipeline:
    """Build the family's pipeline from `spec`: data, training, then the gates and the push."""
    data = _data_components(spec)
    training = _training_components(spec, data)
    release = _release_components(spec, data, training)
    return tfx.dsl.Pipeline(
        pipeline_name=spec.pipeline_name,
        pipeline_root=spec.pipeline_root,
        components=[*data.values(), *training.values(), *release.values()],
        enable_cache=spec.enable_cache,
        metadata_connection_config=spec.metadata_connection_config,
        beam_pipeline_args=spec.beam_pipeline_args,
    )


# Each stage returns its components by id, in the order they run.
Stage = dict[str, object]


def _data_components(spec: PipelineSpec) -> Stage:
    """Import the splits, validate them against the curated schema (the AnomalyGate stops a
    run on anomalies), and Transform them."""
    example_gen = tfx.components.ImportExampleGen(
        input_base=spec.data_root,
        input_config=tfx.proto.Input(
            splits=[
                tfx.proto.Input.Split(name=split, pattern=f"{split}/*")
                for split in ("train", "eval", "test")
            ]
        ),
    ).with_id(EXAMPLE_GEN)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"]).with_id(
        STATISTICS_GEN
    )
    schema_gen = tfx.components.ImportSchemaGen(schema_file=spec.schema_file).with_id(SCHEMA_GEN)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    ).with_id(EXAMPLE_VALIDATOR)
    anomaly_gate = AnomalyGate(anomalies=example_validator.outputs["anomalies"]).with_id(
        ANOMALY_GATE
    )
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=spec.family.preprocessing_fn,
        splits_config=tfx.proto.SplitsConfig(analyze=["train"], transform=["train", "eval"]),
    ).with_id(TRANSFORM)
    transform.add_upstream_node(anomaly_gate)  # no training on data that failed validation
    stage = (example_gen, statistics_gen, schema_gen, example_validator, anomaly_gate, transform)
    return {component.id: component for component in stage}


def _training_components(spec: PipelineSpec, data: Stage) -> Stage:
    """The hyper-parameters, the base model a family builds on (if any), and the Trainer."""
    family = spec.family
    hyperparameters = HyperparametersGen(
        epochs=spec.epochs, learning_rate=spec.learning_rate, batch_size=spec.batch_size
    ).with_id(HYPERPARAMETERS_GEN)
    stage: Stage = {HYPERPARAMETERS_GEN: hyperparameters}
    if family.depends_on:
        (base_name,) = family.depends_on  # the Trainer takes one base model
        stage[BASE_MODEL_GEN] = pushed_model_gen(spec, base_name, required=True).with_id(
            BASE_MODEL_GEN
        )
    transform, schema = data[TRANSFORM], data[SCHEMA_GEN].outputs["schema"]
    stage[TRAINER] = tfx.components.Trainer(
        run_fn=family.run_fn,
        base_model=stage[BASE_MODEL_GEN].outputs["model"] if BASE_MODEL_GEN in stage else None,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema,
        hyperparameters=hyperparameters.outputs["hyperparameters"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=trainer_config(spec),
    ).with_id(TRAINER)
    return stage


def _release_components(spec: PipelineSpec, data: Stage, training: Stage) -> Stage:
    """The baseline, the Evaluator's gate, the ServingCheck, the Pusher, and the family's
    companion pushes and feature generation."""
    family, trainer = spec.family, training[TRAINER]
    examples = data[EXAMPLE_GEN].outputs["examples"]
    if family.baseline == "reference":
        baseline = ReferenceModelGen(model_run=trainer.outputs["model_run"]).with_id(
            REFERENCE_MODEL_GEN
        )
        baseline_model = baseline.outputs["reference"]
    else:
        baseline = pushed_model_gen(spec, family.name, required=False).with_id(BASELINE_MODEL_GEN)
        baseline_model = baseline.outputs["model"]
    evaluator = Evaluator(
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=baseline_model,
        eval_config=family_eval_config(family, spec.gate_lower_bound),
        example_splits=[family.evaluation_split],
    ).with_id(EVALUATOR)
    companions = json.dumps([list(c) for c in family.companions])
    serving_check = ServingCheck(
        model=trainer.outputs["model"],
        model_run=trainer.outputs["model_run"],
        model_name=family.name,
        companions=companions,
        timeout_seconds=spec.serving_check_timeout_seconds,
    ).with_id(SERVING_CHECK)
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=serving_check.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=os.path.join(spec.serving_root, family.name)
            )
        ),
    ).with_id(PUSHER)
    stage: Stage = {c.id: c for c in (baseline, evaluator, serving_check, pusher)}
    pushed = pusher.outputs["pushed_model"]
    if family.companions:
        stage[COMPANION_PUSHER] = CompanionPusher(
            pushed_model=pushed,
            model_run=trainer.outputs["model_run"],
            serving_root=spec.serving_root,
            companions=companions,
        ).with_id(COMPANION_PUSHER)
    if family.feature_encoder:
        stage[FEATURE_GEN] = FeatureGen(
            examples=examples,
            pushed_model=pushed,
            model_run=trainer.outputs["model_run"],
            encoder=family.feature_encoder,
        ).with_id(FEATURE_GEN)
    return stage
