"""`tfsp features --saved-model`: the encoder over a whole data set, on Apache Beam.

For data sets too large for one gRPC client: the encoder SavedModel runs inside the Beam
workers, through Beam's RunInference, which batches the rows and loads the model once per
worker. The model loads on TF Serving's load path (serving.servable), so the codes are the
ones the served encoder returns. DirectRunner in-process by default; `--beam-arg` passes
any Beam option (DataflowRunner, FlinkRunner, `--direct_num_workers`...).

Inputs: TFRecords of tf.Examples with a 1,024-float `image` feature (what `tfsp data
prepare` writes: a file, a folder or a glob), a .npy array, or a folder of images. Every row
keeps an id: `<file name>:<record>` for TFRecords, the row number for .npy, the relative
path for images. Outputs, sharded, in a folder that appears only when the job succeeded:
Parquet (`id`, `code_0`…) or TFRecords (each input tf.Example with a `codes` feature added;
TFRecord inputs only).
"""

import atexit
import os
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

from serving.features import ENCODER_INPUT, ENCODER_OUTPUT, ENCODER_SIGNATURE
from tfsp.errors import UserError
from tfsp.features import IMAGE_KEY, IMAGE_PIXELS, IMAGE_SIZE

FORMATS = ("parquet", "tfrecord")
CODES_FEATURE = "codes"
METRICS_NAMESPACE = "tfsp_features"
NPY_CHUNK_ROWS = 4096  # rows per .npy read task: the unit of parallelism for an array
PROGRESS_SECONDS = 5.0


class BadInput(ValueError):
    """A row or file the encoder cannot take; the message names the file."""


# An element of the pipeline: (row id, image [32, 32, 1] float32, the input tf.Example's
# serialized bytes or None for inputs that are not TFRecords).
Row = tuple[str, np.ndarray, bytes | None]


def encoder_code_size(saved_model: Path) -> int:
    """The code size of the encoder SavedModel; UserError if it is not one."""
    from serving.servable import LoadError, _meta_graph

    try:
        graph = _meta_graph(saved_model, {"serve"})
    except LoadError as exc:
        raise UserError(f"--saved-model {saved_model}: {exc}") from None
    signature = graph.signature_def.get(ENCODER_SIGNATURE)
    if (
        signature is None
        or ENCODER_INPUT not in signature.inputs
        or ENCODER_OUTPUT not in signature.outputs
    ):
        raise UserError(
            f"--saved-model {saved_model} is not an encoder: it needs a {ENCODER_SIGNATURE!r} "
            f"signature from {ENCODER_INPUT!r} to {ENCODER_OUTPUT!r} (signatures: "
            f"{sorted(graph.signature_def)})"
        )
    dims = signature.outputs[ENCODER_OUTPUT].tensor_shape.dim
    if len(dims) != 2 or dims[1].size < 1:
        raise UserError(f"--saved-model {saved_model}: {ENCODER_OUTPUT!r} is not [batch, code]")
    return int(dims[1].size)


def _image(values: np.ndarray, where: str) -> np.ndarray:
    if values.size != IMAGE_PIXELS:
        raise BadInput(f"{where}: an image of {values.size} values; expected {IMAGE_PIXELS}")
    return np.asarray(values, np.float32).reshape(IMAGE_SIZE, IMAGE_SIZE, 1)


def read_tfrecord_file(path: str) -> Iterator[Row]:
    """The rows of one TFRecord file of tf.Examples."""
    import tensorflow as tf

    name = os.path.basename(path)
    index = 0
    try:
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            try:
                example = tf.train.Example.FromString(record)
            except Exception:  # protobuf's DecodeError and others for garbage
                raise BadInput(f"{path}: record {index} is not a tf.Example") from None
            feature = example.features.feature.get(IMAGE_KEY)
            if feature is None or not feature.float_list.value:
                raise BadInput(f"{path}: record {index} has no float feature {IMAGE_KEY!r}")
            values = np.asarray(feature.float_list.value, np.float32)
            yield f"{name}:{index}", _image(values, f"{path}: record {index}"), record
            index += 1
    except tf.errors.OpError as exc:
        raise BadInput(f"{path} is not a readable TFRecord file ({exc.message})") from None


def read_npy_chunk(path: str, start: int, rows: int) -> Iterator[Row]:
    """Rows [start, start + rows) of a .npy array."""
    from serving.feature_sources import NpySource

    source = NpySource(Path(path))
    _, images = next(source.batches(start, rows))
    for offset, image in enumerate(images):
        yield str(start + offset), image, None


def read_image(root: str, relative: str) -> Iterator[Row]:
    """One image file, framed to 32×32 as `tfsp data prepare` frames a folder's images."""
    from tfsp.data.sources import fit_to_image_size, read_grey_image

    try:
        grey = read_grey_image(Path(root) / relative)
    except UserError as exc:
        raise BadInput(str(exc)) from None
    yield relative, fit_to_image_size(grey[np.newaxis])[0][..., np.newaxis], None


@dataclass(frozen=True)
class Input:
    """What the driver found to read; `tasks` are the units the workers share."""

    kind: str  # "tfrecord", "npy" or "images"
    tasks: list[tuple]
    description: str


def plan_input(path: str) -> Input:
    """List the input's read tasks before the job starts; UserError if there is nothing."""
    from apache_beam.io.filesystems import FileSystems

    local = Path(path)
    if local.is_file() and local.suffix == ".npy":
        from serving.feature_sources import NpySource

        rows = NpySource(local).num_rows
        tasks = [(path, s, min(NPY_CHUNK_ROWS, rows - s)) for s in range(0, rows, NPY_CHUNK_ROWS)]
        return Input("npy", tasks, f"{path} ({rows} rows)")
    if local.is_dir() and not any(local.glob("*.tfrecord")):
        from serving.feature_sources import ImageFolderSource

        images = ImageFolderSource(local)
        relative = images.ids(0, images.num_rows)
        return Input("images", [(path, r) for r in relative], images.description)
    pattern = os.path.join(path, "*.tfrecord") if local.is_dir() else path
    try:
        files = sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)
    except Exception as exc:  # Beam raises BeamIOError for a pattern with no match
        raise UserError(f"input {path}: {exc}") from None
    if not files:
        raise UserError(f"input {path}: no files match")
    return Input("tfrecord", [(f,) for f in files], f"{path} ({len(files)} TFRecord files)")


_READERS = {"tfrecord": read_tfrecord_file, "npy": read_npy_chunk, "images": read_image}


class EncoderHandler(ModelHandler):
    """RunInference's model: the encoder's `predict_images` on a batch of rows, loaded once
    per worker on TF Serving's load path."""

    def __init__(self, saved_model: str, batch_size: int) -> None:
        super().__init__(min_batch_size=1, max_batch_size=batch_size)
        self._saved_model = saved_model
        self._seen = 0
        self._started = self._reported = time.monotonic()

    def load_model(self) -> Any:
        from serving.servable import load_servable

        servable = load_servable("encoder", 0, self._saved_model)
        atexit.register(servable.close)  # Beam keeps the model until the process exits
        return servable

    def run_inference(
        self, batch: Sequence[Row], model: Any, inference_args: dict | None = None
    ) -> list[tuple[Row, np.ndarray]]:
        images = np.stack([row[1] for row in batch])
        codes = model.run(ENCODER_SIGNATURE, {ENCODER_INPUT: images}, [ENCODER_OUTPUT])
        self._progress(len(batch))
        return list(zip(batch, codes[ENCODER_OUTPUT], strict=True))

    def _progress(self, rows: int) -> None:
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


def _parquet_schema(code_size: int) -> Any:
    import pyarrow as pa

    return pa.schema(
        [("id", pa.string())] + [(f"code_{i}", pa.float32()) for i in range(code_size)]
    )


def _parquet_row(encoded: tuple[Row, np.ndarray]) -> dict:
    (row_id, _, _), codes = encoded
    record = {"id": row_id}
    record.update({f"code_{i}": float(v) for i, v in enumerate(codes)})
    return record


def _example_with_codes(encoded: tuple[Row, np.ndarray]) -> bytes:
    import tensorflow as tf

    (_, _, serialized), codes = encoded
    example = tf.train.Example.FromString(serialized)
    example.features.feature[CODES_FEATURE].float_list.value.extend(codes.tolist())
    return example.SerializeToString()


@dataclass
class BeamResult:
    """What a Beam features job did."""

    rows: int
    seconds: float
    files: list[str]
    code_size: int


def run_features_job(
    saved_model: Path,
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
        raise UserError(f"--format must be one of {FORMATS}, got {output_format!r}")
    if output.exists():
        raise UserError(f"output {output} already exists; choose a new folder")
    if not output.parent.is_dir():
        raise UserError(f"output folder {output.parent} does not exist")
    code_size = encoder_code_size(saved_model)
    plan = plan_input(input_path)
    if output_format == "tfrecord" and plan.kind != "tfrecord":
        raise UserError(
            "--format tfrecord adds the codes to the input tf.Examples: TFRecord input only"
        )
    staging = output.parent / f".{output.name}.{uuid.uuid4().hex[:8]}.partial"
    staging.mkdir()
    started = time.monotonic()
    reader = _READERS[plan.kind]
    try:
        with beam.Pipeline(options=PipelineOptions(list(beam_args))) as pipeline:
            encoded = (
                pipeline
                | "ReadTasks" >> beam.Create(plan.tasks, reshuffle=True)
                | "ReadRows" >> beam.FlatMapTuple(reader)
                | "CountRows" >> beam.Map(_counted)
                | "Encode" >> RunInference(EncoderHandler(str(saved_model), batch_size))
            )
            prefix = str(staging / "part")
            if output_format == "parquet":
                _ = (
                    encoded
                    | "ToRecords" >> beam.Map(_parquet_row)
                    | "Write"
                    >> beam.io.WriteToParquet(
                        prefix, _parquet_schema(code_size), file_name_suffix=".parquet"
                    )
                )
            else:
                _ = (
                    encoded
                    | "AddCodes" >> beam.Map(_example_with_codes)
                    | "Write" >> beam.io.WriteToTFRecord(prefix, file_name_suffix=".tfrecord")
                )
        result = pipeline.result
        counters = result.metrics().query(MetricsFilter().with_name("rows"))["counters"]
        rows = int(sum(c.committed or c.attempted or 0 for c in counters))
    except BadInput as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(str(exc)) from None
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        cause = _bad_input_in(exc)
        if cause is not None:
            raise UserError(cause) from None
        raise UserError(f"the Beam job failed: {_first_line(exc)}") from exc
    os.rename(staging, output)
    files = sorted(str(p) for p in output.iterdir())
    return BeamResult(rows, time.monotonic() - started, files, code_size)


def _counted(row: Row) -> Row:
    Metrics.counter(METRICS_NAMESPACE, "rows").inc()
    return row


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
        return text.split(marker, 1)[1].splitlines()[0].strip(" '\"[]")
    return None
