"""`tfsp deploy models-config`: the cluster's TF Serving model list, from the registry."""

import argparse
import sys
from pathlib import Path

from tfsp.cli.common import command
from tfsp.core.errors import UsageError


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the `deploy` group."""
    deploy = commands.add_parser("deploy", help="generate cluster deployment files")
    deploy_commands = deploy.add_subparsers(dest="deploy_command", required=True, metavar="COMMAND")
    parser = deploy_commands.add_parser(
        "models-config",
        help="TF Serving models.config listing every served model (from the family registry)",
        description="Write TensorFlow Serving's ModelServerConfig text proto: one entry per "
        "model the registered families push, base path <root>/<model>.",
    )
    parser.add_argument(
        "--root",
        default="/models",
        help="model store as TF Serving sees it: an absolute path or a URI (%(default)s)",
    )
    parser.add_argument("--output", type=Path, help="file to write (default: stdout)")
    parser.add_argument(
        "--pushed-only",
        action="store_true",
        help="list only the models with a version under --root (a server waits for every "
        "listed model to have one, as TF Serving does); exit 1 if there is none",
    )
    command(parser, models_config)


def models_config(root: str, output: Path | None, pushed_only: bool) -> int:
    """`tfsp deploy models-config`: print or write models.config for every served model
    (with `pushed_only`, every one that has a version under `root`)."""
    from tfsp.pipelines.model_config import check_root, render_models_config, write_models_config
    from tfsp.trainers.registry import served_model_names

    try:
        check_root(root)
    except ValueError as exc:
        raise UsageError(f"--root: {exc}") from None
    models = served_model_names()
    if pushed_only:
        models = _pushed(root, models)
    if output is None:
        sys.stdout.write(render_models_config(root, models))
    else:
        write_models_config(output, root, models)
        print(f"wrote {output}: {', '.join(models)}", file=sys.stderr)
    return 0


def _pushed(root: str, models: list[str]) -> list[str]:
    from tfsp.core.errors import UserError
    from tfsp.pipelines.model_config import model_base_path
    from tfsp.pipelines.model_store import latest_pushed_version

    pushed = [m for m in models if latest_pushed_version(model_base_path(root, m)) is not None]
    if not pushed:
        raise UserError(f"no model is pushed under {root}; run 'make run' (or 'tfsp run') first")
    return pushed
