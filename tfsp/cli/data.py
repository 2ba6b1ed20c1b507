"""`tfsp data prepare`: the train/eval/test TFRecords every family reads."""

import argparse
import json
import sys
from pathlib import Path

from tfsp.cli.common import add_home, command
from tfsp.core import argtypes
from tfsp.core.errors import UsageError

DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the `data` group."""
    data = commands.add_parser("data", help="prepare training data").add_subparsers(
        dest="data_command", required=True, metavar="COMMAND"
    )
    parser = data.add_parser(
        "prepare",
        help="write train/eval/test TFRecords (32×32×1 images, labels)",
        description="Write a stratified train/eval/test split as TFRecord tf.Examples. The "
        "default source is scikit-learn's 1,797 UCI handwritten digits (8×8) and digits "
        "printed in 8 fonts (--printed-per-font renderings of each). Every image is framed "
        "as the served models frame a client's image: ink bounding box, padded to a square, "
        "32×32, ink bright (the polarity is detected), so images of any size are accepted.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--images-dir", type=Path, help="folder with one sub-folder of PNG/JPEG files per class"
    )
    source.add_argument(
        "--idx", nargs=2, type=Path, metavar=("IMAGES", "LABELS"), help="MNIST IDX files (.gz ok)"
    )
    parser.add_argument(
        "--printed-per-font",
        type=argtypes.non_negative_int,
        default=None,
        help="default source only: renderings of each digit per font added to the handwritten "
        "digits (default 8, 0 for none)",
    )
    parser.add_argument("--output", type=Path, help="output folder (default: <home>/data/digits)")
    parser.add_argument(
        "--fractions",
        type=argtypes.fractions,
        default=DEFAULT_FRACTIONS,
        help="train,eval,test fractions (default: 0.7,0.15,0.15)",
    )
    parser.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing prepared data folder (one with a manifest.json; a folder "
        "of other files is refused)",
    )
    add_home(parser)
    command(parser, prepare_data)


def prepare_data(
    home: str | None = None,
    images_dir: Path | None = None,
    idx: tuple[Path, Path] | None = None,
    printed_per_font: int | None = None,
    output: Path | None = None,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    overwrite: bool = False,
) -> int:
    """`tfsp data prepare`: load a source, split it, write the TFRecords and a manifest."""
    if printed_per_font is not None and (images_dir or idx):
        raise UsageError("--printed-per-font applies to the default source only")
    from tfsp.core.progress import quiet_frameworks

    quiet_frameworks()
    from tfsp.data import prepare, sources
    from tfsp.pipelines.layout import LocalLayout

    if images_dir:
        loaded = sources.load_image_folder(images_dir)
    elif idx:
        loaded = sources.load_idx(*idx)
    else:
        per_font = (
            sources.DEFAULT_PRINTED_PER_FONT if printed_per_font is None else printed_per_font
        )
        loaded = sources.load_digits_source(per_font)
    output = output or LocalLayout.from_env(home).data_dir
    manifest = prepare.prepare_dataset(
        *loaded,
        output,
        fractions=fractions,
        seed=seed,
        overwrite=overwrite,
        progress=lambda message: print(message, file=sys.stderr),
    )
    counts = {split: info["num_examples"] for split, info in manifest["splits"].items()}
    print(f"prepared {json.dumps(counts)} in {output}")
    return 0
