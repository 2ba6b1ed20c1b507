"""`tfsp features --saved-model`: the encoder over a whole data set, on Apache Beam.

For data sets too large for one gRPC client: the encoder SavedModel runs inside the Beam
workers, through Beam's RunInference, which batches the rows and loads the model once per
worker. The model loads on TF Serving's load path (tfsp.serving.servable), so the codes are the
ones the served encoder returns. Beam's FnApiRunner in-process by default; `--beam-arg` passes
any Beam option (DataflowRunner, FlinkRunner, `--direct_num_workers`...).

Inputs: TFRecords of tf.Examples with a 1,024-float `image` feature (what `tfsp data
prepare` writes), Parquet with `id` and `image` columns (a file, a folder or a glob, local or
on gs://), a .npy array, or a folder of images. Every row keeps an id: `<file
name>:<record>` for TFRecords, the `id` column for Parquet, the row number for .npy, the
relative path for images. Outputs, sharded, in a folder that appears only when the job
succeeded: Parquet (`id`, `code_0`…) or TFRecords (each input tf.Example with a `codes`
feature added; TFRecord inputs only).
"""

import atexit
import logging
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics.metric import Metrics, MetricsFilter
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from tfsp.core.errors import UsageError, UserError
from tfsp.core.features import IMAGE_KEY, IMAGE_PIXELS, IMAGE_SIZE
from tfsp.core.signatures import CODES_KEY, IMAGES_INPUT, PREDICT_IMAGE_BYTES, PREDICT_IMAGES
from tfsp.serving.features import encoder_call

FORMATS = ("parquet", "tfrecord")
METRICS_NAMESPACE = "tfsp_features"
NPY_ROWS_PER_TASK = 4096  # the unit of parallelism for an array
IMAGES_PER_TASK = 256  # ... and for a folder of images (TFRecords: one file a task)
PROGRESS_SECONDS = 5.0


class _NoMemoryProbeWarning(logging.Filter):
    """Beam 2.77's RunInference warns on every batch that it cannot read the process's
    memory: its optional model_manager import fails here and takes `resource` with it
    (apache_beam/ml/inference/base.py). The figure only feeds a metric we do not read."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Resource module is not available" not in record.getMessage()


logging.getLogger().addFilter(_NoMemoryProbeWarning())


class BadInput(ValueError):
    """A row or file the encoder cannot take; the message names the file."""


# An element of the pipeline: a chunk of up to --batch-size rows, (row ids, images
# [n, 32, 32, 1] float32 or an image folder's file bytes [n], the input tf.Examples
# serialized, or None for inputs that are not TFRecords). Rows travel in chunks, not one by
# one: Beam's per-element cost (about 50 µs here) would otherwise exceed the encoder's own
# per-row cost several times over.
Chunk = tuple[list[str], np.ndarray, list[bytes] | None]


def encoder_code_size(saved_model: str, *, image_files: bool = False) -> int:
    """The code size of the encoder SavedModel (a local or gs:// folder); UserError if it
    is not one (or, for `image_files`, has no signature that takes them)."""
    from tfsp.serving.servable import LoadError, read_meta_graph

    try:
        graph = read_meta_graph(saved_model, {"serve"})
    except LoadError as exc:
        raise UserError(f"--saved-model {saved_model}: {exc}") from None
    signature = graph.signature_def.get(PREDICT_IMAGES)
    if (
        signature is None
        or IMAGES_INPUT not in signature.inputs
        or CODES_KEY not in signature.outputs
    ):
        raise UserError(
            f"--saved-model {saved_model} is not an encoder: it needs a {PREDICT_IMAGES!r} "
            f"signature from {IMAGES_INPUT!r} to {CODES_KEY!r} (signatures: "
            f"{sorted(graph.signature_def)})"
        )
    if image_files and PREDICT_IMAGE_BYTES not in graph.signature_def:
        raise UserError(
            f"--saved-model {saved_model} has no {PREDICT_IMAGE_BYTES!r} signature to frame "
            "image files (it was exported before 2026-12-05: run its pipeline again)"
        )
    dims = signature.outputs[CODES_KEY].tensor_shape.dim
    if len(dims) != 2 or dims[1].size < 1:
        raise UserError(f"--saved-model {saved_model}: {CODES_KEY!r} is not [batch, code]")
    return int(dims[1].size)


def read_tfrecord_file(path: str, chunk_rows: int) -> Iterator[Chunk]:
    """The rows of one TFRecord file of tf.Examples (gzip when named *.gz), in chunks."""
    import tensorflow as tf

    name = os.path.basename(path)
    compression = "GZIP" if path.endswith(".gz") else ""  # TFX's ExampleGen writes .gz
    spec = {IMAGE_KEY: tf.io.FixedLenFeature([IMAGE_PIXELS], tf.float32)}
    first = 0
    records = tf.data.TFRecordDataset(path, compression).batch(chunk_rows)
    try:
        for serialized in records:
            where = f"{path}: records {first}-{first + len(serialized) - 1}"
            try:
                images = tf.io.parse_example(serialized, spec)[IMAGE_KEY].numpy()
            except tf.errors.InvalidArgumentError as exc:
                raise BadInput(f"{where}: {_tf_reason(exc)}") from None
            ids = [f"{name}:{i}" for i in range(first, first + len(images))]
            images = _checked_pixels(images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1), path, ids)
            yield ids, images, list(serialized.numpy())
            first += len(images)
    except tf.errors.OpError as exc:
        raise BadInput(f"{path} is not a readable TFRecord file ({_tf_reason(exc)})") from None


_TF_NOISE = re.compile(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:[^\]]*\]|Name: <unknown>, ")


def _tf_reason(exc: BaseException) -> str:
    """The op's own words from a TensorFlow error, on one line."""
    message = getattr(exc, "message", str(exc)).split("\n\t [[", 1)[0]
    return " ".join(_TF_NOISE.sub("", message).split())[:300]


def read_npy_chunk(path: str, start: int, rows: int, chunk_rows: int) -> Iterator[Chunk]:
    """Rows [start, start + rows) of a .npy array, in chunks."""
    from tfsp.serving.feature_sources import NpySource

    source = NpySource(Path(path))
    try:  # its batches come with their pixels checked
        for first, images in source.batches(start, chunk_rows):
            if first >= start + rows:
                return
            images = images[: start + rows - first]
            yield [str(first + i) for i in range(len(images))], images, None
    except UserError as exc:
        raise BadInput(str(exc)) from None


def read_parquet_file(path: str, chunk_rows: int) -> Iterator[Chunk]:
    """The rows of one Parquet file with an `id` column and an `image` column of 1,024
    floats per row, in chunks."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow as tf

    try:
        # Whole-file reads through TensorFlow's file systems (gs:// too): pyarrow cannot
        # take a GFile, and one shard of a sharded data set fits in memory.
        with tf.io.gfile.GFile(path, "rb") as handle:
            data = handle.read()
        table = pq.read_table(pa.BufferReader(data), columns=["id", IMAGE_KEY])
    except (pa.ArrowInvalid, KeyError) as exc:
        raise BadInput(
            f"{path} is not a Parquet file with 'id' and {IMAGE_KEY!r} columns ({exc})"
        ) from None
    for batch in table.to_batches(max_chunksize=chunk_rows):
        first = batch.to_pydict()
        ids = [str(row_id) for row_id in first["id"]]
        try:
            images = np.asarray(first[IMAGE_KEY], np.float32)
        except ValueError:
            images = np.zeros((0,))
        if images.ndim != 2 or images.shape[1] != IMAGE_PIXELS:
            raise BadInput(
                f"{path}: rows {ids[0]}…: each {IMAGE_KEY!r} must hold {IMAGE_PIXELS} floats"
            )
        yield ids, _checked_pixels(images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1), path, ids), None


def _checked_pixels(images: np.ndarray, path: str, ids: list[str]) -> np.ndarray:
    """`images`, after the pixel check the gRPC pull applies (BadInput naming the row id)."""
    from tfsp.serving.feature_sources import check_pixel_values

    try:
        check_pixel_values(images, path, ids)
    except UserError as exc:
        raise BadInput(str(exc)) from None
    return images


def read_images(root: str, relative: tuple[str, ...], chunk_rows: int) -> Iterator[Chunk]:
    """Image files as their encoded bytes: the encoder's `predict_image_bytes` frames them
    as `tfsp data prepare` frames a folder's images."""
    from tfsp.serving.feature_sources import image_file_bytes

    for first in range(0, len(relative), chunk_rows):
        names = list(relative[first : first + chunk_rows])
        try:
            contents = image_file_bytes([Path(root) / name for name in names])
        except UserError as exc:
            raise BadInput(str(exc)) from None
        yield names, contents, None


@dataclass(frozen=True)
class Input:
    """What the driver found to read; `tasks` are the units the workers share."""

    kind: str  # "tfrecord", "parquet", "npy" or "images"
    tasks: list[tuple]
    description: str


def _glob(pattern: str, path: str) -> list[str]:
    import tensorflow as tf

    # TensorFlow's file systems: local paths and gs:// (what the workers read with)
    try:
        return sorted(tf.io.gfile.glob(pattern))
    except tf.errors.OpError as exc:
        raise UserError(f"input {path}: {exc.message}") from None


def plan_input(path: str) -> Input:
    """List the input's read tasks before the job starts; UserError if there is nothing."""
    local = Path(path)
    if local.is_file() and local.suffix == ".npy":
        from tfsp.serving.feature_sources import NpySource

        rows = NpySource(local).num_rows
        step = NPY_ROWS_PER_TASK
        tasks = [(path, first, min(step, rows - first)) for first in range(0, rows, step)]
        return Input("npy", tasks, f"{path} ({rows} rows)")
    if (local.is_dir() and any(local.glob("*.parquet"))) or path.endswith(".parquet"):
        files = _glob(os.path.join(path, "*.parquet") if local.is_dir() else path, path)
        if not files:
            raise UserError(f"input {path}: no files match")
        return Input("parquet", [(f,) for f in files], f"{path} ({len(files)} Parquet files)")
    if local.is_dir() and not any(local.glob("*.tfrecord")):
        from tfsp.serving.feature_sources import ImageFolderSource

        images = ImageFolderSource(local)
        relative = images.ids(0, images.num_rows)
        tasks = [
            (path, tuple(relative[i : i + IMAGES_PER_TASK]))
            for i in range(0, len(relative), IMAGES_PER_TASK)
        ]
        return Input("images", tasks, images.description)
    files = _glob(os.path.join(path, "*.tfrecord") if local.is_dir() else path, path)
    if not files:
        raise UserError(f"input {path}: no files match")
    return tfrecord_input(files, path)


def tfrecord_input(files: Sequence[str], description: str) -> Input:
    """An Input reading these TFRecord files (plain, or gzip when named *.gz), one task each."""
    return Input("tfrecord", [(f,) for f in files], f"{description} ({len(files)} TFRecord files)")


_READERS = {
    "tfrecord": read_tfrecord_file,
    "parquet": read_parquet_file,
    "npy": read_npy_chunk,
    "images": read_images,
}


class EncoderHandler(ModelHandler):
    """RunInference's model: the encoder (`predict_images`, or `predict_image_bytes` for
    image files) on one chunk of rows at a time, loaded once per worker on TF Serving's
    load path."""

    def __init__(self, saved_model: str) -> None:
        # Chunks are batches already: RunInference passes them on one by one.
        super().__init__(min_batch_size=1, max_batch_size=1)
        self._saved_model = saved_model
        self._seen = 0
        self._started = self._reported = time.monotonic()

    def load_model(self) -> Any:
        from tfsp.serving.servable import load_servable

        servable = load_servable("encoder", 0, self._saved_model)
        atexit.register(servable.close)  # Beam keeps the model until the process exits
        return servable

    def run_inference(
        self, batch: Sequence[Chunk], model: Any, inference_args: dict | None = None
    ) -> list[tuple[Chunk, np.ndarray]]:
        encoded = []
        for chunk in batch:
            signature, input_name = encoder_call(chunk[1])
            outputs = model.run(signature, {input_name: chunk[1]}, [CODES_KEY])
            encoded.append((chunk, outputs[CODES_KEY]))
            self._progress(len(chunk[0]))
        return encoded

    def _progress(self, rows: int) -> None:
        Metrics.counter(METRICS_NAMESPACE, "rows").inc(rows)
        self._seen += rows
        now = time.monotonic()
        if now - self._reported >= PROGRESS_SECONDS:
            self._reported = now
            rate = self._seen / (now - self._started)
            print(
                f"features: {self._seen} rows encoded by worker {os.getpid()} ({rate:.0f} rows/s)",
                file=sys.stderr,
                flush=True,
            )

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE


def read_rows(
    pipeline: beam.Pipeline, plan: Input, chunk_rows: int, label: str = ""
) -> beam.PCollection:
    """The input's rows in chunks of `chunk_rows`, read by the workers task by task (labels
    prefixed by `label`)."""
    reader = _READERS[plan.kind]
    return (
        pipeline
        | f"{label}ReadTasks" >> beam.Create([(*t, chunk_rows) for t in plan.tasks], reshuffle=True)
        | f"{label}ReadRows" >> beam.FlatMapTuple(reader)
    )


def encode(rows: beam.PCollection, saved_model: str, label: str = "") -> beam.PCollection:
    """(chunk, codes [n, code]) for every chunk, through RunInference."""
    return rows | f"{label}Encode" >> RunInference(EncoderHandler(saved_model))


def write_parquet(encoded: beam.PCollection, prefix: str, code_size: int) -> None:
    """Parquet shards `<prefix>-*.parquet` of (id, code_0…)."""
    schema = _parquet_schema(code_size)
    _ = (
        encoded
        | "ToTables" >> beam.MapTuple(lambda chunk, codes: _parquet_table(chunk, codes, schema))
        | "WriteParquet"
        >> beam.io.WriteToParquetBatched(prefix, schema, file_name_suffix=".parquet")
    )


def write_examples_with_codes(
    encoded: beam.PCollection, prefix: str, suffix: str, label: str = ""
) -> None:
    """TFRecord shards `<prefix>-*<suffix>` of the input tf.Examples with `codes` added
    (gzip-compressed when `suffix` ends in .gz)."""
    _ = (
        encoded
        | f"{label}AddCodes" >> beam.FlatMapTuple(_examples_with_codes)
        | f"{label}WriteTFRecord" >> beam.io.WriteToTFRecord(prefix, file_name_suffix=suffix)
    )


def _parquet_schema(code_size: int) -> Any:
    import pyarrow as pa

    return pa.schema(
        [("id", pa.string())] + [(f"code_{i}", pa.float32()) for i in range(code_size)]
    )


def _parquet_table(chunk: Chunk, codes: np.ndarray, schema: Any) -> Any:
    import pyarrow as pa

    columns = [pa.array(chunk[0], pa.string())]
    columns += [pa.array(codes[:, i], pa.float32()) for i in range(codes.shape[1])]
    return pa.Table.from_arrays(columns, schema=schema)


def _examples_with_codes(chunk: Chunk, codes: np.ndarray) -> Iterator[bytes]:
    import tensorflow as tf

    for serialized, row in zip(chunk[2], codes, strict=True):
        example = tf.train.Example.FromString(serialized)
        example.features.feature[CODES_KEY].float_list.value.extend(row.tolist())
        yield example.SerializeToString()


@dataclass
class BeamResult:
    """What a Beam features job did (`rows` None: the runner reported no metrics)."""

    rows: int | None
    seconds: float
    files: list[str]
    code_size: int


def run_features_job(
    saved_model: str,
    input_path: str,
    output: Path,
    *,
    output_format: str = "parquet",
    batch_size: int = 256,
    beam_args: Sequence[str] = (),
) -> BeamResult:
    """Encode every row of `input_path` into the folder `output`; nothing is left behind if
    the job fails (BadInput and other failures become one-line UserErrors)."""
    if output_format not in FORMATS:
        raise UsageError(f"--format must be one of {FORMATS}, got {output_format!r}")
    if output.exists():
        raise UserError(f"output {output} already exists; choose a new folder")
    if not output.parent.is_dir():
        raise UserError(f"output folder {output.parent} does not exist")
    plan = plan_input(input_path)
    code_size = encoder_code_size(saved_model, image_files=plan.kind == "images")
    if output_format == "tfrecord" and plan.kind != "tfrecord":
        raise UserError(
            "--format tfrecord adds the codes to the input tf.Examples: TFRecord input only"
        )
    staging = output.parent / f".{output.name}.{uuid.uuid4().hex[:8]}.partial"
    staging.mkdir()
    started = time.monotonic()
    try:  # the staging folder goes, whatever stops the job (Ctrl-C included)
        rows = _run_job(plan, saved_model, staging, output_format, code_size, batch_size, beam_args)
        if rows == 0:
            raise UserError(f"input {input_path} holds no rows ({plan.description})")
        os.rename(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    files = sorted(str(p) for p in output.iterdir())
    return BeamResult(rows, time.monotonic() - started, files, code_size)


def _run_job(
    plan: Input,
    saved_model: str,
    staging: Path,
    output_format: str,
    code_size: int,
    batch_size: int,
    beam_args: Sequence[str],
) -> int | None:
    """Run the Beam job into `staging`; the rows it encoded (None if the runner reports no
    metrics); one-line UserErrors for every failure."""
    try:
        with beam.Pipeline(options=PipelineOptions(list(beam_args))) as pipeline:
            encoded = encode(read_rows(pipeline, plan, batch_size), saved_model)
            prefix = str(staging / "part")
            if output_format == "parquet":
                write_parquet(encoded, prefix, code_size)
            else:
                write_examples_with_codes(encoded, prefix, ".tfrecord")
    except BadInput as exc:
        raise UserError(_BEAM_STEP.sub("", str(exc))) from None
    except Exception as exc:
        cause = _bad_input_in(exc)
        if cause is not None:
            raise UserError(cause) from None
        raise UserError(f"the Beam job failed: {_first_line(exc)}") from exc
    try:
        query = pipeline.result.metrics().query(MetricsFilter().with_name("rows"))
    except Exception:  # a runner without metrics support
        return None
    counters = query["counters"]
    return int(sum(c.committed or c.attempted or 0 for c in counters)) if counters else None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__


def _bad_input_in(exc: BaseException) -> str | None:
    """A BadInput raised in a worker, as the runner re-raises it (wrapped, or as text)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BadInput):
            return str(current)
        current = current.__cause__ or current.__context__
    marker = "BadInput: "
    text = str(exc)
    if marker in text:
        return _BEAM_STEP.sub("", text.split(marker, 1)[1].splitlines()[0]).strip(" '\"")
    return None


_BEAM_STEP = re.compile(r"\s*\[while running '[^']*'\]")
