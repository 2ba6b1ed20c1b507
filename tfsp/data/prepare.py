"""Split images and labels into train/eval/test TFRecord files plus a JSON manifest."""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from sklearn.model_selection import train_test_split

from tfsp.core.errors import UserError, one_line
from tfsp.core.features import IMAGE_KEY, IMAGE_PIXELS, IMAGE_SIZE, LABEL_KEY, NUM_CLASSES, SPLITS

DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
RECORD_FILE = "data.tfrecord"
MANIFEST_FILE = "manifest.json"

Progress = Callable[[str], None]


def to_example(image: np.ndarray, label: int) -> tf.train.Example:
    """Encode one [32, 32] image and its label as a tf.Example with the shared feature keys."""
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"image must have shape [{IMAGE_SIZE}, {IMAGE_SIZE}], got {pixels.shape}")
    feature = {
        IMAGE_KEY: tf.train.Feature(float_list=tf.train.FloatList(value=pixels.ravel().tolist())),
        LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def stratified_split(
    labels: np.ndarray, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0
) -> dict[str, np.ndarray]:
    """Split row indices into train/eval/test keeping class shares; same seed, same split.

    Each split's indices are sorted ascending.
    """
    train_frac, eval_frac, test_frac = _check_fractions(fractions)
    labels = np.asarray(labels)
    _check_class_sizes(labels, min(fractions))
    indices = np.arange(len(labels))
    try:
        train, rest = train_test_split(
            indices, test_size=eval_frac + test_frac, stratify=labels, random_state=seed
        )
        evaluation, test = train_test_split(
            rest,
            test_size=test_frac / (eval_frac + test_frac),
            stratify=labels[rest],
            random_state=seed,
        )
    except ValueError as err:
        raise UserError(f"cannot split {len(labels)} examples by class: {err}") from err
    parts = (train, evaluation, test)
    splits = {name: np.sort(part) for name, part in zip(SPLITS, parts, strict=True)}
    empty = [name for name, part in splits.items() if len(part) == 0]
    if empty:
        raise UserError(f"split {empty[0]} would be empty; use more data or larger fractions")
    return splits


def prepare_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    description: dict,
    output_dir: Path,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Write output_dir/<split>/data.tfrecord and output_dir/manifest.json; return the manifest.

    All-or-nothing: output is built in a temporary sibling folder and renamed into place, so
    a failure leaves neither a partial output_dir nor the temporary folder behind.
    """
    # Resolved so that names like "." or "out/.." still give a real parent and folder name.
    output_dir = Path(output_dir).resolve()
    images, labels = _check_inputs(images, labels)
    _check_output_dir(output_dir, overwrite)
    splits = stratified_split(labels, fractions, seed)
    manifest = _manifest(description, fractions, seed, labels, splits)
    tmp = output_dir.parent / f".{output_dir.name}.tmp-{os.getpid()}"
    try:
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        for name, rows in splits.items():
            _write_records(tmp / name / RECORD_FILE, images, labels, rows)
            if progress:
                progress(f"prepared {len(rows)} {name} examples")
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        _move_into_place(tmp, output_dir)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError | tf.errors.OpError):
            raise UserError(f"cannot write {output_dir}: {one_line(err)}") from err
        raise
    if progress:
        progress(f"wrote {output_dir}")
    return manifest


def read_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a split's TFRecord file back as (images [n, 32, 32] float32, labels [n] int64)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"split file {path} does not exist")
    spec = {
        IMAGE_KEY: tf.io.FixedLenFeature([IMAGE_PIXELS], tf.float32),
        LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64),
    }
    batches = tf.data.TFRecordDataset(str(path)).batch(1024)
    images, labels = [], []
    try:
        for batch in batches.map(lambda records: tf.io.parse_example(records, spec)):
            images.append(batch[IMAGE_KEY].numpy())
            labels.append(batch[LABEL_KEY].numpy())
    except tf.errors.OpError as err:
        raise UserError(f"cannot read {path}: {one_line(err)}") from err
    if not images:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32), np.zeros((0,), np.int64)
    flat = np.concatenate(images).astype(np.float32)
    return flat.reshape(-1, IMAGE_SIZE, IMAGE_SIZE), np.concatenate(labels)[:, 0].astype(np.int64)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != len(SPLITS):
        raise UserError(f"need {len(SPLITS)} split fractions (train, eval, test), got {fractions}")
    if any(not fraction > 0 for fraction in fractions):
        raise UserError(f"split fractions must all be > 0, got {list(fractions)}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise UserError(f"split fractions must sum to 1, got {list(fractions)} = {sum(fractions)}")
    return tuple(float(fraction) for fraction in fractions)


def _check_class_sizes(labels: np.ndarray, smallest_fraction: float) -> None:
    # Enough rows per class that the smallest split can get at least one of each; this also
    # covers sklearn's need for 2+ members per class in each of the two nested splits.
    needed = max(2, math.ceil(1 / smallest_fraction - 1e-9))
    classes, counts = np.unique(labels, return_counts=True)
    for label, count in zip(classes, counts, strict=True):
        if count < needed:
            raise UserError(
                f"class {label} has only {count} examples; a stratified split with these "
                f"fractions needs at least {needed} per class"
            )


def _check_inputs(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise UserError(f"images must have shape [n, 32, 32], got {list(images.shape)}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise UserError(f"need one label per image: {len(images)} images, labels {labels.shape}")
    if len(images) == 0:
        raise UserError("no images to prepare")
    if not np.issubdtype(images.dtype, np.number) or not np.isfinite(images).all():
        raise UserError("images contain non-finite values (NaN or inf)")
    if images.min() < 0.0 or images.max() > 1.0:
        raise UserError(f"image values must be in [0, 1], got [{images.min()}, {images.max()}]")
    if not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"labels must be integers, got dtype {labels.dtype}")
    bad = labels[(labels < 0) | (labels >= NUM_CLASSES)]
    if len(bad):
        raise UserError(f"label {bad[0]} is outside 0..{NUM_CLASSES - 1}")
    return images.astype(np.float32), labels.astype(np.int64)


def _check_output_dir(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"{output_dir} exists and is not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()):
        if not overwrite:
            raise UserError(f"{output_dir} exists; pass --overwrite to replace it")
        if not (output_dir / MANIFEST_FILE).is_file():
            # --overwrite replaces what this command wrote, never a folder of other files
            raise UserError(
                f"{output_dir} is not a prepared data folder (no {MANIFEST_FILE}); "
                "--overwrite replaces only those: choose another --output"
            )


def _manifest(
    description: dict,
    fractions: Sequence[float],
    seed: int,
    labels: np.ndarray,
    splits: dict[str, np.ndarray],
) -> dict:
    return {
        "source": description,
        "seed": seed,
        "fractions": dict(zip(SPLITS, (float(f) for f in fractions), strict=True)),
        "image_shape": [IMAGE_SIZE, IMAGE_SIZE, 1],
        "feature_keys": {"image": IMAGE_KEY, "label": LABEL_KEY},
        "splits": {
            name: {
                "file": f"{name}/{RECORD_FILE}",
                "num_examples": int(len(rows)),
                "class_counts": {
                    str(label): int(count)
                    for label, count in enumerate(np.bincount(labels[rows], minlength=NUM_CLASSES))
                },
                "source_indices": rows.tolist(),
            }
            for name, rows in splits.items()
        },
    }


def _write_records(path: Path, images: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in rows:
            writer.write(to_example(images[row], labels[row]).SerializeToString())


def _move_into_place(tmp: Path, output_dir: Path) -> None:
    if not output_dir.exists():
        tmp.rename(output_dir)
        return
    # Swap via renames so at every instant output_dir is either the old or the new complete copy.
    old = output_dir.parent / f".{output_dir.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    output_dir.rename(old)
    try:
        tmp.rename(output_dir)
    except BaseException:
        old.rename(output_dir)
        raise
    # The new data is already in place; a leftover old copy is clutter, not an error.
    shutil.rmtree(old, ignore_errors=True)
