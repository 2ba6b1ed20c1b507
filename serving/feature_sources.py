"""Where `tfsp features` reads images from: a .npy array, TFRecords, or a folder of images.

Every source streams: it knows its row count up front and yields fixed-size batches from
any starting row ([batch, 32, 32, 1] float32 pixels; an image folder, its files' encoded
bytes), so a 100,000-row pull never holds more than a few batches in memory and a resumed
pull can start where the last one stopped.
"""

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfsp.core.errors import UserError
from tfsp.core.features import IMAGE_EXTENSIONS, IMAGE_KEY, IMAGE_PIXELS, IMAGE_SIZE

Batch = tuple[int, np.ndarray]  # (first row, images [n, 32, 32, 1] or file bytes [n])


@dataclass
class FeatureSource:
    """A row-addressable stream of images; `ids` name the rows in the output."""

    description: str
    num_rows: int
    fingerprint: str  # changes when the input changes, so a stale checkpoint is refused
    # Batches hold encoded image files (bytes) rather than [n, 32, 32, 1] pixels.
    sends_image_files = False

    def batches(self, start: int, batch_size: int) -> Iterator[Batch]:  # pragma: no cover
        """Yield (first row, images or encoded image files) from row `start` on."""
        raise NotImplementedError

    def ids(self, start: int, stop: int) -> list:
        """Row ids for rows [start, stop): row numbers unless the source has names."""
        return list(range(start, stop))


def _fingerprint(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _check_shape(shape: tuple[int, ...], where: str) -> None:
    if tuple(shape[1:]) not in (
        (IMAGE_SIZE, IMAGE_SIZE),
        (IMAGE_SIZE, IMAGE_SIZE, 1),
        (IMAGE_PIXELS,),
    ):
        raise UserError(
            f"{where} has shape {list(shape)}; expected [n, 32, 32], [n, 32, 32, 1] or [n, 1024]"
        )


PIXEL_SLACK = 1e-6  # how far past [0, 1] a pixel may stray by float rounding


def check_pixel_values(images: np.ndarray, where: str, row_ids: Sequence | None = None) -> None:
    """Refuse pixels no family was trained on: NaN, infinities, or values outside [0, 1]
    (0-255 bytes, most often). The server would answer them all the same, with confident
    nonsense, so the mistake is caught here, naming the first row that holds one (by its
    id in `row_ids`, else its index in `images`)."""
    if images.size == 0 or (images.min() >= -PIXEL_SLACK and images.max() <= 1 + PIXEL_SLACK):
        return  # the common case, in two reductions (a NaN makes min() NaN, which fails)
    flat = images.reshape(len(images), -1)
    # A float32 rounding step past either end (1.0000001) is a pixel still; NaN compares
    # false both ways, so it is outside.
    outside = ~((flat >= -PIXEL_SLACK) & (flat <= 1 + PIXEL_SLACK))
    row, column = (int(i) for i in np.argwhere(outside)[0])
    value = float(flat[row, column])
    hint = "; 0-255 pixels? divide them by 255" if np.isfinite(value) and value >= 2 else ""
    name = row_ids[row] if row_ids is not None else row
    raise UserError(
        f"{where}: row {name} holds {value:.7g}, but pixels are numbers in [0, 1]{hint}"
    )


def _as_images(array: np.ndarray, where: str, first_row: int) -> np.ndarray:
    """[n, 32, 32], [n, 32, 32, 1] or [n, 1024] → [n, 32, 32, 1] float32, pixels checked."""
    _check_shape(tuple(array.shape), where)
    images = np.asarray(array, dtype=np.float32).reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1)
    check_pixel_values(images, where, range(first_row, first_row + len(images)))
    return images


class NpySource(FeatureSource):
    """A .npy array, read slice by slice with plain file reads.

    Not memory-mapped: mapped pages stay resident as they are read, so a mapped pull's
    memory would grow with the input; these reads keep it at a few batches.
    """

    def __init__(self, path: Path) -> None:
        try:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran_order, dtype = read_header(f)
                self._offset = f.tell()
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {path} as a .npy array: {exc}") from exc
        if fortran_order or dtype.hasobject or not shape:
            raise UserError(f"{path}: expected a C-ordered numeric array with rows")
        _check_shape(tuple(shape), str(path))  # before any work
        self._path, self._dtype, self._row_shape = path, dtype, tuple(shape[1:])
        self._row_items = int(np.prod(self._row_shape))
        super().__init__(f"{path} ({shape[0]} rows)", int(shape[0]), _fingerprint(path))

    def batches(self, start: int, batch_size: int) -> Iterator[Batch]:
        with open(self._path, "rb") as f:
            for first in range(start, self.num_rows, batch_size):
                count = min(batch_size, self.num_rows - first)
                f.seek(self._offset + first * self._row_items * self._dtype.itemsize)
                flat = np.fromfile(f, dtype=self._dtype, count=count * self._row_items)
                yield (
                    first,
                    _as_images(flat.reshape(count, *self._row_shape), str(self._path), first),
                )


def _tensorflow(path: Path):  # noqa: ANN202 (the tensorflow module, imported lazily)
    # TF's own reader checks every record's CRC32C; the light client install has no TF.
    try:
        import tensorflow as tf
    except ImportError:
        raise UserError(
            f"{path}: reading TFRecord files needs TensorFlow, which the light client install "
            "leaves out (pip install 'tfsp[full]'); or pass a .npy file or an image folder"
        ) from None
    return tf


class TFRecordSource(FeatureSource):
    """The TFRecord files `tfsp data prepare` writes (a file, or a split's folder)."""

    def __init__(self, path: Path) -> None:
        tf = _tensorflow(path)
        files = sorted(path.glob("*.tfrecord")) if path.is_dir() else [path]
        if not files:
            raise UserError(f"{path} holds no .tfrecord files")
        self._files, self._path = [str(f) for f in files], path
        try:
            rows = sum(1 for _ in tf.data.TFRecordDataset(self._files))
        except tf.errors.OpError as exc:
            raise UserError(f"cannot read TFRecords in {path}: {exc.message}") from exc
        super().__init__(f"{path} ({rows} rows)", rows, _fingerprint(*files))

    def batches(self, start: int, batch_size: int) -> Iterator[Batch]:
        import tensorflow as tf

        spec = {IMAGE_KEY: tf.io.FixedLenFeature([IMAGE_PIXELS], tf.float32)}
        records = tf.data.TFRecordDataset(self._files).skip(start).batch(batch_size)
        first = start
        try:
            for serialized in records:
                images = tf.io.parse_example(serialized, spec)[IMAGE_KEY].numpy()
                yield first, _as_images(images, str(self._path), first)
                first += len(images)
        except tf.errors.OpError as exc:
            raise UserError(f"bad TFRecord near row {first}: {exc.message}") from exc


def image_file_bytes(paths: list[Path]) -> np.ndarray:
    """The files' contents as a bytes array (a DT_STRING tensor); UserError naming a file
    that cannot be read."""
    contents = np.empty(len(paths), dtype=object)
    for row, path in enumerate(paths):
        try:
            contents[row] = path.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read image {path}: {exc.strerror or exc}") from None
    return contents


class ImageFolderSource(FeatureSource):
    """Every PNG/JPEG under a folder (sorted by path), as encoded bytes; ids are the
    relative paths."""

    sends_image_files = True

    def __init__(self, path: Path) -> None:
        self._root = path
        self._files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in IMAGE_EXTENSIONS
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not self._files:
            raise UserError(f"{path} holds no .png, .jpg or .jpeg images")
        listing = hashlib.sha256("\n".join(map(str, self._files)).encode()).hexdigest()
        super().__init__(f"{path} ({len(self._files)} images)", len(self._files), listing[:16])

    def batches(self, start: int, batch_size: int) -> Iterator[Batch]:
        # The files' bytes, as they are: the model decodes and frames them.
        for first in range(start, self.num_rows, batch_size):
            yield first, image_file_bytes(self._files[first : first + batch_size])

    def ids(self, start: int, stop: int) -> list:
        return [str(p.relative_to(self._root)) for p in self._files[start:stop]]


def open_source(path: Path) -> FeatureSource:
    """The source for `path`: .npy file, .tfrecord file or folder of them, or image folder."""
    if not path.exists():
        raise UserError(f"input {path} does not exist")
    if path.is_file():
        if path.suffix == ".npy":
            return NpySource(path)
        if path.suffix == ".tfrecord":
            return TFRecordSource(path)
        raise UserError(f"input {path}: expected a .npy or .tfrecord file, or a folder")
    if any(path.glob("*.tfrecord")):
        return TFRecordSource(path)
    if os.path.isdir(path):
        return ImageFolderSource(path)
    raise UserError(f"input {path} is neither a file nor a folder")
