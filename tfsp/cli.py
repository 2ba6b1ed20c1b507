"""The `tfsp` command line: data preparation, pipelines, diagnostics and the main job.

Heavy imports (TensorFlow, TFX) happen inside the commands, so `--help` and flag errors
answer at once.
"""

import argparse
import dataclasses
import json
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tfsp import argtypes
from tfsp.errors import UserError, one_line

# Modules the bare `pip install tfsp` leaves out, and the extra that brings each
# (pyproject.toml): [client] for images and Parquet, [full] for everything else.
_EXTRA_OF_MODULE = {
    "PIL": "client",
    "pyarrow": "client",
    **dict.fromkeys(
        ("tensorflow", "tensorflow_serving", "tfx", "tfx_bsl", "apache_beam", "keras", "sklearn",
         "aiohttp", "prometheus_client", "matplotlib", "ml_metadata", "kfp"),
        "full",
    ),
}  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (plus where to look), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def _add_home(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        help="folder for data, pipeline artifacts, metadata and pushed models "
        "(default: $TFSP_HOME, else ./.tfsp)",
    )


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose", action="store_true", help="show TFX/Beam logs and tracebacks on failure"
    )


def _add_training_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--epochs", type=argtypes.positive_int, help="training epochs (family default)"
    )
    parser.add_argument(
        "--learning-rate", type=argtypes.positive_float, help="Adam learning rate (family default)"
    )
    parser.add_argument(
        "--batch-size", type=argtypes.positive_int, help="batch size (family default)"
    )
    _add_gate_flag(parser)
    parser.add_argument(
        "--no-cache", action="store_true", help="re-run every component (caching is on)"
    )
    _add_family_flags(parser)


def _add_beam_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--beam-arg",
        action="append",
        metavar="ARG",
        help="Beam pipeline option for the Beam steps (StatisticsGen, Transform, Evaluator...), "
        "e.g. --beam-arg=--runner=DataflowRunner; repeatable, replaces the default (Beam's "
        "FnApiRunner in-process, no download)",
    )


def _add_gate_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--min-accuracy",
        type=argtypes.fraction,
        help="the Evaluator's absolute floor on accuracy, for the classifier families "
        "(family default; the autoencoder's MSE gate keeps its own bounds)",
    )


def _family_names() -> str:
    from tfsp.trainers.registry import FAMILIES

    return ", ".join(FAMILIES)


def _add_family_flags(parser: argparse.ArgumentParser) -> None:
    """One group of flags per family, built from its options dataclass (trainers/registry.py).

    Every flag defaults to None (absent: the Trainer keeps the option's default), so only the
    options given reach the Trainer's custom_config; the same choices and bounds are checked
    again there (tfsp.family.options_from_config).
    """
    from tfsp.family import flag_fields, flag_name
    from tfsp.trainers.registry import FAMILIES

    for family in FAMILIES.values():
        if family.options is None:
            continue
        group = parser.add_argument_group(f"{family.title or family.name} (family {family.name})")
        for option in flag_fields(family.options):
            group.add_argument(
                flag_name(option),
                dest=_option_dest(family.name, option.name),
                **_flag_kwargs(option),
            )


def _option_dest(family: str, option: str) -> str:
    return f"option__{family}__{option}"


def _flag_kwargs(option: dataclasses.Field) -> dict:
    """argparse keywords for one option: its type, choices and bounds, and its help text."""
    meta, default = option.metadata, option.default
    if isinstance(default, bool):
        return {"action": "store_const", "const": not default, "help": meta["help"]}
    kwargs: dict = {"help": f"{meta['help']} (default {default})"}
    if meta.get("choices") is not None:
        kwargs["choices"] = meta["choices"]
    if isinstance(default, int):
        kwargs["type"] = argtypes.whole_number(meta.get("minimum"), meta.get("maximum"))
        kwargs["metavar"] = "N"
    elif isinstance(default, float):
        kwargs["metavar"] = "X"
        minimum = meta.get("minimum")
        kwargs["type"] = argtypes.number(float("-inf") if minimum is None else minimum)
    return kwargs


def build_parser() -> argparse.ArgumentParser:
    """The full `tfsp` argument parser."""
    parser = _Parser(
        prog="tfsp",
        description="TFX pipelines per model family, versioned SavedModels and TF Serving.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    doctor = commands.add_parser(
        "doctor", help="check the installation (versions, matmul, devices, runtime)"
    )
    doctor.set_defaults(handler=_cmd_doctor)
    from tfsp.serving.commands import add_commands  # serve, predict, status, metadata
    from tfsp.serving.features import add_command as add_features_command

    add_commands(commands)
    add_features_command(commands)

    run = commands.add_parser(
        "run",
        help="the main job: data, every family's pipeline, then serve, predict, pull features",
        description="Prepare the digits data (if absent); run every family's pipeline in "
        "dependency order (or only --family F), stopping at a failed gate; then start the "
        "local model server with every pushed model, send one Predict to each, pull the "
        "encoder's features for the test split, print a summary table and stop the server.",
    )
    run.add_argument(
        "--family", default="all", help="one family instead of all (then no serving step)"
    )
    _add_home(run)
    _add_training_flags(run)
    _add_beam_flag(run)
    _add_verbose(run)
    run.set_defaults(handler=_cmd_run, data_dir=None)

    data = commands.add_parser("data", help="prepare training data").add_subparsers(
        dest="data_command", required=True, metavar="COMMAND"
    )
    prepare = data.add_parser(
        "prepare",
        help="write train/eval/test TFRecords (32×32×1 images, labels)",
        description="Write a stratified train/eval/test split as TFRecord tf.Examples. The "
        "default source is scikit-learn's 1,797 UCI handwritten digits (8×8) and digits "
        "printed in 8 fonts (--printed-per-font renderings of each). Every image is framed "
        "as the served models frame a client's image: ink bounding box, padded to a square, "
        "32×32, ink bright (the polarity is detected), so images of any size are accepted.",
    )
    source = prepare.add_mutually_exclusive_group()
    source.add_argument(
        "--images-dir", type=Path, help="folder with one sub-folder of PNG/JPEG files per class"
    )
    source.add_argument(
        "--idx", nargs=2, type=Path, metavar=("IMAGES", "LABELS"), help="MNIST IDX files (.gz ok)"
    )
    prepare.add_argument(
        "--printed-per-font",
        type=argtypes.non_negative_int,
        default=None,
        help="default source only: renderings of each digit per font added to the handwritten "
        "digits (default 8, 0 for none)",
    )
    prepare.add_argument("--output", type=Path, help="output folder (default: <home>/data/digits)")
    prepare.add_argument(
        "--fractions",
        type=argtypes.fractions,
        default=(0.7, 0.15, 0.15),
        help="train,eval,test fractions (default: 0.7,0.15,0.15)",
    )
    prepare.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    prepare.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _add_home(prepare)
    prepare.set_defaults(handler=_cmd_data_prepare)

    pipeline = commands.add_parser("pipeline", help="run or compile a family's TFX pipeline")
    pipeline_commands = pipeline.add_subparsers(
        dest="pipeline_command", required=True, metavar="COMMAND"
    )
    prun = pipeline_commands.add_parser(
        "run",
        help="run a family's pipeline locally (LocalDagRunner, SQLite metadata)",
        description="ImportExampleGen → StatisticsGen → ImportSchemaGen → ExampleValidator → "
        "AnomalyGate → Transform → Trainer → Evaluator (against the last pushed model, from "
        "BaselineModelGen, or the family's reference model) → ServingCheck → Pusher. Exits 1 "
        "if the model is not blessed (nothing is pushed).",
    )
    prun.add_argument(
        "--family",
        required=True,
        help=f"model family ({_family_names()}), or 'all' in dependency order",
    )
    prun.add_argument("--data-dir", type=Path, help="prepared data (default: <home>/data/digits)")
    _add_home(prun)
    _add_training_flags(prun)
    _add_beam_flag(prun)
    _add_verbose(prun)
    prun.set_defaults(handler=_cmd_pipeline_run)

    pcompile = pipeline_commands.add_parser(
        "compile",
        help="write a Kubeflow Pipelines v2 spec (Trainer on a GPU node)",
        description="Compile with KubeflowV2DagRunner, for the open-source KFP backend "
        "(--target oss: a .yaml package for 'tfsp pipeline submit') or for Vertex AI "
        "Pipelines (--target vertex: a .json PipelineJob, all paths gs://). Paths are as the "
        "pipeline image and cluster see them. epochs and learning_rate are run-time "
        "parameters.",
    )
    pcompile.add_argument(
        "--family", required=True, help=f"model family ({_family_names()}), or 'all'"
    )
    pcompile.add_argument("--image", required=True, help="container image every step runs")
    pcompile.add_argument(
        "--target",
        choices=("oss", "vertex"),
        default="oss",
        help="oss: open-source Kubeflow Pipelines 2.x (default); vertex: Vertex AI Pipelines",
    )
    compile_output = pcompile.add_mutually_exclusive_group(required=True)
    compile_output.add_argument(
        "--output",
        type=Path,
        help="one family: file to write (.yaml for oss, .json for vertex)",
    )
    compile_output.add_argument(
        "--output-dir",
        type=Path,
        help="folder for one <family>.yaml (oss) or .json (vertex) each",
    )
    pcompile.add_argument(
        "--pipeline-root",
        help="artifact store: gs://, s3:// or minio:// (oss default: "
        "minio://mlpipeline/v2/artifacts, KFP standalone's MinIO; vertex: required, gs://)",
    )
    pcompile.add_argument(
        "--work-mount",
        default="/tfsp",
        help="oss: where every step mounts the work volume, the tfsp-work PVC (%(default)s)",
    )
    pcompile.add_argument(
        "--data-root",
        help="prepared data: under --work-mount or gs:// (oss default: /tfsp/data/digits; "
        "vertex: required, gs://)",
    )
    pcompile.add_argument(
        "--serving-root",
        help="model store TF Serving reads (oss default: /models, the tfsp-models PVC; "
        "vertex: required, gs://)",
    )
    pcompile.add_argument(
        "--trainer-gpus", type=int, default=1, help="GPUs the Trainer requests (default: 1)"
    )
    pcompile.add_argument(
        "--gpu-type",
        help="the Trainer's GPU (oss default: nvidia.com/gpu, the Kubernetes resource; "
        "vertex default: NVIDIA_TESLA_T4)",
    )
    _add_beam_flag(pcompile)
    _add_gate_flag(pcompile)
    _add_family_flags(pcompile)
    pcompile.set_defaults(handler=_cmd_pipeline_compile)

    psubmit = pipeline_commands.add_parser(
        "submit",
        help="submit a compiled pipeline to Kubeflow Pipelines and print the run URL",
        description="Upload <spec-dir>/<family>.yaml (written by 'tfsp pipeline compile') "
        "with the KFP client and start a run. Prints the run's URL.",
    )
    psubmit.add_argument(
        "--host", required=True, help="KFP endpoint, e.g. http://localhost:8080 (port-forward)"
    )
    psubmit.add_argument("--family", required=True, help=f"model family ({_family_names()})")
    psubmit.add_argument("--experiment", help="KFP experiment (default: tfsp-<family>)")
    psubmit.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="run-time parameter (epochs, learning_rate); repeatable",
    )
    psubmit.add_argument(
        "--spec-dir",
        type=Path,
        default=Path("build/kfp"),
        help="where 'compile --output-dir' wrote the packages (%(default)s)",
    )
    psubmit.add_argument("--spec", type=Path, help="package to submit (default: in --spec-dir)")
    psubmit.add_argument(
        "--pipeline-root",
        help="artifact store of the run (default: the one the package was compiled with; "
        "KFP's backend never reads it from the package itself)",
    )
    psubmit.add_argument("--run-name", help="run name (default: KFP's, from the file and time)")
    psubmit.add_argument("--namespace", help="multi-user Kubeflow: your profile's namespace")
    psubmit.add_argument(
        "--timeout", type=argtypes.positive_float, default=10.0, help="seconds per connection (10)"
    )
    psubmit.set_defaults(handler=_cmd_pipeline_submit)

    deploy = commands.add_parser("deploy", help="generate cluster deployment files").add_subparsers(
        dest="deploy_command", required=True, metavar="COMMAND"
    )
    models_config = deploy.add_parser(
        "models-config",
        help="TF Serving models.config listing every served model (from the family registry)",
        description="Write TensorFlow Serving's ModelServerConfig text proto: one entry per "
        "model the registered families push, base path <root>/<model>.",
    )
    models_config.add_argument(
        "--root", default="/models", help="model store as TF Serving sees it (%(default)s)"
    )
    models_config.add_argument("--output", type=Path, help="file to write (default: stdout)")
    models_config.set_defaults(handler=_cmd_deploy_models_config)
    _add_experiment_commands(commands)
    return parser


def _add_experiment_commands(commands: argparse._SubParsersAction) -> None:
    """`tfsp experiment ...`: the notes' claims that are measured, not served."""
    experiment = commands.add_parser(
        "experiment", help="run a study-notes experiment and print its table"
    ).add_subparsers(dest="experiment_command", required=True, metavar="COMMAND")
    claims = experiment.add_parser(
        "rnn-claims",
        help="adding problem (LSTM/GRU learn it, SimpleRNN not), gradient norms, TBPTT",
        description="Train each cell on the adding problem with clipping off and on, and "
        "print the test MSE against the trivial baseline (always 1.0, MSE 0.167) and the "
        "largest raw gradient norm; then the sin→cos regression trained with truncated BPTT.",
    )
    claims.add_argument("--seq-len", type=argtypes.positive_int, default=100, help="(%(default)s)")
    claims.add_argument(
        "--steps",
        type=argtypes.positive_int,
        default=3000,
        help="training steps per cell (%(default)s)",
    )
    claims.add_argument(
        "--cells",
        default="simple,lstm,gru,simple-relu",
        help="comma-separated: simple, jordan, lstm, gru, simple-relu (%(default)s)",
    )
    claims.add_argument(
        "--clip-norm",
        type=argtypes.positive_float,
        default=1.0,
        help="the 'on' threshold (%(default)s)",
    )
    claims.add_argument(
        "--tbptt",
        default="20:20,10:40",
        help="k1:k2 pairs for the TBPTT regression, comma-separated (%(default)s)",
    )
    claims.add_argument(
        "--tbptt-batches", type=argtypes.positive_int, default=30, help="(%(default)s)"
    )
    claims.add_argument("--output", type=Path, help="also write the results as JSON")
    claims.set_defaults(handler=_cmd_experiment_rnn_claims)


def _cmd_experiment_rnn_claims(args: argparse.Namespace) -> int:
    cells = tuple(c.strip() for c in args.cells.split(",") if c.strip())
    known = ("simple", "jordan", "lstm", "gru", "simple-relu")
    if not cells or any(c not in known for c in cells):
        raise UserError(f"--cells takes names from {', '.join(known)}; got {args.cells!r}")
    try:
        pairs = tuple(tuple(int(k) for k in p.split(":")) for p in args.tbptt.split(",") if p)
    except ValueError:
        raise UserError(f"--tbptt takes k1:k2 pairs, got {args.tbptt!r}") from None
    if any(len(p) != 2 or not 1 <= p[0] <= p[1] for p in pairs):
        raise UserError(f"--tbptt pairs need 1 <= k1 <= k2, got {args.tbptt!r}")
    from tfsp.progress import quiet_frameworks

    quiet_frameworks()
    from tfsp.trainers.rnn.experiments import format_report, rnn_claims

    report = rnn_claims(
        cells=cells,
        seq_len=args.seq_len,
        steps=args.steps,
        clip_norm=args.clip_norm,
        tbptt=pairs,
        tbptt_batches=args.tbptt_batches,
        progress=lambda message: print(f"==> {message}", file=sys.stderr, flush=True),
    )
    print(format_report(report))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2))
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from tfsp.progress import quiet_frameworks

    quiet_frameworks()
    from tfsp.doctor import run_doctor

    return 0 if run_doctor() else 1


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    from tfsp.progress import quiet_frameworks

    quiet_frameworks()
    from tfsp.data import prepare, sources
    from tfsp.pipelines.layout import LocalLayout

    if args.printed_per_font is not None and (args.images_dir or args.idx):
        raise UserError("--printed-per-font applies to the default source only")
    if args.images_dir:
        loaded = sources.load_image_folder(args.images_dir)
    elif args.idx:
        loaded = sources.load_idx(*args.idx)
    else:
        per_font = args.printed_per_font
        loaded = sources.load_digits_source(
            sources.DEFAULT_PRINTED_PER_FONT if per_font is None else per_font
        )
    output = args.output or LocalLayout.from_env(args.home).data_dir
    manifest = prepare.prepare_dataset(
        *loaded,
        output,
        fractions=args.fractions,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=lambda message: print(message, file=sys.stderr),
    )
    counts = {split: info["num_examples"] for split, info in manifest["splits"].items()}
    print(f"prepared {json.dumps(counts)} in {output}")
    return 0


def _custom_config(args: argparse.Namespace) -> dict:
    """The Trainer's custom_config from the family flags given: {family: {option: value}}."""
    from tfsp.family import flag_fields
    from tfsp.trainers.registry import FAMILIES

    config = {}
    for family in FAMILIES.values():
        options = flag_fields(family.options) if family.options is not None else []
        values = {o.name: getattr(args, _option_dest(family.name, o.name), None) for o in options}
        given = {name: value for name, value in values.items() if value is not None}
        if given:
            config[family.name] = given
    return config


@dataclass
class FamilyOutcome:
    """What one family's run decided, for the main job's summary."""

    family: str
    version: str | None  # the pushed version; None when nothing was pushed
    gate: str  # the gate's figures in words
    blessed: bool


def _run_family(args: argparse.Namespace) -> int:
    """Run one family's pipeline and report the gate's verdict; 1 if nothing was pushed."""
    return 0 if _run_and_report(args).blessed else 1


def _run_and_report(args: argparse.Namespace) -> "FamilyOutcome":
    """Run one family's pipeline, print the gate's verdict, and return the outcome."""
    from tfsp.progress import follow_components, quiet_frameworks

    quiet_frameworks()
    from tfsp.pipelines.layout import LocalLayout, check_data_dir
    from tfsp.trainers.registry import get_family

    family = get_family(args.family)
    layout = LocalLayout.from_env(args.home)
    data_dir = (args.data_dir or layout.data_dir).resolve()
    check_data_dir(data_dir)  # before TensorFlow loads: a typo should fail at once

    import logging

    from tfsp.pipelines.factory import component_ids
    from tfsp.pipelines.local_runner import run_local
    from tfsp.pipelines.results import claim_summary, test_split_figure

    print(f"==> pipeline tfsp-{family.name} (home {layout.home})", file=sys.stderr)
    progress = follow_components(total=len(component_ids(family)), verbose=args.verbose)
    started = time.monotonic()
    try:
        result = run_local(
            family.name,
            layout,
            data_dir=data_dir,
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            gate_lower_bound=args.min_accuracy,
            custom_config=_custom_config(args),
            enable_cache=not args.no_cache,
            **({"beam_args": args.beam_arg} if args.beam_arg else {}),
        )
    finally:
        # `--family all` runs several pipelines in this process: one progress printer each.
        logging.getLogger("absl").removeHandler(progress)
    wall = time.monotonic() - started
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
    gate = claim or f"{what} {value:.4g}"
    return FamilyOutcome(family.name, result.pushed_version, gate, True)


def _cmd_pipeline_run(args: argparse.Namespace) -> int:
    if args.family != "all":
        return _run_family(args)
    from tfsp.trainers.registry import run_order

    # Dependency order (cnn before transfer); a failed gate stops the rest, since a family
    # built on it would use a stale or missing model.
    for name in run_order():
        code = _run_family(argparse.Namespace(**{**vars(args), "family": name}))
        if code != 0:
            print(f"error: stopped at family {name}: its gate failed (see above)", file=sys.stderr)
            return code
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    """The main job: data, every family's pipeline, then serve, predict and pull features."""
    from tfsp.progress import quiet_frameworks

    quiet_frameworks()
    from tfsp.pipelines.layout import LocalLayout
    from tfsp.trainers.registry import run_order

    layout = LocalLayout.from_env(args.home)
    if not (layout.data_dir / "manifest.json").exists():
        print(f"==> preparing the digits data in {layout.data_dir}", file=sys.stderr)
        prepare_args = build_parser().parse_args(["data", "prepare", "--home", str(layout.home)])
        _cmd_data_prepare(prepare_args)
    families = run_order() if args.family == "all" else [args.family]
    outcomes = []
    for name in families:
        outcome = _run_and_report(argparse.Namespace(**{**vars(args), "family": name}))
        outcomes.append(outcome)
        if not outcome.blessed:
            print(f"error: stopped at family {name}: its gate failed (see above)", file=sys.stderr)
            return 1
    if args.family != "all":
        return 0
    from tfsp.main_job import serve_and_check

    return serve_and_check(layout, outcomes)


def _cmd_pipeline_compile(args: argparse.Namespace) -> int:
    from tfsp.progress import quiet_frameworks
    from tfsp.trainers.registry import FAMILIES, get_family

    # Names are checked before TensorFlow loads, so a typo fails at once.
    if args.family == "all":
        if args.output is not None:
            raise UserError("--family all writes one spec per family: use --output-dir DIR")
        families = list(FAMILIES)
    else:
        families = [get_family(args.family).name]
    quiet_frameworks()
    from tfsp.pipelines.kubeflow_runner import TARGET_SUFFIXES, cluster_options, compile_family

    options = cluster_options(
        args.target,
        pipeline_root=args.pipeline_root,
        data_root=args.data_root,
        serving_root=args.serving_root,
        trainer_gpus=args.trainer_gpus,
        gpu_type=args.gpu_type,
        work_mount=args.work_mount,
        gate_lower_bound=args.min_accuracy,
        beam_args=tuple(args.beam_arg) if args.beam_arg else None,
        custom_config=_custom_config(args) or None,
    )
    for family in families:
        output = args.output or args.output_dir / f"{family}{TARGET_SUFFIXES[args.target]}"
        print(f"wrote {compile_family(family, args.image, output, options, args.target)}")
    return 0


def _cmd_pipeline_submit(args: argparse.Namespace) -> int:
    from tfsp.pipelines.kfp_submit import submit_package
    from tfsp.trainers.registry import get_family

    family = get_family(args.family).name
    url = submit_package(
        args.host,
        args.spec or args.spec_dir / f"{family}.yaml",
        params=args.param,
        experiment=args.experiment or f"tfsp-{family}",
        run_name=args.run_name,
        namespace=args.namespace,
        pipeline_root=args.pipeline_root,
        timeout=args.timeout,
    )
    print(f"run: {url}")
    return 0


def _cmd_deploy_models_config(args: argparse.Namespace) -> int:
    from tfsp.pipelines.model_config import render_models_config, write_models_config

    if args.output is None:
        sys.stdout.write(render_models_config(args.root))
    else:
        write_models_config(args.output, args.root)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tfsp` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    try:
        return args.handler(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        extra = _EXTRA_OF_MODULE.get((missing or "").split(".")[0])
        if extra:
            print(
                f"error: this command needs the {extra} install (no module {missing!r}): "
                f"pip install 'tfsp[{extra}]'; the light install (tfsp[client]) runs the "
                "client commands only (predict, status, metadata, features against a server)",
                file=sys.stderr,
            )
            return 1
        if verbose:
            traceback.print_exc()
        print(f"error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        if not verbose:
            print("(run again with --verbose for the full log and traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
