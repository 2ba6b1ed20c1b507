"""How much wall time the TFX pipeline adds over a plain Keras fit of the same model.

Both measured in this run, on the same prepared data, model and epochs: first a plain
`model.fit` (data already in memory, z-scored with the train split's statistics as the
Transform step does), then the whole CNN pipeline in a fresh home with caching off
(ExampleGen, statistics, validation, Transform, training, TFMA evaluation, push).

    .venv/bin/python benchmarks/pipeline_overhead.py [--epochs N] [--data-dir DIR]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tfsp.core.progress import follow_components, quiet_frameworks

quiet_frameworks()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfsp.data.prepare import prepare_dataset, read_split  # noqa: E402
from tfsp.data.sources import load_digits_source  # noqa: E402
from tfsp.pipelines.factory import component_ids  # noqa: E402
from tfsp.pipelines.layout import LocalLayout  # noqa: E402
from tfsp.pipelines.local_runner import run_local  # noqa: E402
from tfsp.trainers.cnn.model import build_lenet5  # noqa: E402
from tfsp.trainers.common import compile_classifier, cosine_epoch_schedule  # noqa: E402
from tfsp.trainers.registry import get_family  # noqa: E402


def plain_fit_seconds(data_dir: Path, epochs: int, learning_rate: float, batch: int) -> float:
    """Seconds for build + compile + fit of LeNet-5 on in-memory arrays."""
    images, labels = read_split(data_dir / "train" / "data.tfrecord")
    eval_images, eval_labels = read_split(data_dir / "eval" / "data.tfrecord")
    mean, std = images.mean(), images.std()
    x = ((images - mean) / std).reshape(-1, 1024)
    x_eval = ((eval_images - mean) / std).reshape(-1, 1024)
    keras.utils.set_random_seed(0)
    started = time.perf_counter()
    model = build_lenet5()
    compile_classifier(model, learning_rate)
    model.fit(
        x,
        labels,
        batch_size=batch,
        epochs=epochs,
        validation_data=(x_eval, eval_labels),
        callbacks=[cosine_epoch_schedule(learning_rate, epochs)],
        verbose=0,
    )
    return time.perf_counter() - started


def main() -> int:
    """Measure both, print the figures and the ratio."""
    family = get_family("cnn")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=family.default_epochs)
    parser.add_argument("--data-dir", type=Path, help="prepared digits (default: prepare anew)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tfsp-bench-") as tmp:
        layout = LocalLayout(Path(tmp))
        data_dir = args.data_dir or layout.data_dir
        if args.data_dir is None:
            prepare_dataset(*load_digits_source(), data_dir)
        fit = plain_fit_seconds(
            data_dir, args.epochs, family.default_learning_rate, family.default_batch_size
        )
        print(f"plain Keras fit ({args.epochs} epochs): {fit:7.1f} s", flush=True)
        follow_components(total=len(component_ids(family)), verbose=False)
        started = time.perf_counter()
        result = run_local(
            family, layout, data_dir=data_dir, epochs=args.epochs, enable_cache=False
        )
        pipeline = time.perf_counter() - started
    accuracy = result.metrics.get("sparse_categorical_accuracy", float("nan"))
    print(
        f"TFX pipeline ({len(component_ids(get_family('cnn')))} components): {pipeline:7.1f} s "
        f"(eval accuracy {accuracy:.4f}, blessed={result.blessed})"
    )
    print(f"ratio pipeline / plain fit:  {pipeline / fit:7.2f}x")
    return 0 if np.isfinite(accuracy) else 1


if __name__ == "__main__":
    sys.exit(main())
