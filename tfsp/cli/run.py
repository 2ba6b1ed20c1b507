"""`tfsp run`, the main job: data, every family's pipeline, then serve what they pushed.

Prepares the digits data if absent, runs every family's pipeline in dependency order
(stopping at a failed gate), then serves the pushed models: writes models.config for them
(under the local serving root), starts `tfsp-model-server` on free loopback ports, sends one
Predict to each model (the signature its family's entry names, `check_signature`), pulls the
features of the families that serve an encoder for the test split, prints the summary
table, and stops the server (SIGTERM: it drains, then exits).
"""

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tfsp.cli.common import (
    TrainingRequest,
    add_family_flag,
    add_home,
    add_training_flags,
    add_verbose,
    check_options_apply,
    command,
    family_names,
    training_request,
)
from tfsp.cli.data import prepare_data
from tfsp.cli.pipeline import FamilyOutcome, run_families
from tfsp.core.features import IMAGE_SIZE
from tfsp.core.signatures import IMAGES_INPUT
from tfsp.trainers.registry import FAMILIES

if TYPE_CHECKING:
    from tfsp.pipelines.layout import LocalLayout


def _outputs_text(outputs: dict) -> str:
    return ", ".join(f"{key} {list(value.shape)}" for key, value in sorted(outputs.items()))


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add `tfsp run`."""
    parser = commands.add_parser(
        "run",
        help="the main job: data, every family's pipeline, then serve, predict, pull features",
        description="Prepare the digits data (if absent); run every family's pipeline in "
        "dependency order (or only --family F), stopping at a failed gate; then start the "
        "local model server with every pushed model, send one Predict to each, pull the "
        "encoder's features for the test split, print a summary table and stop the server.",
    )
    add_family_flag(
        parser,
        f"one family ({family_names()}) instead of all (then no serving step)",
        all_too=True,
        default="all",
    )
    add_home(parser)
    add_training_flags(parser)
    add_verbose(parser)
    command(parser, run_main_job, training=training_request)


def run_main_job(family: str, home: str | None, training: TrainingRequest, verbose: bool) -> int:
    """`tfsp run`: 0 when every gate passed and serving answered."""
    from tfsp.core.progress import quiet_frameworks

    quiet_frameworks()
    from tfsp.pipelines.layout import LocalLayout
    from tfsp.trainers.registry import run_order

    names = run_order() if family == "all" else [family]
    check_options_apply(training.custom_config, names)
    layout = LocalLayout.from_env(home)
    if not (layout.data_dir / "manifest.json").exists():
        print(f"==> preparing the digits data in {layout.data_dir}", file=sys.stderr)
        prepare_data(home=str(layout.home))
    outcomes = run_families(names, home, None, training, verbose)
    if outcomes is None:
        return 1
    if family != "all":
        return 0
    return serve_and_check(layout, outcomes)


def serve_and_check(
    layout: "LocalLayout", outcomes: list[FamilyOutcome], data_dir: Path | None = None
) -> int:
    """Serve the models these runs pushed, send each one Predict,
    pull the encoders' features for the test split of `data_dir` (default: the home's); 0
    when all of it worked."""
    from google.protobuf import text_format

    from tfsp.data.prepare import read_split
    from tfsp.pipelines.model_config import build_models_config
    from tfsp.serving.client import ServingClient
    from tfsp.serving.feature_sources import TFRecordSource
    from tfsp.serving.features import pull_features
    from tfsp.serving.launcher import LocalServer

    served = [FAMILIES[o.family] for o in outcomes if o.blessed]
    models = [model for family in served for model in family.served_models()]
    encoders = [family.features_model() for family in served if family.features_model()]
    config_file = layout.home / "models.config"
    config_file.write_text(
        text_format.MessageToString(build_models_config(str(layout.serving_root), models))
    )
    test_split = (data_dir or layout.data_dir) / "test"
    images, _ = read_split(test_split / "data.tfrecord")
    one_image = images[:1].reshape(1, IMAGE_SIZE, IMAGE_SIZE, 1)
    features_dir = layout.home / "features"
    features_dir.mkdir(parents=True, exist_ok=True)

    print(f"==> serving {len(models)} models from {layout.serving_root}", file=sys.stderr)
    answers: dict[str, str] = {}
    pulls = []
    with LocalServer(config_file, layout.home / "server.log").start(models) as server:
        with ServingClient(server.address) as client:
            for family in served:
                for model in family.served_models():
                    spec, outputs = client.predict(
                        model, {IMAGES_INPUT: one_image}, signature=family.check_signature
                    )
                    answers[model] = f"v{spec.version.value}: {_outputs_text(outputs)}"
            for encoder in encoders:
                print(f"==> pulling {encoder} features for the test split", file=sys.stderr)
                output = features_dir / f"{encoder}_test_codes.parquet"
                pulled = pull_features(TFRecordSource(test_split), output, client, encoder)
                pulls.append((output, pulled))
        stopped = server.stop()
    for output, pulled in pulls:
        print(
            f"features:       {output} ({pulled.rows} rows × {pulled.code_size} "
            f"codes, {pulled.rows / max(pulled.seconds, 1e-9):.0f} rows/s)"
        )
    _print_summary(outcomes, answers)
    if stopped != 0:
        print(
            f"error: the model server exited with {stopped}; see {layout.home / 'server.log'}",
            file=sys.stderr,
        )
        return 1
    return 0


def _print_summary(outcomes: list, answers: dict[str, str]) -> None:
    rows = [("model", "version", "gate", "claim met", "Predict")]
    for outcome in outcomes:
        for model in FAMILIES[outcome.family].served_models():
            gate = outcome.gate if model == outcome.family else f"(with {outcome.family})"
            rows.append(
                (
                    model,
                    outcome.version or "-",
                    gate,
                    "yes" if outcome.blessed else "NO",
                    answers.get(model, "-"),
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
