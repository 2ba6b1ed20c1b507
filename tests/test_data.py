"""Tests for tfsp.data: sources, stratified split, TFRecord preparation and read-back."""

from __future__ import annotations

import gzip
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfsp.core.errors import UserError
from tfsp.core.features import IMAGE_KEY, LABEL_KEY, SPLITS
from tfsp.data import prepare
from tfsp.data.prepare import prepare_dataset, read_split, stratified_split, to_example
from tfsp.data.sources import (
    load_digits_source,
    load_idx,
    load_image_folder,
)

FRACTIONS = (0.7, 0.15, 0.15)


@pytest.fixture(scope="module")
def digits():
    return load_digits_source()


def small_dataset(n_per_class: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), n_per_class).astype(np.int64)
    images = rng.random((len(labels), 32, 32), dtype=np.float32)
    return images, labels, {"source": "synthetic"}


def leftovers(output_dir: Path) -> list[str]:
    """Names in output_dir's parent that look like our temp or swap folders, plus output_dir."""
    return sorted(
        p.name
        for p in output_dir.parent.iterdir()
        if p.name == output_dir.name or p.name.startswith(f".{output_dir.name}.")
    )


def save_png(path: Path, pixels: np.ndarray, suffix_format: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path, suffix_format)


def idx_bytes(type_code: int, data: np.ndarray) -> bytes:
    header = bytes([0, 0, type_code, data.ndim]) + struct.pack(f">{data.ndim}I", *data.shape)
    return header + data.astype(np.uint8).tobytes()


def write_idx_pair(folder: Path, images: np.ndarray, labels: np.ndarray, gz: bool = False):
    suffix = ".gz" if gz else ""
    images_path = folder / f"images-idx3-ubyte{suffix}"
    labels_path = folder / f"labels-idx1-ubyte{suffix}"
    opener = gzip.open if gz else open
    with opener(images_path, "wb") as handle:
        handle.write(idx_bytes(0x08, images))
    with opener(labels_path, "wb") as handle:
        handle.write(idx_bytes(0x08, labels))
    return images_path, labels_path


# --- sources: digits and fitting -------------------------------------------------------------


def test_digits_source_shape_range_and_classes(digits):
    images, labels, description = digits
    printed = 8 * 10 * len(description["printed_fonts"])  # 8 per digit and font by default
    assert printed == 640
    assert images.shape == (1797 + printed, 32, 32)
    assert images.dtype == np.float32 and labels.dtype == np.int64
    assert images.min() == 0.0 and images.max() == 1.0
    assert sorted(set(labels.tolist())) == list(range(10))
    assert np.bincount(labels[1797:]).tolist() == [printed // 10] * 10
    assert description["num_examples"] == 1797 + printed
    assert (description["handwritten_examples"], description["printed_examples"]) == (1797, 640)
    # Framed: every digit's ink reaches the top and bottom rows or both sides (the square's
    # longer side), and the ink is bright on a dark background.
    touches = (images[:, 0].max(axis=1) > 0.2) & (images[:, -1].max(axis=1) > 0.2)
    touches |= (images[:, :, 0].max(axis=1) > 0.2) & (images[:, :, -1].max(axis=1) > 0.2)
    assert touches.mean() > 0.95
    assert np.median(images.mean(axis=(1, 2))) < 0.5


def test_printed_digits_can_be_left_out():
    images, labels, description = load_digits_source(0)
    assert images.shape == (1797, 32, 32) and description["printed_examples"] == 0
    with pytest.raises(UserError, match="0 or more"):
        load_digits_source(-1)


# --- stratified split -----------------------------------------------------------------------


def test_split_is_stratified(digits):
    _, labels, _ = digits
    splits = stratified_split(labels, FRACTIONS, seed=0)
    for name, fraction in zip(SPLITS, FRACTIONS, strict=True):
        split_labels = labels[splits[name]]
        for label in range(10):
            expected = fraction * np.sum(labels == label)
            assert abs(np.sum(split_labels == label) - expected) <= 2, (name, label)


def test_split_is_deterministic_per_seed(digits):
    _, labels, _ = digits
    first = stratified_split(labels, FRACTIONS, seed=3)
    again = stratified_split(labels, FRACTIONS, seed=3)
    other = stratified_split(labels, FRACTIONS, seed=4)
    for name in SPLITS:
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["train"], other["train"])


def test_split_is_disjoint_sorted_and_covers_all_rows(digits):
    _, labels, _ = digits
    splits = stratified_split(labels, FRACTIONS, seed=0)
    joined = np.concatenate([splits[name] for name in SPLITS])
    assert len(joined) == len(labels)
    np.testing.assert_array_equal(np.sort(joined), np.arange(len(labels)))
    for name in SPLITS:
        assert len(splits[name]) > 0
        assert np.all(np.diff(splits[name]) > 0)


@pytest.mark.parametrize(
    "fractions", [(0.7, 0.2, 0.2), (0.8, 0.2, 0.0), (1.1, -0.05, -0.05), (0.5, 0.5)]
)
def test_split_rejects_bad_fractions(fractions):
    _, labels, _ = small_dataset()
    with pytest.raises(UserError, match="fractions"):
        stratified_split(labels, fractions)


def test_split_names_class_with_too_few_examples():
    labels = np.array([0] * 20 + [7] * 3 + [1] * 20)
    with pytest.raises(UserError, match=r"class 7 has only 3 examples"):
        stratified_split(labels, FRACTIONS)


# --- prepare_dataset ------------------------------------------------------------------------


def test_to_example_layout():
    image = np.arange(1024, dtype=np.float32).reshape(32, 32) / 1024
    example = to_example(image, 7)
    features = example.features.feature
    np.testing.assert_array_equal(np.array(features[IMAGE_KEY].float_list.value), image.ravel())
    assert list(features[LABEL_KEY].int64_list.value) == [7]


def test_prepare_round_trips_and_writes_manifest(tmp_path, digits):
    images, labels, description = digits
    out = tmp_path / "prepared"
    messages: list[str] = []
    manifest = prepare_dataset(images, labels, description, out, seed=5, progress=messages.append)

    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert on_disk["seed"] == 5 and on_disk["image_shape"] == [32, 32, 1]
    assert on_disk["source"] == description
    assert on_disk["feature_keys"] == {"image": IMAGE_KEY, "label": LABEL_KEY}
    assert len(messages) == 4 and str(out) in messages[-1]
    expected = stratified_split(labels, FRACTIONS, seed=5)
    seen = []
    for name in SPLITS:
        entry = on_disk["splits"][name]
        rows = np.array(entry["source_indices"])
        np.testing.assert_array_equal(rows, expected[name])
        back_images, back_labels = read_split(out / name / "data.tfrecord")
        assert entry["num_examples"] == len(rows) == len(back_labels)
        np.testing.assert_array_equal(back_images, images[rows])
        np.testing.assert_array_equal(back_labels, labels[rows])
        counts = np.bincount(back_labels, minlength=10)
        assert entry["class_counts"] == {str(c): int(counts[c]) for c in range(10)}
        seen.extend(rows.tolist())
    assert sorted(seen) == list(range(len(labels)))
    assert leftovers(out) == ["prepared"]


def test_prepare_overwrite_replaces_old_output(tmp_path):
    images, labels, description = small_dataset()
    out = tmp_path / "prepared"
    prepare_dataset(images, labels, description, out)
    (out / "stale.txt").write_text("old")
    prepare_dataset(images, labels, description, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["eval", "manifest.json", "test", "train"]
    assert leftovers(out) == ["prepared"]


@pytest.mark.parametrize(
    "overwrite, refusal",
    [
        (False, "exists; pass --overwrite"),
        # --overwrite never replaces a folder this command did not write
        (True, "not a prepared data folder"),
    ],
)
def test_a_folder_of_other_files_is_refused_and_left_as_it_was(tmp_path, overwrite, refusal):
    images, labels, description = small_dataset()
    out = tmp_path / "photos"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match=refusal):
        prepare_dataset(images, labels, description, out, overwrite=overwrite)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"
    assert leftovers(out) == ["photos"]


def failing_to_example(monkeypatch, fail_at: int) -> None:
    calls = {"n": 0}
    real = prepare.to_example

    def flaky(image, label):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise RuntimeError("disk on fire")
        return real(image, label)

    monkeypatch.setattr(prepare, "to_example", flaky)


def test_failure_mid_write_leaves_no_output(tmp_path, monkeypatch):
    images, labels, description = small_dataset()
    out = tmp_path / "prepared"
    failing_to_example(monkeypatch, fail_at=80)  # inside the eval split, after train is written
    with pytest.raises(RuntimeError, match="disk on fire"):
        prepare_dataset(images, labels, description, out)
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_old_output(tmp_path, monkeypatch):
    images, labels, description = small_dataset()
    out = tmp_path / "prepared"
    prepare_dataset(images, labels, description, out)
    (out / "keep.txt").write_text("old")
    failing_to_example(monkeypatch, fail_at=50)
    with pytest.raises(RuntimeError):
        prepare_dataset(images, labels, description, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "eval", "keep.txt", "manifest.json", "test", "train"
    ]  # fmt: skip
    assert leftovers(out) == ["prepared"]


def test_unwritable_output_is_a_user_error(tmp_path):
    images, labels, description = small_dataset()
    (tmp_path / "afile").write_text("in the way")
    with pytest.raises(UserError, match="cannot write .*afile"):
        prepare_dataset(images, labels, description, tmp_path / "afile" / "prepared")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_bad_label_in_last_row_leaves_no_output(tmp_path):
    images, labels, description = small_dataset()
    labels[-1] = 12
    out = tmp_path / "prepared"
    with pytest.raises(UserError, match="label 12"):
        prepare_dataset(images, labels, description, out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda x, y: (x[:, :28, :28], y), "shape"),
        (lambda x, y: (np.where(x > 0.99, np.nan, x), y), "non-finite"),
        (lambda x, y: (x * 2, y), r"\[0, 1\]"),
        (lambda x, y: (x, y[:-1]), "one label per image"),
        (lambda x, y: (x, y.astype(np.float32)), "integers"),
    ],
)
def test_prepare_validates_inputs(tmp_path, mutate, message):
    images, labels, description = small_dataset()
    bad_images, bad_labels = mutate(images, labels)
    with pytest.raises(UserError, match=message):
        prepare_dataset(bad_images, bad_labels, description, tmp_path / "prepared")
    assert list(tmp_path.iterdir()) == []


def test_read_split_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_split(tmp_path / "missing.tfrecord")
    garbage = tmp_path / "garbage.tfrecord"
    garbage.write_bytes(os.urandom(200))
    with pytest.raises(UserError, match="garbage.tfrecord"):
        read_split(garbage)


# --- image folders --------------------------------------------------------------------------


def test_image_folder_frames_and_keeps_digit_labels(tmp_path):
    three = np.zeros((28, 28), np.uint8)
    three[4:20, 10:18] = 255  # a 16×8 bright bar, off centre
    five = np.zeros((50, 30), np.uint8)  # another size
    five[30:40, 0:20] = 200
    save_png(tmp_path / "3" / "a.png", three)
    save_png(tmp_path / "5" / "b.PNG", five)
    (tmp_path / "5" / ".DS_Store").write_bytes(b"junk")
    images, labels, description = load_image_folder(tmp_path)
    assert labels.tolist() == [3, 5]
    assert description["classes"] == {"3": 3, "5": 5}
    assert description["original_sizes"] == ["28×28", "30×50"]
    assert images.shape == (2, 32, 32)
    # The bar fills the height and sits centred in a square: the middle half of the columns
    # is ink (enlarged bilinearly, so each edge blends over two columns).
    np.testing.assert_allclose(images[0][:, 9:23], 1.0, atol=1e-6)
    np.testing.assert_allclose(images[0][:, :7], 0.0, atol=1e-6)
    np.testing.assert_allclose(images[0][:, 25:], 0.0, atol=1e-6)
    # The 10×20 block fills the width, centred vertically.
    np.testing.assert_allclose(images[1][9:23], 1.0, atol=1e-6)
    np.testing.assert_allclose(images[1][:7], 0.0, atol=1e-6)


def test_image_folder_named_classes_and_dark_ink_on_paper(tmp_path):
    # Dark ink on white paper, as a scan would be; JPEG is lossy so use flat regions.
    page = np.full((40, 40), 255, dtype=np.uint8)
    page[8:32, 16:24] = 0
    save_png(tmp_path / "cat" / "x.jpg", page, "JPEG")
    save_png(tmp_path / "ant" / "y.jpeg", np.full((40, 40), 255, dtype=np.uint8), "JPEG")
    images, labels, description = load_image_folder(tmp_path)
    assert description["classes"] == {"ant": 0, "cat": 1}
    assert labels.tolist() == [0, 1]
    assert images.shape == (2, 32, 32)
    np.testing.assert_allclose(images[0], 0.0, atol=0.02)  # a blank page: background
    # The polarity is detected: the black bar becomes bright ink, framed to the full height.
    np.testing.assert_allclose(images[1][2:30, 12:20], 1.0, atol=0.05)
    np.testing.assert_allclose(images[1][:, :8], 0.0, atol=0.05)


def test_image_folder_rejects_corrupt_png(tmp_path):
    save_png(tmp_path / "0" / "good.png", np.zeros((8, 8)))
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "broken.png").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(UserError, match="broken.png"):
        load_image_folder(tmp_path)


def test_image_folder_rejects_truncated_png(tmp_path):
    save_png(tmp_path / "0" / "whole.png", np.random.default_rng(0).integers(0, 256, (64, 64)))
    data = (tmp_path / "0" / "whole.png").read_bytes()
    (tmp_path / "0" / "whole.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="whole.png"):
        load_image_folder(tmp_path)


def test_image_folder_rejects_empty_class(tmp_path):
    save_png(tmp_path / "0" / "a.png", np.zeros((8, 8)))
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / ".hidden").write_text("not an image")
    with pytest.raises(UserError, match=r"class folder .*1 has no images"):
        load_image_folder(tmp_path)


def test_image_folder_rejects_unsupported_extension(tmp_path):
    save_png(tmp_path / "0" / "a.png", np.zeros((8, 8)))
    (tmp_path / "0" / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="notes.txt"):
        load_image_folder(tmp_path)


def test_image_folder_rejects_missing_root_no_classes_and_too_many(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere")
    with pytest.raises(UserError, match="no class sub-folders"):
        load_image_folder(tmp_path)
    for index in range(11):
        save_png(tmp_path / f"c{index:02d}" / "a.png", np.zeros((8, 8)))
    with pytest.raises(UserError, match="11 class folders"):
        load_image_folder(tmp_path)


# --- IDX ------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    raw = np.zeros((6, 28, 28), dtype=np.uint8)
    for row in range(6):  # MNIST-like: a bright square of side 8 + 2·row, off centre
        raw[row, 3 : 11 + 2 * row, 5 : 13 + 2 * row] = 255
    raw_labels = np.array([0, 9, 3, 3, 1, 7], dtype=np.uint8)
    images, labels, description = load_idx(*write_idx_pair(tmp_path, raw, raw_labels, gz=gz))
    assert images.shape == (6, 32, 32) and images.dtype == np.float32
    np.testing.assert_allclose(images, 1.0, atol=1e-6)  # framed: each square fills the frame
    assert labels.dtype == np.int64 and labels.tolist() == raw_labels.tolist()
    assert description["original_size"] == [28, 28]


def test_idx_rejects_bad_magic(tmp_path):
    images_path, labels_path = write_idx_pair(tmp_path, np.zeros((2, 4, 4)), np.zeros(2))
    data = bytearray(images_path.read_bytes())
    data[2] = 0x0D  # float type code instead of unsigned byte
    images_path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"images-idx3-ubyte .*bad magic"):
        load_idx(images_path, labels_path)


def test_idx_rejects_wrong_dims_and_size(tmp_path):
    images_path, labels_path = write_idx_pair(tmp_path, np.zeros((2, 4, 4)), np.zeros(2))
    labels_path.write_bytes(images_path.read_bytes())
    with pytest.raises(UserError, match="labels-idx1-ubyte has 3 dimensions; expected 1"):
        load_idx(images_path, labels_path)
    images_path, labels_path = write_idx_pair(tmp_path, np.zeros((2, 4, 4)), np.zeros(2))
    images_path.write_bytes(images_path.read_bytes()[:-1])
    with pytest.raises(UserError, match=r"images-idx3-ubyte has 47 bytes .* implies 48"):
        load_idx(images_path, labels_path)


def test_idx_rejects_count_mismatch_and_bad_labels(tmp_path):
    images_path, labels_path = write_idx_pair(tmp_path, np.zeros((3, 4, 4)), np.zeros(2))
    with pytest.raises(UserError, match="3 images but .* 2 labels"):
        load_idx(images_path, labels_path)
    images_path, labels_path = write_idx_pair(tmp_path, np.zeros((2, 4, 4)), np.array([1, 10]))
    with pytest.raises(UserError, match="labels-idx1-ubyte has label 10"):
        load_idx(images_path, labels_path)
