"""`tfsp features`: pull compressed features (encoder codes) from a model server over gRPC,
or run an encoder SavedModel over the whole input on Apache Beam (tfsp.serving.features and
tfsp.serving.features_beam do the work)."""

import argparse
from dataclasses import dataclass
from pathlib import Path

from tfsp.cli.common import add_beam_flag, beam_args, command, from_flags, grpc_client
from tfsp.core import argtypes
from tfsp.core.errors import UsageError, UserError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `tfsp features`."""
    parser = subparsers.add_parser(
        "features",
        help="pull compressed features (encoder codes) from a model server over gRPC",
        description="Send images to an encoder model (pixel arrays to its 'predict_images' "
        "signature, image files to 'predict_image_bytes') and write the codes, rows in input "
        "order. INPUT: a .npy array ([n,32,32], [n,32,32,1] or [n,1024], values in [0,1]), "
        "a .tfrecord file or folder of them (as 'tfsp data prepare' writes), or a folder of "
        "PNG/JPEG images. OUTPUT: .npy (float32 [n, code]) or .parquet (id, code_0…). An "
        "interrupted pull resumes when run again with the same arguments; the output file "
        "appears only when complete.",
    )
    parser.add_argument(
        "--model",
        default="autoencoder_encoder",
        help="encoder model name (default: autoencoder_encoder)",
    )
    # str, not Path: Path would fold gs://bucket into gs:/bucket
    parser.add_argument("--input", required=True, help="images to encode")
    parser.add_argument(
        "--output",
        required=True,
        type=Path,
        help="a .npy or .parquet file; with --saved-model, a new folder for the shards",
    )
    parser.add_argument(
        "--version", type=argtypes.non_negative_int, help="pin a model version (default: latest)"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--server",
        help="gRPC host:port or dns:///name:port (default: $TFSP_SERVER, else localhost:8500)",
    )
    where.add_argument(
        "--saved-model",
        help="no server: run this encoder SavedModel (a version folder) in Apache Beam workers "
        "over the whole input (RunInference; Beam's FnApiRunner in-process unless --beam-arg "
        "says)",
    )
    _add_request_flags(parser)
    _add_beam_flags(parser)
    command(parser, pull_command, request=_request)


def _add_request_flags(parser: argparse.ArgumentParser) -> None:
    """How a pull over gRPC sends its requests, and what it may do to an existing output."""
    parser.add_argument(
        "--batch-size", type=argtypes.positive_int, default=256, help="rows per request (256)"
    )
    parser.add_argument(
        "--in-flight", type=argtypes.positive_int, default=4, help="concurrent requests (4)"
    )
    parser.add_argument(
        "--part-rows",
        type=argtypes.positive_int,
        default=8192,
        help="rows per checkpoint (8192): an interrupted pull redoes the rows since its last "
        "checkpoint (fewer than this) and the requests then in flight (up to --in-flight x "
        "--batch-size rows)",
    )
    parser.add_argument(
        "--retries",
        type=argtypes.non_negative_int,
        default=5,
        help="retries per request of UNAVAILABLE, DEADLINE_EXCEEDED and a server "
        "out of gRPC threads (RESOURCE_EXHAUSTED: Server Threadpool Exhausted), with "
        "exponential backoff (5)",
    )
    parser.add_argument(
        "--timeout", type=argtypes.positive_float, default=30.0, help="seconds per request (30)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --output file (without it, one is refused, so a finished "
        "pull is never replaced by accident)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_beam_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that apply with --saved-model only."""
    beam_group = parser.add_argument_group("with --saved-model (Apache Beam)")
    beam_group.add_argument(
        "--format",
        choices=("parquet", "tfrecord"),
        default="parquet",
        help="parquet: id, code_0… shards; tfrecord: the input tf.Examples with a 'codes' "
        "feature added (TFRecord input only). Default parquet",
    )
    add_beam_flag(
        beam_group,
        "Beam pipeline option, repeatable, e.g. --beam-arg=--direct_num_workers=2 or "
        "--beam-arg=--runner=DataflowRunner (default: Beam's FnApiRunner in-process)",
    )


@dataclass(frozen=True)
class PullRequest:
    """What `tfsp features` was asked: which encoder, which rows, where to, and how."""

    model: str
    input: str  # str, not Path: Path would fold gs://bucket into gs:/bucket
    output: Path
    version: int | None
    server: str | None
    saved_model: str | None
    batch_size: int
    in_flight: int
    part_rows: int
    retries: int
    timeout: float
    progress: bool
    overwrite: bool
    format: str
    beam_args: tuple[str, ...] | None


def _request(args: argparse.Namespace) -> PullRequest:
    return from_flags(PullRequest, args, progress=not args.no_progress, beam_args=beam_args(args))


def _encode_with_beam(request: PullRequest) -> int:
    import logging

    from tfsp.core.beam_defaults import IN_PROCESS_BEAM_ARGS
    from tfsp.serving.features_beam import run_features_job

    # A failing step is reported once, as our own one-line error; Beam would also log it
    # with a worker traceback.
    logging.getLogger("apache_beam.runners.common").setLevel(logging.CRITICAL)
    result = run_features_job(
        request.saved_model,
        request.input,
        request.output,
        output_format=request.format,
        batch_size=request.batch_size,
        beam_args=request.beam_args or IN_PROCESS_BEAM_ARGS,
    )
    rate = (
        f"{result.rows / max(result.seconds, 1e-9):.0f} rows/s"
        if result.rows is not None
        else "the runner reported no row count"
    )
    print(
        f"wrote {request.output}: {result.rows} rows × {result.code_size} codes in "
        f"{len(result.files)} file(s), {result.seconds:.1f} s ({rate})"
    )
    return 0


def _keep_request_buffers_in_the_heap() -> None:
    """Raise glibc's mmap threshold for this process (the `tfsp features` command only).

    Every request is a ~1 MiB buffer (256 images). glibc serves blocks that large with mmap
    and returns each with munmap, so every request pays fresh page faults; its dynamic
    threshold only rises once a large block is freed on the heap, which TensorFlow's import
    happened to do when the client still imported it. Measured 2026-12-05, 50,000 rows against
    one server: 40,267–46,516 rows/s without, 63,633 with (64,060–68,126 with TF imported).
    A no-op where there is no glibc `mallopt`.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    mallopt(m_mmap_threshold, 64 << 20)
    mallopt(m_trim_threshold, 256 << 20)


def pull_command(request: PullRequest) -> int:
    """`tfsp features`: encode the input through a server (or a SavedModel on Beam)."""
    from tfsp.core.progress import quiet_frameworks

    quiet_frameworks()
    if request.saved_model is not None:
        if request.overwrite:
            raise UsageError("--overwrite applies to a pull over gRPC: --saved-model writes a "
                             "new folder")  # fmt: skip
        return _encode_with_beam(request)
    if request.format != "parquet" or request.beam_args:
        raise UsageError("--format and --beam-arg apply with --saved-model only")
    from tfsp.serving.feature_sources import open_source
    from tfsp.serving.feature_store import check_output
    from tfsp.serving.features import pull_features

    _keep_request_buffers_in_the_heap()
    with grpc_client(request.server, request.timeout) as client:  # flag errors first
        check_output(request.output)
        if request.output.exists() and not request.overwrite:
            raise UserError(f"output {request.output} exists; pass --overwrite to replace it")
        source = open_source(Path(request.input))
        result = pull_features(
            source,
            request.output,
            client,
            request.model,
            version=request.version,
            batch_size=request.batch_size,
            in_flight=request.in_flight,
            part_rows=request.part_rows,
            retries=request.retries,
            progress=request.progress,
        )
    resumed = f", resumed at row {result.resumed_from}" if result.resumed_from else ""
    pulled = result.rows - result.resumed_from
    print(
        f"wrote {request.output}: {result.rows} rows × {result.code_size} codes from "
        f"{request.model} v{result.version} ({pulled / max(result.seconds, 1e-9):.0f} rows/s"
        f"{resumed})"
    )
    return 0
