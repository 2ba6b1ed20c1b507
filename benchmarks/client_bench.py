"""What a client command costs: wall time and peak memory of `tfsp status` and `tfsp predict`.

Against a running `tfsp serve` of the CNN, each command runs N times as a fresh process:
  - light: as shipped (tfsp.serving.protos' rebuilt messages; neither TensorFlow nor
    tensorflow-serving-api is imported);
  - baseline: the same command in a process that first imports TF Serving's API classes, as
    the client did until 2026-12-05 (`tensorflow_serving.apis` imports TensorFlow).
Prints medians, the light/baseline ratios, and the issue's targets for `tfsp status`
(< 1 s wall, < 150 MiB peak RSS). The features pull's rows/s against in-process is
benchmarks/features_bench.py's.

Usage: .venv/bin/python benchmarks/client_bench.py [--model-dir DIR] [--runs N]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.serving_bench import _free_port, _model_dir, _stop, _wait_ready  # noqa: E402

STATUS_TARGET_SECONDS = 1.0
STATUS_TARGET_MIB = 150
_BASELINE = (
    "import sys\n"
    "from tensorflow_serving.apis import predict_pb2, get_model_status_pb2  # noqa\n"
    "from tfsp.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


# Starts the command from a bare interpreter and reports its wall time and peak RSS (wait4's
# own accounting). Linux counts a parent's resident memory into the peak of a child it forks,
# until the child execs: measured from this process, which has imported TensorFlow, every
# command would show this process's ~700 MiB.
_MEASURE = (
    "import os, sys, time\n"
    "started = time.perf_counter()\n"
    "pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "with open(sys.argv[1], 'w') as out:\n"
    "    out.write(f'{time.perf_counter() - started} {usage.ru_maxrss}')\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def _timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one process running `argv`."""
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as measured:
        result = subprocess.run(
            [sys.executable, "-S", "-c", _MEASURE, measured.name, *argv],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {result.stderr.decode()[-500:]}")
        wall, max_rss_kib = measured.read().split()
    return float(wall), int(max_rss_kib) / 1024


def _digit_png(folder: Path) -> Path:
    import numpy as np
    from PIL import Image

    picture = np.full((64, 64), 255, np.uint8)
    picture[12:52, 28:36] = 0  # a dark "1" on white
    path = folder / "digit.png"
    Image.fromarray(picture).save(path)
    return path


def main() -> int:
    """Start a server, time each command both ways, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="CNN version folder or model folder")
    parser.add_argument("--runs", type=int, default=5, help="runs per command and way")
    args = parser.parse_args()
    base, _ = _model_dir(args.model_dir)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "tfsp.serving.server", "--model_name=cnn",
         f"--model_base_path={base}", f"--port={port}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    scratch = tempfile.TemporaryDirectory()
    try:
        _wait_ready(address, server)
        image = _digit_png(Path(scratch.name))
        commands = {
            "tfsp status": ["status", "--model", "cnn", "--server", address],
            "tfsp predict --image": [
                "predict", "--model", "cnn", "--image", str(image), "--server", address,
            ],
        }  # fmt: skip
        ways = {
            "light": [sys.executable, "-m", "tfsp.cli"],
            "baseline": [sys.executable, "-c", _BASELINE],
        }
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.runs):  # interleaved, so load drifts hit both ways alike
            for command, command_args in commands.items():
                for way, prefix in ways.items():
                    results.setdefault((command, way), []).append(_timed(prefix + command_args))
    finally:
        _stop(server)
        scratch.cleanup()
    print(f"{os.cpu_count()} CPUs; {args.runs} runs per row, medians")
    print(f"{'command':<24} {'way':<9} {'wall s':>8} {'peak MiB':>9}")
    medians = {}
    for (command, way), runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        rss = statistics.median(r[1] for r in runs)
        medians[(command, way)] = (wall, rss)
        print(f"{command:<24} {way:<9} {wall:>8.2f} {rss:>9.0f}")
    for command in commands:
        light, baseline = medians[(command, "light")], medians[(command, "baseline")]
        print(
            f"{command}: wall {light[0] / baseline[0]:.2f}x, peak memory "
            f"{light[1] / baseline[1]:.2f}x of the baseline"
        )
    wall, rss = medians[("tfsp status", "light")]
    met = wall < STATUS_TARGET_SECONDS and rss < STATUS_TARGET_MIB
    print(
        f"tfsp status: {wall:.2f} s and {rss:.0f} MiB (target < {STATUS_TARGET_SECONDS:.0f} s "
        f"and < {STATUS_TARGET_MIB} MiB: {'met' if met else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
