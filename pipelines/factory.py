"""The one factory that builds a family's TFX pipeline; it knows nothing of orchestrators.

ImportExampleGen → StatisticsGen → ImportSchemaGen (curated schema) → ExampleValidator →
AnomalyGate → Transform → Trainer (+ HyperparametersGen) → Evaluator (+ baseline resolver)
→ Pusher. Runners (local_runner.py, kubeflow_runner.py) own paths, metadata and images.
"""

import os
from dataclasses import dataclass, field
from importlib import resources

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from pipelines.components import AnomalyGate, HyperparametersGen
from pipelines.families import Family
from tfsp.features import LABEL_KEY

# Explicit component ids: runners, tests and the result reader find components by these.
EXAMPLE_GEN = "ImportExampleGen"
STATISTICS_GEN = "StatisticsGen"
SCHEMA_GEN = "ImportSchemaGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
ANOMALY_GATE = "AnomalyGate"
TRANSFORM = "Transform"
HYPERPARAMETERS_GEN = "HyperparametersGen"
TRAINER = "Trainer"
BASELINE_RESOLVER = "LatestBlessedModelResolver"
EVALUATOR = "Evaluator"
PUSHER = "Pusher"

# Every component of a family pipeline (the Pipeline object orders them topologically).
COMPONENT_IDS = (
    EXAMPLE_GEN,
    STATISTICS_GEN,
    SCHEMA_GEN,
    EXAMPLE_VALIDATOR,
    ANOMALY_GATE,
    TRANSFORM,
    HYPERPARAMETERS_GEN,
    TRAINER,
    BASELINE_RESOLVER,
    EVALUATOR,
    PUSHER,
)

# A candidate may tie the baseline but not fall below it.
_NOT_WORSE_THAN_BASELINE = -1e-10

Number = int | float | tfx.dsl.experimental.RuntimeParameter


def schema_path() -> str:
    """The curated schema file shipped inside the `pipelines` package."""
    return str(resources.files("pipelines") / "schemas" / "digits.pbtxt")


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


def eval_config(metric: str, lower_bound: float) -> tfma.EvalConfig:
    """Bless a candidate that reaches `lower_bound` and is not worse than the last blessed."""
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": lower_bound}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": _NOT_WORSE_THAN_BASELINE},
        ),
    )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default", label_key=LABEL_KEY, prediction_key="scores"
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


def create_pipeline(spec: PipelineSpec) -> tfx.dsl.Pipeline:
    """Build the family's pipeline from `spec`."""
    family = spec.family
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
        preprocessing_fn=family.preprocessing_fn,
        splits_config=tfx.proto.SplitsConfig(analyze=["train"], transform=["train", "eval"]),
    ).with_id(TRANSFORM)
    transform.add_upstream_node(anomaly_gate)  # no training on data that failed validation
    hyperparameters = HyperparametersGen(
        epochs=spec.epochs, learning_rate=spec.learning_rate, batch_size=spec.batch_size
    ).with_id(HYPERPARAMETERS_GEN)
    trainer = tfx.components.Trainer(
        run_fn=family.run_fn,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        hyperparameters=hyperparameters.outputs["hyperparameters"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config={**family.custom_config, **spec.custom_config},
    ).with_id(TRAINER)
    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(BASELINE_RESOLVER)
    bound = family.gate_lower_bound if spec.gate_lower_bound is None else spec.gate_lower_bound
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=eval_config(family.gate_metric, bound),
        example_splits=["eval"],
    ).with_id(EVALUATOR)
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=os.path.join(spec.serving_root, family.name)
            )
        ),
    ).with_id(PUSHER)
    return tfx.dsl.Pipeline(
        pipeline_name=spec.pipeline_name,
        pipeline_root=spec.pipeline_root,
        components=[
            example_gen,
            statistics_gen,
            schema_gen,
            example_validator,
            anomaly_gate,
            transform,
            hyperparameters,
            trainer,
            baseline,
            evaluator,
            pusher,
        ],
        enable_cache=spec.enable_cache,
        metadata_connection_config=spec.metadata_connection_config,
        beam_pipeline_args=spec.beam_pipeline_args,
    )
