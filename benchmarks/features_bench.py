"""Rows/s of `tfsp features` over gRPC against the encoder called in-process, and the pull's
peak memory on a 100,000-row input (it must stream, not load everything).

Needs a pushed encoder: run `make run` first (or pass --home). In one run:
  1. in-process: the encoder SavedModel's `predict_images` on the same rows and batch size;
  2. over gRPC: `tfsp features` (a child process) against the local model server serving the
     encoder, on a 100,000-row .npy; its peak RSS is read from the kernel when it exits.

    .venv/bin/python benchmarks/features_bench.py [--rows 100000] [--batch-size 256]
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tfsp.progress import quiet_frameworks

quiet_frameworks()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pipelines.layout import LocalLayout  # noqa: E402
from pipelines.model_config import write_models_config  # noqa: E402
from serving.launcher import LocalServer  # noqa: E402
from trainers.common import latest_pushed_version  # noqa: E402

MODEL = "autoencoder_encoder"


def in_process_rows_per_second(model_dir: Path, rows: np.ndarray, batch: int) -> float:
    """Rows/s of the encoder's predict_images called in this process, batch by batch."""
    encode = tf.saved_model.load(str(model_dir)).signatures["predict_images"]
    encode(images=tf.constant(rows[:batch]))  # trace and warm up outside the timing
    started = time.perf_counter()
    for first in range(0, len(rows), batch):
        encode(images=tf.constant(rows[first : first + batch]))
    return len(rows) / (time.perf_counter() - started)


def main() -> int:
    """Measure both, print figures and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", help="tfsp home with a pushed encoder (default: ./.tfsp)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--in-flight", type=int, default=4)
    args = parser.parse_args()

    layout = LocalLayout.from_env(args.home)
    version = latest_pushed_version(str(layout.serving_root / MODEL))
    if version is None:
        print(
            f"error: no {MODEL} under {layout.serving_root}; run 'make run' first", file=sys.stderr
        )
        return 1
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="tfsp-features-bench-") as tmp:
        tmp_dir = Path(tmp)
        source = tmp_dir / "rows.npy"
        array = np.lib.format.open_memmap(
            source, mode="w+", dtype=np.float32, shape=(args.rows, 32, 32, 1)
        )
        for first in range(0, args.rows, 10_000):  # written in slices: the bench streams too
            count = min(10_000, args.rows - first)
            array[first : first + count] = rng.random((count, 32, 32, 1), dtype=np.float32)
        array.flush()
        del array
        input_mb = source.stat().st_size / 2**20

        sample = np.load(source, mmap_mode="r")[: min(args.rows, 20_000)]
        local = in_process_rows_per_second(
            layout.serving_root / MODEL / version, np.asarray(sample), args.batch_size
        )
        print(
            f"in-process encoder ({len(sample)} rows, batch {args.batch_size}): "
            f"{local:9.0f} rows/s",
            flush=True,
        )

        config = tmp_dir / "models.config"
        write_models_config(config, root=str(layout.serving_root))
        config.write_text(config.read_text())  # every model: the server loads what make run pushed
        with LocalServer(config, tmp_dir / "server.log").start([MODEL]) as server:
            output = tmp_dir / "codes.npy"
            started = time.perf_counter()
            pull = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tfsp.cli",
                    "features",
                    "--model",
                    MODEL,
                    "--input",
                    str(source),
                    "--output",
                    str(output),
                    "--server",
                    server.address,
                    "--batch-size",
                    str(args.batch_size),
                    "--in-flight",
                    str(args.in_flight),
                    "--no-progress",
                ],
                capture_output=True,
                text=True,
            )
            seconds = time.perf_counter() - started
        if pull.returncode != 0:
            print(pull.stderr, file=sys.stderr)
            return 1
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        grpc_rate = args.rows / seconds
        print(
            f"tfsp features over gRPC ({args.rows} rows, {args.in_flight} in flight): "
            f"{grpc_rate:9.0f} rows/s (whole command, start-up included)"
        )
        print(f"  as the command reports it (pull only): {pull.stdout.strip()}")
        print(f"ratio gRPC / in-process:                {grpc_rate / local:9.2f} (target >= 0.70)")
        print(
            f"peak RSS of the largest child (the pull or the server): {peak_mb:7.0f} MiB; "
            f"input file {input_mb:.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
