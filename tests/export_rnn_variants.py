"""Export an untrained RNN classifier of every kind through trainers/export.py.

    python tests/export_rnn_variants.py TRANSFORM_GRAPH_DIR OUT_DIR

Writes OUT_DIR/<variant>/ for each cell (the Jordan cell included), and bidirectional and
stacked forms, with the Transform graph of a real run, as the RNN Trainer exports: the one
export path, so what the graph-mode comparison finds here holds for every `--cell`. Prints
the folders, one a line.
"""

import sys
from pathlib import Path

import numpy as np

# Before the trainers, on purpose: tensorflow_transform sets TF_USE_LEGACY_KERAS=1 as it
# imports, which makes `tf.keras` Keras 2 from then on. The trainers build with the `keras`
# package, so the models below must come out Keras 3 all the same (the caller also sets the
# variable, as a user's shell may).
import tensorflow_transform as tft

from tfsp.trainers.export import export_classifier
from tfsp.trainers.rnn.family import CELLS, RNNConfig
from tfsp.trainers.rnn.model import build_rnn_classifier
from tfsp.trainers.warmup import WarmupData

VARIANTS = {
    **{cell: RNNConfig(cell=cell, units=8) for cell in CELLS},
    "jordan-bidirectional": RNNConfig(cell="jordan", units=8, bidirectional=True),
    "gru-stacked": RNNConfig(cell="gru", units=8, layers=2),
    "lstm-bidirectional-stacked": RNNConfig(cell="lstm", units=8, layers=2, bidirectional=True),
}


def main(transform_graph: str, out: str) -> int:
    """Export every variant under `out`; 0 when all were written."""
    transform = tft.TFTransformOutput(transform_graph)
    images = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    warmup = WarmupData(images, np.array([3, 7], np.int64))
    for name, config in VARIANTS.items():
        folder = Path(out) / name
        model = build_rnn_classifier(config)
        if not type(model).__module__.startswith("keras."):
            raise SystemExit(f"{name}: built with {type(model).__module__}, not Keras 3")
        export_classifier(model, transform, str(folder), warmup=warmup)
        print(folder, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
