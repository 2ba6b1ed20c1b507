"""Loaders that turn raw image sources into 32×32 grey images in [0, 1] with int64 labels.

Every loader returns (images [n, 32, 32] float32, labels [n] int64, description dict); the
description is JSON-serialisable and ends up in the dataset manifest. Every source's images
are framed (tfsp/data/framing.py: ink bounding box, square, 32×32, ink bright), as the served
models' `predict_image_bytes` signature frames a client's image.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from tfsp.core.errors import UserError, one_line
from tfsp.core.features import IMAGE_EXTENSIONS, NUM_CLASSES

# Renderings of each digit per training font that join the handwritten digits by default.
DEFAULT_PRINTED_PER_FONT = 8
IDX_UBYTE = 0x08

Loaded = tuple[np.ndarray, np.ndarray, dict]


def load_digits_source(printed_per_font: int = DEFAULT_PRINTED_PER_FONT) -> Loaded:
    """scikit-learn's 1,797 UCI 8×8 handwritten digits, plus `printed_per_font` renderings of
    each digit in each of tfsp/data/printed.py's fonts; all framed to 32×32 in [0, 1]."""
    from sklearn.datasets import load_digits

    from tfsp.data.framing import frame_arrays
    from tfsp.data.printed import TRAINING_FONTS, render_printed_digits

    if printed_per_font < 0:
        raise UserError(f"printed digits per font must be 0 or more, got {printed_per_font}")
    digits = load_digits()
    grey = list(digits.images / 16.0)
    labels = digits.target.astype(np.int64)
    if printed_per_font:
        printed, printed_labels = render_printed_digits(printed_per_font)
        grey += printed
        labels = np.concatenate([labels, printed_labels])
    description = {
        "source": "sklearn_digits",
        "num_examples": int(len(labels)),
        "handwritten_examples": len(digits.images),
        "printed_examples": int(len(labels)) - len(digits.images),
        "printed_fonts": list(TRAINING_FONTS) if printed_per_font else [],
        "original_size": [8, 8],
        "classes": {str(label): label for label in range(NUM_CLASSES)},
    }
    return frame_arrays(grey), labels, description


def load_image_folder(root: Path) -> Loaded:
    """Load images (any sizes, either polarity) from root/<class>/<file>, framed.

    When every class folder is named 0..9, those are the labels; otherwise each folder is
    labelled by its sorted position (a `3` among other names is not label 3).
    """
    from tfsp.data.framing import frame_arrays

    root = Path(root)
    classes = _class_labels(_class_folders(root))
    images: list[np.ndarray] = []
    labels: list[int] = []
    for name, label in classes.items():
        for path in _image_files(root / name):
            images.append(read_grey_image(path))
            labels.append(label)
    description = {
        "source": "image_folder",
        "root": str(root.resolve()),
        "num_examples": len(labels),
        "original_sizes": sorted({_size(image.shape) for image in images}),
        "classes": classes,
    }
    return frame_arrays(images), np.asarray(labels, dtype=np.int64), description


def load_idx(images_path: Path, labels_path: Path) -> Loaded:
    """Load an MNIST-style pair of IDX files (ubyte images [n, rows, cols], labels [n]; .gz ok)."""
    images_path, labels_path = Path(images_path), Path(labels_path)
    images = _read_idx(images_path, ndim=3)
    labels = _read_idx(labels_path, ndim=1).astype(np.int64)
    if len(images) == 0:
        raise UserError(f"{images_path} contains no images")
    if len(images) != len(labels):
        raise UserError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    if labels.max() >= NUM_CLASSES:
        raise UserError(f"{labels_path} has label {labels.max()}; labels must be 0..9")
    description = {
        "source": "idx",
        "images": str(images_path.resolve()),
        "labels": str(labels_path.resolve()),
        "num_examples": int(len(labels)),
        "original_size": list(images.shape[1:]),
        "classes": {str(label): label for label in range(NUM_CLASSES)},
    }
    from tfsp.data.framing import frame_arrays

    return frame_arrays(images / 255.0), labels, description


def _class_folders(root: Path) -> list[str]:
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist or is not a folder")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise UserError(f"{root} has no class sub-folders (expected {root}/<class>/<image>)")
    if len(names) > NUM_CLASSES:
        raise UserError(f"{root} has {len(names)} class folders; at most {NUM_CLASSES} allowed")
    return names


def _class_labels(names: list[str]) -> dict[str, int]:
    digit_names = {str(label) for label in range(NUM_CLASSES)}
    if all(name in digit_names for name in names):
        return {name: int(name) for name in names}
    return {name: index for index, name in enumerate(names)}


def _image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    if not files:
        raise UserError(f"class folder {folder} has no images")
    for path in files:
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise UserError(f"{path} is not a .png, .jpg or .jpeg file")
    return files


def read_grey_image(path: Path) -> np.ndarray:
    """One image file as a grey [h, w] float32 array in [0, 1]; UserError naming a bad file."""
    try:
        with Image.open(path) as image:
            # open() only parses the header; load() decodes, which is where truncation shows.
            image.load()
            grey = image.convert("L")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise UserError(f"cannot read image {path}: {one_line(err)}") from err
    return np.asarray(grey, dtype=np.float32) / 255.0


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    data = _read_bytes(path)
    header_size = 4 + 4 * ndim
    if len(data) < 4 or data[:3] != bytes([0, 0, IDX_UBYTE]):
        raise UserError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    if data[3] != ndim:
        raise UserError(f"{path} has {data[3]} dimensions; expected {ndim}")
    if len(data) < header_size:
        raise UserError(f"{path} is truncated inside its IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    expected = header_size + int(np.prod(dims))
    if len(data) != expected:
        raise UserError(
            f"{path} has {len(data)} bytes but its header {list(dims)} implies {expected}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError) as err:
        raise UserError(f"cannot read {path}: {one_line(err)}") from err


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}×{shape[0]}"
