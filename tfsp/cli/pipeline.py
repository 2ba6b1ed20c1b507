"""`tfsp pipeline run | compile | submit`: a family's TFX pipeline, locally or for Kubeflow."""

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tfsp.cli.common import (
    TrainingRequest,
    add_beam_flag,
    add_family_flag,
    add_family_flags,
    add_gate_flag,
    add_home,
    add_training_flags,
    add_verbose,
    check_options_apply,
    command,
    custom_config,
    family_names,
    training_request,
)
from tfsp.core import argtypes
from tfsp.core.errors import UsageError
from tfsp.core.family import Family

if TYPE_CHECKING:  # imports TensorFlow; the handlers import it only when they run
    from tfsp.pipelines.results import RunResult

STOPPED = "error: stopped at family {}: its gate failed (see above)"


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the `pipeline` group."""
    group = commands.add_parser("pipeline", help="run or compile a family's TFX pipeline")
    pipeline_commands = group.add_subparsers(
        dest="pipeline_command", required=True, metavar="COMMAND"
    )
    _add_run(pipeline_commands)
    _add_compile(pipeline_commands)
    _add_submit(pipeline_commands)


def _add_run(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "run",
        help="run a family's pipeline locally (LocalDagRunner, SQLite metadata)",
        description="ImportExampleGen → StatisticsGen → ImportSchemaGen → ExampleValidator → "
        "AnomalyGate → Transform → Trainer → Evaluator (against the last pushed model, from "
        "BaselineModelGen, or the family's reference model) → ServingCheck → Pusher. Exits 1 "
        "if the model is not blessed (nothing is pushed).",
    )
    add_family_flag(
        parser, f"model family ({family_names()}), or 'all' in dependency order", all_too=True
    )
    parser.add_argument("--data-dir", type=Path, help="prepared data (default: <home>/data/digits)")
    add_home(parser)
    add_training_flags(parser)
    add_verbose(parser)
    command(parser, run_pipelines, training=training_request)


def _add_compile(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "compile",
        help="write a Kubeflow Pipelines v2 spec (Trainer on a GPU node)",
        description="Compile with KubeflowV2DagRunner, for the open-source KFP backend "
        "(--target oss: a .yaml package for 'tfsp pipeline submit') or for Vertex AI "
        "Pipelines (--target vertex: a .json PipelineJob, all paths gs://). Paths are as the "
        "pipeline image and cluster see them. epochs and learning_rate are run-time "
        "parameters.",
    )
    add_family_flag(parser, f"model family ({family_names()}), or 'all'", all_too=True)
    parser.add_argument(
        "--image",
        required=True,
        type=argtypes.container_image,
        help="container image every step runs",
    )
    parser.add_argument(
        "--target",
        choices=("oss", "vertex"),
        default="oss",
        help="oss: open-source Kubeflow Pipelines 2.x (default); vertex: Vertex AI Pipelines",
    )
    output = parser.add_mutually_exclusive_group(required=True)
    output.add_argument(
        "--output", type=Path, help="one family: file to write (.yaml for oss, .json for vertex)"
    )
    output.add_argument(
        "--output-dir", type=Path, help="folder for one <family>.yaml (oss) or .json (vertex) each"
    )
    parser.add_argument(
        "--pipeline-root",
        help="artifact store: gs://, s3:// or minio:// (oss default: "
        "minio://mlpipeline/v2/artifacts, KFP standalone's MinIO; vertex: required, gs://)",
    )
    parser.add_argument(
        "--work-mount",
        default="/tfsp",
        help="oss: where every step mounts the work volume, the tfsp-work PVC, when "
        "--data-root is a local path (%(default)s; with gs:// no step mounts it)",
    )
    parser.add_argument(
        "--data-root",
        help="prepared data: under --work-mount or gs:// (oss default: /tfsp/data/digits; "
        "vertex: required, gs://)",
    )
    parser.add_argument(
        "--serving-root",
        help="model store TF Serving reads (oss default: /models, the tfsp-models PVC; "
        "vertex: required, gs://)",
    )
    parser.add_argument(
        "--trainer-gpus",
        type=argtypes.non_negative_int,
        default=1,
        help="GPUs the Trainer requests (default: 1)",
    )
    parser.add_argument(
        "--gpu-type",
        help="the Trainer's GPU (oss default: nvidia.com/gpu, the Kubernetes resource; "
        "vertex default: NVIDIA_TESLA_T4)",
    )
    add_beam_flag(parser)
    add_gate_flag(parser)
    add_family_flags(parser)
    command(parser, compile_pipelines, custom_config=custom_config)


def _add_submit(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "submit",
        help="submit a compiled pipeline to Kubeflow Pipelines and print the run URL",
        description="Upload <spec-dir>/<family>.yaml (written by 'tfsp pipeline compile') "
        "with the KFP client and start a run. Prints the run's URL.",
    )
    parser.add_argument(
        "--host", required=True, help="KFP endpoint, e.g. http://localhost:8080 (port-forward)"
    )
    add_family_flag(parser, f"model family ({family_names()})")
    parser.add_argument("--experiment", help="KFP experiment (default: tfsp-<family>)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        dest="params",
        metavar="NAME=VALUE",
        help="run-time parameter (epochs, learning_rate); repeatable",
    )
    parser.add_argument(
        "--spec-dir",
        type=Path,
        default=Path("build/kfp"),
        help="where 'compile --output-dir' wrote the packages (%(default)s)",
    )
    parser.add_argument("--spec", type=Path, help="package to submit (default: in --spec-dir)")
    parser.add_argument(
        "--pipeline-root",
        help="artifact store of the run (default: the one the package was compiled with; "
        "KFP's backend never reads it from the package itself)",
    )
    parser.add_argument("--run-name", help="run name (default: KFP's, from the file and time)")
    parser.add_argument("--namespace", help="multi-user Kubeflow: your profile's namespace")
    parser.add_argument(
        "--timeout", type=argtypes.positive_float, default=10.0, help="seconds per connection (10)"
    )
    command(parser, submit_pipeline)


@dataclass
class FamilyOutcome:
    """What one family's run decided, for the main job's summary."""

    family: str
    version: str | None  # the pushed version; None when nothing was pushed
    gate: str  # the gate's figures in words
    blessed: bool


def run_and_report(
    family_name: str,
    home: str | None,
    data_dir: Path | None,
    training: TrainingRequest,
    verbose: bool,
) -> FamilyOutcome:
    """Run one family's pipeline, print the gate's verdict, and return the outcome."""
    from tfsp.core.progress import follow_components, quiet_frameworks

    quiet_frameworks()
    from tfsp.pipelines.layout import LocalLayout, check_data_dir
    from tfsp.trainers.registry import get_family

    family = get_family(family_name)
    layout = LocalLayout.from_env(home)
    data_dir = (data_dir or layout.data_dir).resolve()
    check_data_dir(data_dir)  # before TensorFlow loads: a typo should fail at once

    from tfsp.pipelines.factory import component_ids
    from tfsp.pipelines.local_runner import run_local

    print(f"==> pipeline tfsp-{family.name} (home {layout.home})", file=sys.stderr)
    progress = follow_components(total=len(component_ids(family)), verbose=verbose)
    started = time.monotonic()
    try:
        result = run_local(
            family,
            layout,
            data_dir=data_dir,
            epochs=training.epochs,
            learning_rate=training.learning_rate,
            batch_size=training.batch_size,
            gate_lower_bound=training.gate_lower_bound,
            custom_config=training.custom_config,
            enable_cache=training.enable_cache,
            **({"beam_args": training.beam_args} if training.beam_args else {}),
        )
    finally:
        # `--family all` runs several pipelines in this process: one progress printer each.
        logging.getLogger("absl").removeHandler(progress)
    return _report(family, result, data_dir, time.monotonic() - started)


def _report(family: Family, result: "RunResult", data_dir: Path, wall: float) -> FamilyOutcome:
    """Print a finished run's figures and verdict."""
    from tfsp.pipelines.results import claim_summary, test_split_figure

    metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(result.metrics.items()))
    print(f"{family.evaluation_split + ' split:':<15} {metrics}")
    claim = claim_summary(result, family)
    if claim:
        print(f"claim:          {claim}")
    for figure in result.figures:
        print(f"figure:         {figure}")
    if not result.blessed:
        print(f"{family.name}: not blessed; nothing pushed. Failed checks:", file=sys.stderr)
        for failure in result.failures:
            print(f"  - {failure}", file=sys.stderr)
        print(f"wall time:      {wall:.1f}s")
        return FamilyOutcome(family.name, None, claim or metrics, False)
    what, value = test_split_figure(
        family, result.pushed_dir, str(data_dir / "test" / "data.tfrecord")
    )
    print(f"pushed:         {result.pushed_dir}{' (cached run)' if result.cached else ''}")
    print(f"{what + ':':<15} {value:.4g}")
    print(f"wall time:      {wall:.1f}s")
    return FamilyOutcome(family.name, result.pushed_version, claim or f"{what} {value:.4g}", True)


def run_families(
    names: list[str],
    home: str | None,
    data_dir: Path | None,
    training: TrainingRequest,
    verbose: bool,
) -> list[FamilyOutcome] | None:
    """Run each family in turn; None (after saying where) at the first failed gate, since a
    family built on it would use a stale or missing model."""
    outcomes = []
    for name in names:
        outcome = run_and_report(name, home, data_dir, training, verbose)
        if not outcome.blessed:
            print(STOPPED.format(name), file=sys.stderr)
            return None
        outcomes.append(outcome)
    return outcomes


def run_pipelines(
    family: str, home: str | None, data_dir: Path | None, training: TrainingRequest, verbose: bool
) -> int:
    """`tfsp pipeline run`: one family, or every family in dependency order (cnn before
    transfer); 1 if a gate refused."""
    from tfsp.trainers.registry import run_order

    names = run_order() if family == "all" else [family]
    check_options_apply(training.custom_config, names)
    return 0 if run_families(names, home, data_dir, training, verbose) is not None else 1


def compile_pipelines(
    family: str,
    image: str,
    target: str,
    output: Path | None,
    output_dir: Path | None,
    pipeline_root: str | None,
    work_mount: str,
    data_root: str | None,
    serving_root: str | None,
    trainer_gpus: int,
    gpu_type: str | None,
    beam_args: list[str] | None,
    min_accuracy: float | None,
    custom_config: dict,
) -> int:
    """`tfsp pipeline compile`: one package per family, for the open-source backend or Vertex."""
    from tfsp.core.progress import quiet_frameworks
    from tfsp.trainers.registry import FAMILIES, get_family

    # Names are checked before TensorFlow loads, so a typo fails at once.
    if family == "all":
        if output is not None:
            raise UsageError("--family all writes one spec per family: use --output-dir DIR")
        families = list(FAMILIES.values())
    else:
        families = [get_family(family)]
    check_options_apply(custom_config, [f.name for f in families])
    quiet_frameworks()
    from tfsp.pipelines.kubeflow_runner import TARGET_SUFFIXES, cluster_options, compile_family

    options = cluster_options(
        target,
        pipeline_root=pipeline_root,
        data_root=data_root,
        serving_root=serving_root,
        trainer_gpus=trainer_gpus,
        gpu_type=gpu_type,
        work_mount=work_mount,
        gate_lower_bound=min_accuracy,
        beam_args=tuple(beam_args) if beam_args else None,
        custom_config=custom_config or None,
    )
    for chosen in families:
        path = output or output_dir / f"{chosen.name}{TARGET_SUFFIXES[target]}"
        print(f"wrote {compile_family(chosen, image, path, options, target)}")
    return 0


def submit_pipeline(
    host: str,
    family: str,
    experiment: str | None,
    params: list[str],
    spec_dir: Path,
    spec: Path | None,
    pipeline_root: str | None,
    run_name: str | None,
    namespace: str | None,
    timeout: float,
) -> int:
    """`tfsp pipeline submit`: upload a compiled package and start a run; prints its URL."""
    from tfsp.pipelines.kfp_submit import submit_package
    from tfsp.trainers.registry import get_family

    name = get_family(family).name
    url = submit_package(
        host,
        spec or spec_dir / f"{name}.yaml",
        params=params,
        experiment=experiment or f"tfsp-{name}",
        run_name=run_name,
        namespace=namespace,
        pipeline_root=pipeline_root,
        timeout=timeout,
    )
    print(f"run: {url}")
    return 0
