"""Rows/s of `tfsp features` over gRPC and on Apache Beam against the encoder called
in-process, and their peak memory on a 100,000-row input (they must stream).

Needs a pushed encoder: run `make run` first (or pass --home). In one run:
  1. in-process: the encoder SavedModel's `predict_images` on the same rows and batch size;
  2. over gRPC: `tfsp features` (a child process) against the local model server serving the
     encoder, on a 100,000-row .npy; its peak RSS is read from the kernel while it runs;
  3. on Beam: `tfsp features --saved-model` on the same .npy, Beam's FnApiRunner in-process
     (one worker), then with two worker processes (multi_processing).
A first pull warms the fresh server up (the in-process function gets a warm-up call too) and
is printed apart; then --rounds rounds of all, interleaved so all meet the same machine
load, and each ratio is the median of the per-round ratios.

    .venv/bin/python benchmarks/features_bench.py [--rows 100000] [--batch-size 256] [--rounds 3]
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from tfsp.core.progress import quiet_frameworks

quiet_frameworks()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from google.protobuf import text_format  # noqa: E402

from tfsp.pipelines.layout import LocalLayout  # noqa: E402
from tfsp.pipelines.model_config import build_models_config  # noqa: E402
from tfsp.pipelines.model_store import latest_pushed_version  # noqa: E402
from tfsp.serving.launcher import LocalServer  # noqa: E402

MODEL = "autoencoder_encoder"


def in_process_rows_per_second(encode: Callable, rows: np.ndarray, batch: int) -> float:
    """Rows/s of the encoder's predict_images called in this process, batch by batch."""
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


class Pull(NamedTuple):
    """One `tfsp features` run."""

    code: int
    stdout: str
    stderr: str
    peak_mb: float
    seconds: float


def pull(address: str, source: Path, output: Path, args: argparse.Namespace) -> Pull:
    """Run `tfsp features` in a child process against the server at `address`."""
    started = time.perf_counter()
    code, stdout, stderr, peak_mb = run_measured(
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
    return Pull(code, stdout, stderr, peak_mb, time.perf_counter() - started)


BEAM_WORKERS = {
    "1 worker": ("--runner=FnApiRunner", "--direct_running_mode=in_memory"),
    "2 worker processes": (
        "--runner=FnApiRunner",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
    ),
}


def beam_job(
    encoder: Path, source: Path, output: Path, args: argparse.Namespace, mode: str
) -> Pull:
    """Run `tfsp features --saved-model` in a child process with the Beam options of `mode`."""
    started = time.perf_counter()
    beam_args = [f"--beam-arg={arg}" for arg in BEAM_WORKERS[mode]]
    code, stdout, stderr, peak_mb = run_measured(
        [
            sys.executable, "-m", "tfsp.cli", "features",
            "--saved-model", str(encoder), "--input", str(source), "--output", str(output),
            "--batch-size", str(args.batch_size), *beam_args,
        ]
    )  # fmt: skip
    return Pull(code, stdout, stderr, peak_mb, time.perf_counter() - started)


SAMPLE_ROWS = 20_000  # rows the in-process encoder is timed on


class Rounds(NamedTuple):
    """What one bench measured: the first pull, then per round the in-process rate, a pull
    and a Beam job per mode."""

    cold: Pull
    local_rates: list[float]
    pulls: list[Pull]
    beams: dict[str, list[Pull]]


def main() -> int:
    """Measure both, print figures and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", help="tfsp home with a pushed encoder (default: ./.tfsp)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows to pull (100000)")
    parser.add_argument("--batch-size", type=int, default=256, help="rows per request (256)")
    parser.add_argument("--in-flight", type=int, default=4, help="requests in flight (4)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measured rounds (3)")
    args = parser.parse_args()

    layout = LocalLayout.from_env(args.home)
    version = latest_pushed_version(str(layout.serving_root / MODEL))
    if version is None:
        print(
            f"error: no {MODEL} under {layout.serving_root}; run 'make run' first", file=sys.stderr
        )
        return 1
    with tempfile.TemporaryDirectory(prefix="tfsp-features-bench-") as tmp:
        tmp_dir = Path(tmp)
        source = tmp_dir / "rows.npy"
        write_rows(source, args.rows)
        measured = measure(layout, version, source, tmp_dir, args)
        failed = [run for run in all_runs(measured) if run.code != 0]
        if failed:
            print(f"a run failed:\n{failed[0].stderr[-3000:]}", file=sys.stderr)
            return 1
        report(measured, args, source.stat().st_size / 2**20)
    return 0


def write_rows(source: Path, rows: int) -> None:
    """A .npy of `rows` random images, written in slices (the bench streams too)."""
    rng = np.random.default_rng(0)
    array = np.lib.format.open_memmap(source, mode="w+", dtype=np.float32, shape=(rows, 32, 32, 1))
    for first in range(0, rows, 10_000):
        count = min(10_000, rows - first)
        array[first : first + count] = rng.random((count, 32, 32, 1), dtype=np.float32)
    array.flush()


def measure(
    layout: LocalLayout, version: str, source: Path, tmp_dir: Path, args: argparse.Namespace
) -> Rounds:
    """The first pull on a fresh server, then --rounds interleaved rounds of everything."""
    encoder_dir = layout.serving_root / MODEL / version
    sample = np.asarray(np.load(source, mmap_mode="r")[:SAMPLE_ROWS])
    encode = tf.saved_model.load(str(encoder_dir)).signatures["predict_images"]
    encode(images=tf.constant(sample[: args.batch_size]))  # warm-up, outside the timing
    config = tmp_dir / "models.config"
    config.write_text(
        text_format.MessageToString(build_models_config(str(layout.serving_root), [MODEL]))
    )
    local_rates, pulls = [], []
    beams: dict[str, list[Pull]] = {mode: [] for mode in BEAM_WORKERS}
    with LocalServer(config, tmp_dir / "server.log").start([MODEL]) as server:
        # The first pull also pays the fresh server's warm-up (its first model calls at
        # this batch size), as the in-process figure's warm-up call does: printed apart.
        cold = pull(server.address, source, tmp_dir / "cold.npy", args)
        for round_ in range(args.rounds):  # interleaved, so all see the same machine
            local_rates.append(in_process_rows_per_second(encode, sample, args.batch_size))
            pulls.append(pull(server.address, source, tmp_dir / f"codes{round_}.npy", args))
            for i, mode in enumerate(BEAM_WORKERS):
                output = tmp_dir / f"beam{round_}-{i}"
                beams[mode].append(beam_job(encoder_dir, source, output, args, mode))
    return Rounds(cold, local_rates, pulls, beams)


def all_runs(measured: Rounds) -> list[Pull]:
    """Every child run of the bench."""
    return [measured.cold, *measured.pulls, *(j for jobs in measured.beams.values() for j in jobs)]


def rate(run: Pull) -> float:
    """The rows/s a run printed for its work (start-up excluded)."""
    return float(re.search(r"\((\d+) rows/s", run.stdout).group(1))


def median_ratio(top: list[float], bottom: list[float]) -> float:
    """The median of per-round ratios."""
    return statistics.median(a / b for a, b in zip(top, bottom, strict=True))


def report(measured: Rounds, args: argparse.Namespace, input_mb: float) -> None:
    """Print the rates, memory and ratios."""
    local_rates = measured.local_rates
    cold_rate, pull_rates = rate(measured.cold), [rate(run) for run in measured.pulls]
    ratios = [ours / local for ours, local in zip(pull_rates, local_rates, strict=True)]
    whole = statistics.median(args.rows / run.seconds for run in measured.pulls)
    peak_mb = max(run.peak_mb for run in (measured.cold, *measured.pulls))
    print(
        f"in-process encoder ({min(args.rows, SAMPLE_ROWS)} rows, batch {args.batch_size}), "
        "per round: " + ", ".join(f"{r:.0f}" for r in local_rates) + " rows/s"
    )
    print(
        f"tfsp features over gRPC ({args.rows} rows, batch {args.batch_size}, "
        f"{args.in_flight} in flight), per round: "
        + ", ".join(f"{r:.0f}" for r in pull_rates)
        + f" rows/s during the pull; first pull on the fresh server {cold_rate:.0f}; "
        f"whole command (Python and TF start-up included) {whole:.0f} rows/s (median)"
    )
    ratio = statistics.median(ratios)
    print(
        "ratio gRPC pull / in-process per round: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + f"; median {ratio:.2f} (target >= 0.70: {'met' if ratio >= 0.7 else 'NOT met'}); "
        f"first pull vs the median in-process rate: "
        f"{cold_rate / statistics.median(local_rates):.2f}"
    )
    print(
        f"peak RSS of the pull process: {peak_mb:.0f} MiB "
        f"(input file {input_mb:.0f} MiB: streamed, not loaded)"
    )
    beam_rates = {mode: [rate(job) for job in jobs] for mode, jobs in measured.beams.items()}
    for mode, found in beam_rates.items():
        jobs = measured.beams[mode]
        print(
            f"tfsp features --saved-model on Beam, {mode}, per round: "
            + ", ".join(f"{r:.0f}" for r in found)
            + " rows/s during the job; whole command "
            + f"{statistics.median(args.rows / job.seconds for job in jobs):.0f} rows/s; "
            + f"peak RSS of the main process {max(job.peak_mb for job in jobs):.0f} MiB"
        )
    one, two = (beam_rates[mode] for mode in BEAM_WORKERS)
    print(
        f"ratios (median per round): Beam 1 worker / in-process "
        f"{median_ratio(one, local_rates):.2f}; Beam 1 worker / gRPC pull "
        f"{median_ratio(one, pull_rates):.2f}; Beam 2 workers / 1 worker "
        f"{median_ratio(two, one):.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
