"""Load SavedModels both ways and compare every signature; imports nothing but TensorFlow.

    python tests/graph_load_compare.py DIR [DIR ...]

For each SavedModel: TF Serving's way (graph-mode loader into a Session: restore op, init
op, signatures run by tensor name) and TF2's object loader, on the same inputs, for every
signature. Prints one JSON line per model and exits 1 if any signature fails on the
graph-mode path or differs by more than 1e-5. It runs as its own process importing only
tensorflow and numpy, so an op that only a TFX library registers (tft, tfdv) would fail
here as it would in TF Serving's binary.
"""

import json
import sys

import numpy as np
import tensorflow as tf

ATOL = 1e-5
ROWS = 3


def _inputs(signature: object) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.random((ROWS, 32, 32, 1), dtype=np.float32)
    values = {}
    for key, info in signature.inputs.items():
        if key == "image_bytes":  # encoded image files, as `predict_image_bytes` takes them
            grey = (images * 255).astype(np.uint8)
            values[key] = np.array([tf.io.encode_png(g).numpy() for g in grey], dtype=object)
        elif info.dtype == tf.string.as_datatype_enum:
            examples = []
            for row in range(ROWS):
                feature = {
                    "image": tf.train.Feature(
                        float_list=tf.train.FloatList(value=images[row].ravel())
                    ),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[row])),
                }
                example = tf.train.Example(features=tf.train.Features(feature=feature))
                examples.append(example.SerializeToString())
            values[key] = np.array(examples, dtype=object)
        elif info.dtype == tf.float32.as_datatype_enum:
            values[key] = images
        else:
            raise SystemExit(f"no test input for {key}: dtype {info.dtype}")
    return values


def compare(path: str) -> dict:
    """{signature: max abs difference} for one SavedModel; raises if one cannot run."""
    graph = tf.Graph()
    with graph.as_default():
        session = tf.compat.v1.Session(graph=graph)
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
    eager = tf.saved_model.load(path)
    report = {}
    for name, signature in meta.signature_def.items():
        if name == "__saved_model_init_op":
            continue
        inputs = _inputs(signature)
        keys = sorted(signature.outputs)
        served = session.run(
            [signature.outputs[k].name for k in keys],
            {signature.inputs[k].name: v for k, v in inputs.items()},
        )
        local = eager.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
        worst = 0.0
        for key, value in zip(keys, served, strict=True):
            other = local[key].numpy()
            if value.shape != other.shape:
                raise AssertionError(f"{name}/{key}: shapes {value.shape} vs {other.shape}")
            if value.dtype.kind == "f":
                worst = max(worst, float(np.max(np.abs(value - other))))
            elif not np.array_equal(value, other):
                raise AssertionError(f"{name}/{key}: values differ")
        report[name] = worst
    return report


def main(paths: list[str]) -> int:
    """Compare each path; 0 when every signature ran and agreed."""
    failed = False
    for path in paths:
        try:
            report = compare(path)
            ok = all(d <= ATOL for d in report.values())
            print(json.dumps({"model": path, "ok": ok, "max_abs_diff": report}))
        except Exception as exc:  # report it and go on with the next model
            ok = False
            message = " ".join(str(exc).split())[:400]
            print(json.dumps({"model": path, "ok": False, "error": message}))
        failed = failed or not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
