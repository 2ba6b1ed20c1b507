"""The `tfsp` command line: data preparation, pipelines, diagnostics and the main job.

Heavy imports (TensorFlow, TFX) happen inside the commands, so `--help` and flag errors
answer at once.
"""

import argparse
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from tfsp.errors import UserError, one_line


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (plus where to look), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def _fraction(text: str) -> float:
    value = _positive_float(text) if text.strip() not in ("0", "0.0") else 0.0
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _fractions(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected train,eval,test fractions, got {text!r}")
    return tuple(_fraction(p) for p in parts)  # type: ignore[return-value]


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
    parser.add_argument("--epochs", type=_positive_int, help="training epochs (family default)")
    parser.add_argument(
        "--learning-rate", type=_positive_float, help="Adam learning rate (family default)"
    )
    parser.add_argument("--batch-size", type=_positive_int, help="batch size (family default)")
    parser.add_argument(
        "--min-accuracy",
        type=_fraction,
        help="the Evaluator's absolute bound on eval-split accuracy (family default)",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="re-run every component (caching is on)"
    )
    cnn = parser.add_argument_group("CNN architecture (family cnn)")
    cnn.add_argument("--pooling", choices=("max", "average"), help="pooling type (default max)")
    cnn.add_argument(
        "--padding", choices=("valid", "same"), help="convolution padding (default valid)"
    )
    cnn.add_argument("--conv-stride", type=_positive_int, help="convolution stride (default 1)")


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

    run = commands.add_parser(
        "run",
        help="the main job: prepare data, train, validate and push the CNN",
        description="Prepare the digits data (if absent), run the CNN pipeline locally, "
        "and print where the model was pushed and its test-split accuracy.",
    )
    _add_home(run)
    _add_training_flags(run)
    _add_verbose(run)
    run.set_defaults(handler=_cmd_run, family="cnn", data_dir=None)

    data = commands.add_parser("data", help="prepare training data").add_subparsers(
        dest="data_command", required=True, metavar="COMMAND"
    )
    prepare = data.add_parser(
        "prepare",
        help="write train/eval/test TFRecords (32×32×1 images, labels)",
        description="Write a stratified train/eval/test split as TFRecord tf.Examples. The "
        "default source is scikit-learn's 1,797 UCI handwritten digits (8×8, resized to "
        "32×32). 28×28 inputs (MNIST) are padded to 32×32; other sizes are resized.",
    )
    source = prepare.add_mutually_exclusive_group()
    source.add_argument(
        "--images-dir", type=Path, help="folder with one sub-folder of PNG/JPEG files per class"
    )
    source.add_argument(
        "--idx", nargs=2, type=Path, metavar=("IMAGES", "LABELS"), help="MNIST IDX files (.gz ok)"
    )
    prepare.add_argument("--invert", action="store_true", help="images are dark ink on light paper")
    prepare.add_argument("--output", type=Path, help="output folder (default: <home>/data/digits)")
    prepare.add_argument(
        "--fractions",
        type=_fractions,
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
        "AnomalyGate → Transform → Trainer → Evaluator → Pusher. Exits 1 if the model is "
        "not blessed (nothing is pushed).",
    )
    prun.add_argument("--family", required=True, help="model family (e.g. cnn)")
    prun.add_argument("--data-dir", type=Path, help="prepared data (default: <home>/data/digits)")
    _add_home(prun)
    _add_training_flags(prun)
    _add_verbose(prun)
    prun.set_defaults(handler=_cmd_pipeline_run)

    pcompile = pipeline_commands.add_parser(
        "compile",
        help="write a Kubeflow Pipelines v2 spec (Trainer on a GPU node)",
        description="Compile with KubeflowV2DagRunner. Paths are as the pipeline image and "
        "cluster see them. epochs and learning_rate are run-time parameters.",
    )
    pcompile.add_argument("--family", required=True, help="model family (e.g. cnn)")
    pcompile.add_argument("--image", required=True, help="container image every step runs")
    pcompile.add_argument("--output", required=True, type=Path, help="spec file to write (.json)")
    pcompile.add_argument("--pipeline-root", default="/tfsp/pipelines", help="(%(default)s)")
    pcompile.add_argument("--data-root", default="/tfsp/data/digits", help="(%(default)s)")
    pcompile.add_argument(
        "--serving-root", default="/models", help="model store TF Serving reads (%(default)s)"
    )
    pcompile.add_argument(
        "--trainer-gpus", type=int, default=1, help="GPUs the Trainer requests (default: 1)"
    )
    pcompile.set_defaults(handler=_cmd_pipeline_compile)
    return parser


def _cmd_doctor(args: argparse.Namespace) -> int:
    from tfsp.progress import quiet_frameworks

    quiet_frameworks()
    from tfsp.doctor import run_doctor

    return 0 if run_doctor() else 1


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    from tfsp.progress import quiet_frameworks

    quiet_frameworks()
    from pipelines.layout import LocalLayout
    from tfsp.data import prepare, sources

    if args.invert and not args.images_dir:
        raise UserError("--invert applies to --images-dir only")
    if args.images_dir:
        loaded = sources.load_image_folder(args.images_dir, invert=args.invert)
    elif args.idx:
        loaded = sources.load_idx(*args.idx)
    else:
        loaded = sources.load_digits_source()
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
    lenet = {
        key: value
        for key, value in (
            ("pooling", args.pooling),
            ("conv_padding", args.padding),
            ("conv_stride", args.conv_stride),
        )
        if value is not None
    }
    return {"lenet": lenet} if lenet else {}


def _run_family(args: argparse.Namespace) -> int:
    """Run one family's pipeline and report the gate's verdict; 1 if nothing was pushed."""
    from tfsp.progress import follow_components, quiet_frameworks

    quiet_frameworks()
    from pipelines.families import get_family
    from pipelines.layout import LocalLayout, check_data_dir

    family = get_family(args.family)
    layout = LocalLayout.from_env(args.home)
    data_dir = (args.data_dir or layout.data_dir).resolve()
    check_data_dir(data_dir)  # before TensorFlow loads: a typo should fail at once

    from pipelines.factory import COMPONENT_IDS
    from pipelines.local_runner import run_local
    from pipelines.results import split_accuracy

    print(f"==> pipeline tfsp-{family.name} (home {layout.home})", file=sys.stderr)
    follow_components(total=len(COMPONENT_IDS), verbose=args.verbose)
    started = time.monotonic()
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
    )
    wall = time.monotonic() - started
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.metrics.items()))
    print(f"eval split:     {metrics}")
    if not result.blessed:
        print("not blessed; nothing pushed. Failed checks:", file=sys.stderr)
        for failure in result.failures:
            print(f"  - {failure}", file=sys.stderr)
        print(f"wall time:      {wall:.1f}s")
        return 1
    test = split_accuracy(result.pushed_dir, str(data_dir / "test" / "data.tfrecord"))
    print(f"pushed:         {result.pushed_dir}{' (cached run)' if result.cached else ''}")
    print(f"test accuracy:  {test:.4f}")
    print(f"wall time:      {wall:.1f}s")
    return 0


def _cmd_pipeline_run(args: argparse.Namespace) -> int:
    return _run_family(args)


def _cmd_run(args: argparse.Namespace) -> int:
    from tfsp.progress import quiet_frameworks

    quiet_frameworks()
    from pipelines.layout import LocalLayout

    layout = LocalLayout.from_env(args.home)
    if not (layout.data_dir / "manifest.json").exists():
        print(f"==> preparing the digits data in {layout.data_dir}", file=sys.stderr)
        prepare_args = build_parser().parse_args(["data", "prepare", "--home", str(layout.home)])
        _cmd_data_prepare(prepare_args)
    return _run_family(args)


def _cmd_pipeline_compile(args: argparse.Namespace) -> int:
    from tfsp.progress import quiet_frameworks

    quiet_frameworks()
    from pipelines.kubeflow_runner import compile_pipeline

    compile_pipeline(
        args.family,
        args.image,
        args.output,
        pipeline_root=args.pipeline_root,
        data_root=args.data_root,
        serving_root=args.serving_root,
        trainer_gpus=args.trainer_gpus,
    )
    print(f"wrote {args.output}")
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
        if verbose:
            traceback.print_exc()
        print(f"error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        if not verbose:
            print("(run again with --verbose for the full log and traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
