"""Compile a family's pipeline into a Kubeflow Pipelines v2 spec (KubeflowV2DagRunner).

The compiled pipeline runs every step in `image`; the Trainer asks for one NVIDIA GPU and
no other step asks for any. Epochs and learning rate are run-time parameters, so one
compiled spec serves many runs. Paths are as the image and cluster see them.
"""

import json
from pathlib import Path

from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx

from pipelines.factory import TRAINER, PipelineSpec, create_pipeline
from pipelines.families import get_family
from pipelines.layout import pipeline_name

# Where the Dockerfile installs the project, so the curated schema is at a known path.
IMAGE_SCHEMA_FILE = "/opt/tfsp/pipelines/schemas/digits.pbtxt"
DEFAULT_PIPELINE_ROOT = "/tfsp/pipelines"
DEFAULT_DATA_ROOT = "/tfsp/data/digits"
DEFAULT_SERVING_ROOT = "/models"
GPU_RESOURCE = "nvidia.com/gpu"

_ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec


def trainer_resources(gpus: int = 1) -> _ResourceSpec:
    """The Trainer's container resources: `gpus` NVIDIA GPUs."""
    return _ResourceSpec(accelerator=_ResourceSpec.AcceleratorConfig(type=GPU_RESOURCE, count=gpus))


def compile_pipeline(
    family: str,
    image: str,
    output_file: Path,
    *,
    pipeline_root: str = DEFAULT_PIPELINE_ROOT,
    data_root: str = DEFAULT_DATA_ROOT,
    serving_root: str = DEFAULT_SERVING_ROOT,
    schema_file: str = IMAGE_SCHEMA_FILE,
    trainer_gpus: int = 1,
) -> dict:
    """Write the KFP v2 spec of `family`'s pipeline to `output_file` and return it parsed."""
    spec_family = get_family(family)
    name = pipeline_name(family)
    defaults = {
        "epochs": spec_family.default_epochs,
        "learning_rate": spec_family.default_learning_rate,
    }
    spec = PipelineSpec(
        family=spec_family,
        pipeline_name=name,
        pipeline_root=pipeline_root,
        data_root=data_root,
        serving_root=serving_root,
        schema_file=schema_file,
        batch_size=spec_family.default_batch_size,
        epochs=tfx.dsl.experimental.RuntimeParameter(
            name="epochs", ptype=int, default=defaults["epochs"]
        ),
        learning_rate=tfx.dsl.experimental.RuntimeParameter(
            name="learning_rate", ptype=float, default=defaults["learning_rate"]
        ),
    )
    pipeline = create_pipeline(spec)
    for component in pipeline.components:
        if component.id == TRAINER and trainer_gpus > 0:
            component.with_platform_config(trainer_resources(trainer_gpus))
    output_file.parent.mkdir(parents=True, exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=str(output_file.parent),
        output_filename=output_file.name,
    )
    runner.run(pipeline, parameter_values=defaults)
    return json.loads(output_file.read_text())
