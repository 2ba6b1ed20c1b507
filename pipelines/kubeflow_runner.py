"""Compile a family's pipeline for Kubeflow Pipelines v2 (KubeflowV2DagRunner).

The compiled pipeline runs every step in `image`; the Trainer asks for GPUs and no other
step asks for any. Epochs and learning rate are run-time parameters, so one compiled spec
serves many runs. Paths are as the image and cluster see them. One file per family and
target:
- `oss` → `<family>.yaml`, the package the open-source backend's API takes (kfp_submit.py
  submits it): the pipeline spec (schema 2.1, parameter defaults and an object-store
  pipeline root inside, every step on pipelines/kfp_entrypoint.py) and a Kubernetes platform
  spec that mounts the model store PVC at the serving root on the steps that push to it or
  read pushed models from it, and the work PVC (data) on every step when the data root is a
  local path. The TF Serving Deployment in k8s/ mounts the same model store, so a blessed
  push is picked up by TF Serving's own version polling;
- `vertex` → `<family>.json`, TFX's PipelineJob (displayName, labels, pipelineSpec,
  runtimeConfig) as Vertex AI Pipelines takes it, every path on Cloud Storage.
"""

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import yaml
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx

from tfsp.core.beam_defaults import IN_PROCESS_BEAM_ARGS
from tfsp.core.errors import UsageError
from tfsp.core.family import Family
from tfsp.pipelines.factory import (
    COMPANION_PUSHER,
    EXAMPLE_GEN,
    MODEL_STORE_READERS,
    PUSHER,
    TRAINER,
    PipelineSpec,
    create_pipeline,
)

# Where the image's virtual environment holds the installed package's schema (Dockerfile).
IMAGE_SITE_PACKAGES = "/opt/venv/lib/python3.11/site-packages"
IMAGE_SCHEMA_FILE = f"{IMAGE_SITE_PACKAGES}/tfsp/pipelines/schemas/digits.pbtxt"
# KFP standalone's own artifact store. The open-source backend parses the root as a bucket
# (objectstore.ParseBucketPathToConfig): gs://, s3:// or minio://, never a local path.
DEFAULT_PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"
OBJECT_STORE_SCHEMES = ("gs://", "s3://", "minio://")
DEFAULT_DATA_ROOT = "/tfsp/data/digits"
DEFAULT_SERVING_ROOT = "/models"
WORK_MOUNT = "/tfsp"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
    """Where a compiled pipeline's steps read and write, as the cluster sees them, and how
    many GPUs its Trainer asks for."""

    pipeline_root: str = DEFAULT_PIPELINE_ROOT  # open-source KFP: gs://, s3://, minio://
    data_root: str = DEFAULT_DATA_ROOT
    serving_root: str = DEFAULT_SERVING_ROOT
    schema_file: str = IMAGE_SCHEMA_FILE
    trainer_gpus: int = 1
    work_mount: str = WORK_MOUNT  # where every step mounts the work volume
    gate_lower_bound: float | None = None  # the Evaluator's floor; None: the family's
    # Beam inside each step's pod by default; bulk work names a distributed runner.
    beam_args: tuple[str, ...] = IN_PROCESS_BEAM_ARGS
    gpu_type: str = GPU_RESOURCE  # Kubernetes' resource name; Vertex AI names a GPU model
    # The family's options (tfsp.core.family), compiled into the Trainer's custom_config.
    custom_config: dict = dataclasses.field(default_factory=dict)


# The file `tfsp pipeline compile --target` writes: the open-source backend's package, or
# Vertex AI's PipelineJob.
TARGET_SUFFIXES = {"oss": ".yaml", "vertex": ".json"}
# Per target, what an option not given is, beyond ClusterOptions' own defaults. Vertex AI
# has no volumes, so its roots have no default that could work: they must be given (gs://).
_TARGET_DEFAULTS: dict[str, dict[str, str]] = {"vertex": {"gpu_type": "NVIDIA_TESLA_T4"}}


def _check_target(target: str) -> None:
    if target not in TARGET_SUFFIXES:
        raise UsageError(f"--target {target}: expected one of {', '.join(TARGET_SUFFIXES)}")


def cluster_options(target: str, **given: object) -> ClusterOptions:
    """The ClusterOptions of `target`: the options given (None: not given), else its defaults."""
    _check_target(target)
    chosen = {k: v for k, v in given.items() if v is not None}
    return ClusterOptions(**{**_TARGET_DEFAULTS.get(target, {}), **chosen})


# The PersistentVolumeClaims of k8s/base/storage.yaml. The model store is what TF Serving
# reads; the work volume holds the prepared data.
MODEL_STORE_PVC = "tfsp-models"
WORK_PVC = "tfsp-work"
# GPU node pools are usually tainted so that only pods asking for a GPU land there.
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}

TFX_ENTRYPOINT_COMMAND = [
    "python",
    "-m",
    "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor",
]
OPEN_SOURCE_ENTRYPOINT_COMMAND = ["python", "-m", "tfsp.pipelines.kfp_entrypoint"]

# The steps that push to the model store or read pushed models from it.
_MODEL_STORE_EXECUTORS = frozenset(
    f"{component}_executor" for component in (PUSHER, COMPANION_PUSHER, *MODEL_STORE_READERS)
)

_ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec


def trainer_resources(gpus: int = 1, gpu_type: str = GPU_RESOURCE) -> _ResourceSpec:
    """The Trainer's container resources: `gpus` GPUs of `gpu_type`."""
    return _ResourceSpec(accelerator=_ResourceSpec.AcceleratorConfig(type=gpu_type, count=gpus))


def _cluster_pipeline(family: Family, options: ClusterOptions) -> tuple[tfx.dsl.Pipeline, dict]:
    """The family's pipeline as the cluster runs it, and its run-time parameters' defaults.

    Nothing is pinned: a package is compiled once and run later, so BaselineModelGen and
    BaseModelGen read the model store when the run gets to them (and are never cached).
    """
    spec = PipelineSpec.for_family(
        family,
        run_time_parameters=True,
        pipeline_root=options.pipeline_root,
        data_root=options.data_root,
        serving_root=options.serving_root,
        schema_file=options.schema_file,
        gate_lower_bound=options.gate_lower_bound,
        beam_pipeline_args=list(options.beam_args),
        custom_config=options.custom_config,
    )
    pipeline = create_pipeline(spec)
    for component in pipeline.components:
        if component.id == TRAINER and options.trainer_gpus > 0:
            component.with_platform_config(
                trainer_resources(options.trainer_gpus, options.gpu_type)
            )
    return pipeline, spec.run_time_parameter_values()


def vertex_pipeline_job(family: Family, image: str, options: ClusterOptions) -> dict:
    """`family`'s pipeline as the PipelineJob Vertex AI Pipelines takes (TFX's own form).

    Vertex AI runs TFX's entrypoint as it is, but mounts no PersistentVolumes: the pipeline
    root, the data and the model store must all be Cloud Storage.
    """
    roots = {
        "--pipeline-root": options.pipeline_root,
        "--data-root": options.data_root,
        "--serving-root": options.serving_root,
    }
    for flag, path in roots.items():
        if not path.startswith("gs://"):
            raise UsageError(
                f"{flag} {path}: Vertex AI Pipelines reads and writes Cloud Storage only "
                "(no volumes); give a gs:// URI"
            )
    pipeline, defaults = _cluster_pipeline(family, options)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=".",  # unused: nothing is written (write_out=False)
    )
    return runner.run(pipeline, parameter_values=defaults, write_out=False)


def _is_local(path: str) -> bool:
    return "://" not in path


def _pvc_mount(claim: str, mount_path: str) -> dict:
    # pvcNameParameter is what current KFP backends read; `constant` is the older field that
    # kfp-kubernetes still writes beside it for backends from before the change.
    return {
        "mountPath": mount_path,
        "pvcNameParameter": {"runtimeValue": {"constant": claim}},
        "constant": claim,
    }


def kubernetes_platform_spec(
    pipeline_spec: Mapping,
    options: ClusterOptions,
    *,
    model_store_pvc: str = MODEL_STORE_PVC,
    work_pvc: str = WORK_PVC,
) -> dict:
    """The platform spec (kfp-kubernetes format) that wires the steps to the cluster's volumes.

    A local data root must live under the work mount (one shared volume, since every step is
    its own pod). A local serving root is the model store, mounted only on the steps that push
    to it or read pushed models from it. Object-store roots need no mount.
    """
    if not options.pipeline_root.startswith(OBJECT_STORE_SCHEMES):
        raise UsageError(
            f"the pipeline root {options.pipeline_root} is not an object-store URI: the "
            f"open-source Kubeflow Pipelines backend takes {', '.join(OBJECT_STORE_SCHEMES)} "
            f"(its default is {DEFAULT_PIPELINE_ROOT})"
        )
    data_root, work_mount = options.data_root, options.work_mount
    if _is_local(data_root) and not (data_root + "/").startswith(work_mount + "/"):
        raise UsageError(
            f"the data root {data_root} is a local path outside {work_mount}, the work volume "
            "every step mounts; use a path under it or a gs:// URI"
        )
    if not _is_local(data_root) and not data_root.startswith("gs://"):
        # ImportExampleGen reads the data root with tf.io.gfile, which has gs:// but not
        # s3:// or minio:// here; the launcher downloads artifacts, not a step's parameters.
        raise UsageError(f"the data root {data_root}: use a path under {work_mount} or gs://")
    needs_work_volume = _is_local(data_root)
    executors: dict[str, dict] = {}
    for label, executor in pipeline_spec["deploymentSpec"]["executors"].items():
        if "container" not in executor:
            continue  # importers run inside the KFP driver, not in a pod of ours
        config: dict = {}
        mounts = [_pvc_mount(work_pvc, work_mount)] if needs_work_volume else []
        if label in _MODEL_STORE_EXECUTORS and _is_local(options.serving_root):
            mounts.append(_pvc_mount(model_store_pvc, options.serving_root))
        if mounts:
            config["pvcMount"] = mounts
        if label == f"{TRAINER}_executor" and options.trainer_gpus > 0:
            config["tolerations"] = [dict(GPU_TOLERATION)]
        if config:
            executors[label] = config
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}


def kfp_package(
    family: Family, image: str, options: ClusterOptions | None = None
) -> tuple[dict, dict]:
    """`family`'s pipeline spec (schema 2.1) and Kubernetes platform spec, as KFP's API takes.

    KFP's run API takes a PipelineSpec, not TFX's PipelineJob wrapper, so the run-time
    parameters' defaults and the pipeline root move into the spec itself.
    """
    options = options or ClusterOptions()
    pipeline, defaults = _cluster_pipeline(family, options)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image, use_pipeline_spec_2_1=True
        ),
        output_dir=".",  # unused: nothing is written (write_out=False)
    )
    job = runner.run(pipeline, parameter_values=defaults, write_out=False)
    spec = job["pipelineSpec"]
    for name, definition in spec["root"]["inputDefinitions"]["parameters"].items():
        definition["defaultValue"] = defaults[name]
    spec["defaultPipelineRoot"] = options.pipeline_root
    platform = kubernetes_platform_spec(spec, options)
    for_open_source_backend(spec)
    return spec, platform


def for_open_source_backend(pipeline_spec: dict) -> None:
    """Adapt TFX's compiled spec, in place, to what the open-source KFP backend runs.

    Every step runs pipelines/kfp_entrypoint.py, which hands TFX's entrypoint the launcher's
    local paths and typed inputs. ImportExampleGen's pre-cache driver (its span, version and
    data fingerprint) is never run by that backend, so its cache key cannot see new data, and
    the model store readers' output is the store's state at run time: neither may be cached.
    """
    for executor in pipeline_spec["deploymentSpec"]["executors"].values():
        container = executor.get("container")
        if container is None:
            continue
        if container["command"] != TFX_ENTRYPOINT_COMMAND:
            raise ValueError(f"unexpected TFX step command {container['command']}")
        container["command"] = OPEN_SOURCE_ENTRYPOINT_COMMAND
        container.pop("lifecycle", None)
    for task_id in (EXAMPLE_GEN, *MODEL_STORE_READERS):
        task = pipeline_spec["root"]["dag"]["tasks"].get(task_id)
        if task is not None:
            task["cachingOptions"] = {"enableCache": False}


def write_kfp_package(path: Path, pipeline_spec: Mapping, platform_spec: Mapping) -> None:
    """Write a KFP package: the pipeline spec, then the platform spec, as two YAML documents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        out.write("# Kubeflow Pipelines package written by 'tfsp pipeline compile'.\n")
        yaml.safe_dump_all([dict(pipeline_spec), dict(platform_spec)], out, sort_keys=True)


def compile_family(
    family: Family, image: str, output_file: Path, options: ClusterOptions, target: str = "oss"
) -> Path:
    """Write `family`'s pipeline for `target` (see TARGET_SUFFIXES) to `output_file`."""
    _check_target(target)
    if output_file.suffix not in ({".yaml", ".yml"} if target == "oss" else {".json"}):
        raise UsageError(
            f"--output {output_file}: --target {target} writes a {TARGET_SUFFIXES[target]} file"
        )
    if target == "oss":
        pipeline_spec, platform_spec = kfp_package(family, image, options)
        write_kfp_package(output_file, pipeline_spec, platform_spec)
    else:
        job = vertex_pipeline_job(family, image, options)
        output_file.parent.mkdir(parents=True, exist_ok=True)
        output_file.write_text(json.dumps(job, indent=2, sort_keys=True) + "\n")
    return output_file
