"""Rows/s of `tfsp features` over gRPC against the encoder called in-process, and the pull's
peak memory on a 100,000-row input (it must stream, not load everything).

Needs a pushed encoder: run `make run` first (or pass --home). In one run:
  1. in-process: the encoder SavedModel's `predict_images` on the same rows and batch size;
  2. over gRPC: `tfsp features` (a child process) against the local model server serving the
     encoder, on a 100,000-row .npy, twice; the ratio uses the second pull, as the server is
     then past its warm-up like the in-process function (the first pull is printed too).
     The pull's peak RSS is read from the kernel while it runs.

    .venv/bin/python benchmarks/features_bench.py [--rows 100000] [--batch-size 256]
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tfsp.progress import quiet_frameworks

quiet_frameworks()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from google.protobuf import text_format  # noqa: E402

from pipelines.layout import LocalLayout  # noqa: E402
from pipelines.model_config import build_models_config  # noqa: E402
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


def run_measured(command: list[str]) -> tuple[int, str, str, float]:
    """Run `command`; (exit code, stdout, stderr, its peak RSS in MiB).

    The peak is the kernel's high-water mark (VmHWM) read from /proc while the child runs:
    wait4's ru_maxrss would also count this big parent's pages the child held between fork
    and exec.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        peak_kb = 0
        while child.poll() is None:
            try:
                status = Path(f"/proc/{child.pid}/status").read_text()
                peak_kb = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
            except (OSError, AttributeError):
                pass  # exiting between poll() and the read
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        return child.returncode, out.read(), err.read(), peak_kb / 1024


def pull(address: str, source: Path, output: Path, args: argparse.Namespace) -> tuple:
    """One `tfsp features` run in a child: (exit code, stdout, stderr, peak MiB, seconds)."""
    started = time.perf_counter()
    measured = run_measured(
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
            address,
            "--batch-size",
            str(args.batch_size),
            "--in-flight",
            str(args.in_flight),
            "--no-progress",
        ]
    )
    return (*measured, time.perf_counter() - started)


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
        config.write_text(
            text_format.MessageToString(build_models_config(str(layout.serving_root), [MODEL]))
        )
        with LocalServer(config, tmp_dir / "server.log").start([MODEL]) as server:
            # Two pulls of the same rows: the first also pays the fresh server's warm-up (its
            # first model calls at this batch size); the in-process figure excludes its own.
            pulls = [pull(server.address, source, tmp_dir / f"codes{i}.npy", args) for i in (1, 2)]
        for attempt, (code, _, stderr, _, _) in enumerate(pulls, start=1):
            if code != 0:
                print(f"pull {attempt} failed:\n{stderr}", file=sys.stderr)
                return 1
        rates = [float(re.search(r"\((\d+) rows/s", stdout).group(1)) for _, stdout, *_ in pulls]
        cold, grpc_rate = rates
        whole = args.rows / pulls[1][4]
        peak_mb = max(p[3] for p in pulls)
        print(
            f"tfsp features over gRPC ({args.rows} rows, batch {args.batch_size}, "
            f"{args.in_flight} in flight): {grpc_rate:.0f} rows/s during the pull "
            f"({cold:.0f} for the first pull on the fresh server); "
            f"{whole:.0f} rows/s for the whole command (Python and TF start-up included)"
        )
        print(f"ratio gRPC pull / in-process: {grpc_rate / local:.2f} (target >= 0.70)")
        print(
            f"peak RSS of the pull process: {peak_mb:.0f} MiB "
            f"(input file {input_mb:.0f} MiB: streamed, not loaded)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
