"""`tfsp deploy models-config`: the cluster's TF Serving model list, from the registry."""

import argparse
import sys
from pathlib import Path

from tfsp.cli.common import command


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
        "--root", default="/models", help="model store as TF Serving sees it (%(default)s)"
    )
    parser.add_argument("--output", type=Path, help="file to write (default: stdout)")
    command(parser, models_config)


def models_config(root: str, output: Path | None) -> int:
    """`tfsp deploy models-config`: print or write models.config for every served model."""
    from tfsp.pipelines.model_config import render_models_config, write_models_config
    from tfsp.trainers.registry import served_model_names

    if output is None:
        sys.stdout.write(render_models_config(root, served_model_names()))
    else:
        write_models_config(output, root, served_model_names())
        print(f"wrote {output}", file=sys.stderr)
    return 0
