"""The `tfsp` command line: the root only assembles the command groups and reports errors.

One module per group, each adding its own commands (`add_commands`): doctor, serving (serve,
predict, status, metadata), features, run (the main job), data, pipeline, deploy,
experiment. Handlers take typed arguments (common.command); heavy imports (TensorFlow, TFX)
happen inside them, so `--help` and flag errors answer at once.
"""

import sys
import traceback
from collections.abc import Sequence

from tfsp.cli import data, deploy, doctor, experiment, features, pipeline, run, serving
from tfsp.cli.common import Parser, invoke
from tfsp.core.errors import UsageError, UserError, one_line

GROUPS = (doctor, serving, features, run, data, pipeline, deploy, experiment)

# Modules the bare `pip install tfsp` leaves out, and the extra that brings each
# (pyproject.toml): [client] for images and Parquet, [full] for everything else.
_EXTRA_OF_MODULE = {
    "PIL": "client",
    "pyarrow": "client",
    **dict.fromkeys(
        ("tensorflow", "tensorflow_serving", "tfx", "tfx_bsl", "apache_beam", "keras", "sklearn",
         "aiohttp", "uvloop", "rapidjson", "prometheus_client", "matplotlib", "ml_metadata",
         "kfp", "grpc_health"),
        "full",
    ),
}  # fmt: skip


def build_parser() -> Parser:
    """The full `tfsp` argument parser."""
    parser = Parser(
        prog="tfsp",
        description="TFX pipelines per model family, versioned SavedModels and TF Serving.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tfsp` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", None)  # None: the command has no --verbose flag
    try:
        return invoke(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.filename is None:
            return _unexpected(exc, verbose)
        # a path the user gave that cannot be read or written (a folder, a missing parent)
        if verbose:
            traceback.print_exc()
        print(f"error: {exc.filename}: {exc.strerror or one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        return _unexpected(exc, verbose)


def _unexpected(exc: Exception, verbose: bool | None) -> int:
    """Report an error we did not anticipate: a missing extra in one line, else the error's
    type and message last, after its traceback with --verbose, or always where the command
    has no --verbose to ask for it (`verbose` None)."""
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
    if verbose is not False:
        traceback.print_exc()
    print(f"error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
    if verbose is False:
        print("(run again with --verbose for the full log and traceback)", file=sys.stderr)
    return 1
