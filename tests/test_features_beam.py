"""`tfsp features --saved-model`: the encoder over a data set on Apache Beam (RunInference).

A small linear encoder SavedModel (built here) over the digits' test split, through the real
CLI and Beam's FnApiRunner, in-memory and with two worker processes: the codes must equal
the encoder's own, row for row; bad input is one `error:` line and leaves nothing behind.
"""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import run_tfsp
from tests.serving_harness import build_toy_model
from tfsp.data.framing import frame_arrays, frame_encoded
from tfsp.data.prepare import read_split

CODE_SIZE = 8
WEIGHTS = np.random.default_rng(1).normal(0, 0.05, (1024, CODE_SIZE)).astype(np.float32)
ATOL = 1e-5  # batches of other sizes round differently (as tests/graph_load_compare.py)
MULTI_PROCESS = (
    "--beam-arg=--runner=FnApiRunner",
    "--beam-arg=--direct_running_mode=multi_processing",
    "--beam-arg=--direct_num_workers=2",
)

pytestmark = pytest.mark.integration  # runs Beam jobs and the tfsp CLI


class _Encoder(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weights = tf.Variable(WEIGHTS)

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 1], tf.float32, name="images")])
    def predict_images(self, images: tf.Tensor) -> dict:
        return {"codes": tf.tanh(tf.reshape(images, [-1, 1024]) @ self.weights)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def predict_image_bytes(self, image_bytes: tf.Tensor) -> dict:
        return self.predict_images(frame_encoded(image_bytes))


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("encoder") / "1"
    module = _Encoder()
    signatures = {
        "predict_images": module.predict_images,
        "predict_image_bytes": module.predict_image_bytes,
    }
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


def _encode(images: np.ndarray) -> np.ndarray:
    """The encoder's codes computed here, in NumPy: the Beam job runs the SavedModel through
    the server's own Servable, so an expectation from that would share its bugs."""
    return np.tanh(images.reshape(-1, 1024).astype(np.float64) @ WEIGHTS).astype(np.float32)


def _features(*args: str) -> object:
    return run_tfsp("features", *args, timeout=600)


def _parquet(folder: Path) -> tuple[list[str], np.ndarray]:
    table = pq.read_table(sorted(folder.glob("*.parquet"))).to_pydict()
    codes = np.stack([table[f"code_{i}"] for i in range(CODE_SIZE)], axis=1)
    return table["id"], codes


def _encoded(encoder: Path, source: Path, output: Path) -> tuple[list[str], np.ndarray]:
    """Run `tfsp features --saved-model` on `source`; the (ids, codes) it wrote."""
    result = _features(
        "--saved-model", str(encoder), "--input", str(source), "--output", str(output)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return _parquet(output)


@pytest.mark.parametrize("workers", ["in-memory", "two processes"])
def test_codes_equal_the_encoder_row_for_row(encoder, digits_dir, tmp_path, workers):
    output = tmp_path / "codes"
    flags = MULTI_PROCESS if workers == "two processes" else ()
    test_split = digits_dir / "test"
    result = _features(
        "--saved-model", str(encoder), "--input", str(test_split), "--output", str(output), *flags
    )
    assert result.returncode == 0, result.stderr[-3000:]
    images, _ = read_split(test_split / "data.tfrecord")
    assert f"wrote {output}: {len(images)} rows × {CODE_SIZE} codes" in result.stdout
    ids, codes = _parquet(output)
    order = np.argsort([int(i.split(":")[1]) for i in ids])
    assert sorted(ids) == sorted(f"data.tfrecord:{i}" for i in range(len(images)))
    expected = _encode(images[..., None].astype(np.float32))
    np.testing.assert_allclose(codes[order], expected, atol=ATOL)


def test_tfrecord_output_is_the_input_examples_with_the_codes(encoder, digits_dir, tmp_path):
    output = tmp_path / "with-codes"
    result = _features(
        "--saved-model", str(encoder), "--input", str(digits_dir / "test" / "data.tfrecord"),
        "--output", str(output), "--format", "tfrecord",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    examples = [
        tf.train.Example.FromString(r.numpy())
        for r in tf.data.TFRecordDataset([str(p) for p in sorted(output.glob("*.tfrecord"))])
    ]
    images, labels = read_split(digits_dir / "test" / "data.tfrecord")
    assert len(examples) == len(images)
    by_label_and_image = {
        (int(label), np.asarray(image, np.float32).tobytes())
        for image, label in zip(images, labels, strict=True)
    }
    for example in examples:
        features = example.features.feature
        image = np.asarray(features["image"].float_list.value, np.float32).reshape(32, 32)
        assert (int(features["label"].int64_list.value[0]), image.tobytes()) in by_label_and_image
        codes = np.asarray(features["codes"].float_list.value, np.float32)
        np.testing.assert_allclose(codes, _encode(image[None, ..., None])[0], atol=ATOL)


def test_npy_and_image_folder_inputs_keep_their_ids(encoder, tmp_path):
    rng = np.random.default_rng(2)
    array = rng.random((50, 32, 32), dtype=np.float32)
    np.save(tmp_path / "rows.npy", array)
    ids, codes = _encoded(encoder, tmp_path / "rows.npy", tmp_path / "from-npy")
    order = np.argsort([int(i) for i in ids])
    assert sorted(int(i) for i in ids) == list(range(50))
    np.testing.assert_allclose(codes[order], _encode(array[..., None]), atol=ATOL)

    folder = tmp_path / "pictures" / "sub"
    folder.mkdir(parents=True)
    pictures = [(array[i] * 255).astype(np.uint8) for i in range(3)]
    for i, picture in enumerate(pictures):
        Image.fromarray(picture).save(folder / f"{i}.png")
    ids, codes = _encoded(encoder, tmp_path / "pictures", tmp_path / "from-images")
    assert ids == ["sub/0.png", "sub/1.png", "sub/2.png"]
    # The files are framed in the model, as `tfsp data prepare` frames a folder's images.
    framed = frame_arrays([p / 255.0 for p in pictures])[..., None]
    np.testing.assert_allclose(codes, _encode(framed), atol=ATOL)


def test_parquet_input_keeps_its_id_column(encoder, tmp_path):
    import pyarrow as pa

    array = np.random.default_rng(3).random((40, 1024), dtype=np.float32)
    table = pa.table({"id": [f"img-{i:03d}" for i in range(40)], "image": list(array)})
    folder = tmp_path / "table"
    folder.mkdir()
    pq.write_table(table.slice(0, 25), folder / "a.parquet")
    pq.write_table(table.slice(25), folder / "b.parquet")
    ids, codes = _encoded(encoder, folder, tmp_path / "out")
    order = np.argsort(ids)
    assert sorted(ids) == [f"img-{i:03d}" for i in range(40)]
    expected = _encode(array.reshape(-1, 32, 32, 1))
    np.testing.assert_allclose(codes[order], expected, atol=ATOL)


def _no_image_column(tmp_path: Path) -> Path:
    import pyarrow as pa

    path = tmp_path / "ids-only.parquet"
    pq.write_table(pa.table({"id": [1, 2]}), path)
    return path


def _not_tfrecord(tmp_path: Path) -> Path:
    path = tmp_path / "notes.tfrecord"
    path.write_text("this is not a TFRecord file\n" * 10)
    return path


def _no_image_feature(tmp_path: Path) -> Path:
    path = tmp_path / "labels-only.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        example = tf.train.Example()
        example.features.feature["label"].int64_list.value.append(3)
        writer.write(example.SerializeToString())
    return path


def _wrong_size(tmp_path: Path) -> Path:
    path = tmp_path / "mnist-sized.npy"
    np.save(path, np.zeros((4, 28, 28), np.float32))
    return path


def _byte_pixels(tmp_path: Path) -> Path:
    path = tmp_path / "bytes.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for pixel in (0.5, 255.0):
            example = tf.train.Example()
            example.features.feature["image"].float_list.value.extend([pixel] * 1024)
            writer.write(example.SerializeToString())
    return path


def _nan_pixels(tmp_path: Path) -> Path:
    # Parquet: a source whose reader has no pixel check of its own, unlike .npy's
    import pyarrow as pa

    images = np.zeros((3, 1024), np.float32)
    images[2, 100] = np.nan
    path = tmp_path / "nan.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "image": list(images)}), path)
    return path


@pytest.mark.parametrize(
    "make_input, words",
    [
        (_not_tfrecord, "notes.tfrecord is not a readable TFRecord file"),
        (_byte_pixels, "bytes.tfrecord: row bytes.tfrecord:1 holds 255, but pixels are numbers"),
        (_nan_pixels, "nan.parquet: row c holds nan, but pixels are numbers in [0, 1]"),
        (
            _no_image_feature,
            "labels-only.tfrecord: records 0-0: Feature: image (data type: float) is required",
        ),
        (_wrong_size, "mnist-sized.npy has shape [4, 28, 28]; expected"),
        (_no_image_column, "ids-only.parquet is not a Parquet file with 'id' and 'image' columns"),
    ],
    ids=[
        "not-tfrecord",
        "byte-pixels",
        "nan-pixels",
        "missing-feature",
        "wrong-image-size",
        "parquet-without-images",
    ],  # fmt: skip
)
def test_bad_input_is_one_error_line_and_no_output(encoder, tmp_path, make_input, words):
    output = tmp_path / "codes"
    result = _features(
        "--saved-model", str(encoder), "--input", str(make_input(tmp_path)),
        "--output", str(output),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], result.stderr[-3000:]
    assert not output.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".codes")]  # no staging


def test_a_saved_model_without_the_encoder_signature_is_refused(digits_dir, tmp_path):
    model = build_toy_model(tmp_path / "toy" / "1", 1.0)
    output = tmp_path / "codes"
    result = _features(
        "--saved-model", str(model), "--input", str(digits_dir / "test"), "--output", str(output)
    )
    assert result.returncode == 1
    assert "is not an encoder: it needs a 'predict_images' signature" in result.stderr
    assert not output.exists()


def test_server_and_saved_model_are_exclusive_and_beam_flags_need_saved_model(tmp_path):
    both = _features(
        "--saved-model", "m", "--server", "localhost:1", "--input", "x", "--output", "y"
    )
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    beam_only = _features(
        "--input", str(tmp_path), "--output", str(tmp_path / "o.parquet"), "--format", "tfrecord"
    )
    assert beam_only.returncode == 2
    assert "--format and --beam-arg apply with --saved-model only" in beam_only.stderr
    grpc_only = _features("--saved-model", "m", "--input", "x", "--output", "y", "--overwrite")
    assert grpc_only.returncode == 2
    assert "--overwrite applies to a pull over gRPC" in grpc_only.stderr


def test_help_explains_the_beam_path():
    result = _features("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--saved-model" in text and "Apache Beam" in text and "--beam-arg" in text
