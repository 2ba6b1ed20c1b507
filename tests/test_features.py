"""`tfsp features` against a real model server: order, formats, resume, and the error cases."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import REPO
from tests.serving_harness import ServerProcess, build_toy_model, free_port, running_server
from tfsp.data.framing import frame_arrays, frame_encoded
from tfsp.data.prepare import to_example

pytestmark = pytest.mark.integration  # starts a model server and the tfsp CLI

CODE = 4


class _ToyEncoder(tf.Module):
    """codes = the mean of each 16×16 quadrant: cheap, deterministic, easy to check."""

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 1], tf.float32, name="images")])
    def encode(self, images: tf.Tensor) -> dict:
        quadrants = tf.nn.avg_pool2d(images, 16, 16, "VALID")
        return {"codes": tf.reshape(quadrants, [-1, CODE])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def encode_files(self, image_bytes: tf.Tensor) -> dict:
        return self.encode(frame_encoded(image_bytes))


def _quadrant_means(images: np.ndarray) -> np.ndarray:
    x = images.reshape(-1, 2, 16, 2, 16)
    return x.mean(axis=(2, 4)).reshape(-1, CODE)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    encoder = _ToyEncoder()
    signatures = {"predict_images": encoder.encode, "predict_image_bytes": encoder.encode_files}
    tf.saved_model.save(encoder, str(root / "enc" / "1"), signatures=signatures)
    build_toy_model(root / "toy" / "1", 1.0)
    config = root / "models.config"
    config.write_text(
        "model_config_list {\n"
        f'  config {{ name: "enc" base_path: "{root / "enc"}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "toy" base_path: "{root / "toy"}" model_platform: "tensorflow" }}\n'
        "}\n"
    )
    with running_server(f"--model_config_file={config}", rest=False) as running:
        yield running


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((1000, 32, 32), dtype=np.float32)


def _features(*args, server_address=None, timeout=300):
    cmd = [sys.executable, "-m", "tfsp.cli", "features", "--no-progress", *args]
    if server_address:
        cmd += ["--server", server_address]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_npy_to_npy_keeps_row_order(server, images, tmp_path):
    src, out = tmp_path / "in.npy", tmp_path / "codes.npy"
    np.save(src, images)
    result = _features(
        "--model",
        "enc",
        "--input",
        str(src),
        "--output",
        str(out),
        "--batch-size",
        "64",
        "--in-flight",
        "4",
        "--part-rows",
        "200",
        server_address=server.address,
    )
    assert result.returncode == 0, result.stderr
    assert "1000 rows × 4 codes from enc v1" in result.stdout
    np.testing.assert_allclose(np.load(out), _quadrant_means(images), atol=1e-6)
    assert _leftovers(tmp_path) == []


def test_an_existing_output_is_replaced_only_with_overwrite(server, images, tmp_path):
    src, out = tmp_path / "in.npy", tmp_path / "codes.npy"
    np.save(src, images[:20])
    out.write_bytes(b"a finished pull")
    pull = ("--model", "enc", "--input", str(src), "--output", str(out))
    refused = _features(*pull, server_address=server.address)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        f"error: output {out} exists; pass --overwrite to replace it"
    )
    assert out.read_bytes() == b"a finished pull"
    replaced = _features(*pull, "--overwrite", server_address=server.address)
    assert replaced.returncode == 0, replaced.stderr
    np.testing.assert_allclose(np.load(out), _quadrant_means(images[:20]), atol=1e-6)


def test_tfrecords_to_parquet_with_ids(server, images, tmp_path):
    records = tmp_path / "split" / "data.tfrecord"
    records.parent.mkdir()
    with tf.io.TFRecordWriter(str(records)) as writer:
        for image in images[:300]:
            writer.write(to_example(image, 0).SerializeToString())
    out = tmp_path / "codes.parquet"
    result = _features(
        "--model",
        "enc",
        "--input",
        str(records.parent),
        "--output",
        str(out),
        "--batch-size",
        "32",
        server_address=server.address,
    )
    assert result.returncode == 0, result.stderr
    table = pq.read_table(out).to_pandas()
    assert list(table.columns) == ["id", "code_0", "code_1", "code_2", "code_3"]
    assert table["id"].tolist() == list(range(300))
    np.testing.assert_allclose(
        table[[f"code_{i}" for i in range(CODE)]].to_numpy(),
        _quadrant_means(images[:300]),
        atol=1e-6,
    )


def test_image_folder_ids_are_relative_paths(server, tmp_path):
    folder = tmp_path / "imgs"
    (folder / "a").mkdir(parents=True)
    pixels = {}
    for i, name in enumerate(["a/x.png", "b.png", "c.png"]):
        grey = np.zeros((40 + 10 * i, 30), dtype=np.uint8)  # any size: the model frames it
        grey[5 : 15 + 5 * i, 3:25] = 200
        Image.fromarray(grey).save(folder / name)
        pixels[name] = frame_arrays([grey / 255.0])[0]
    out = tmp_path / "codes.parquet"
    result = _features(
        "--model",
        "enc",
        "--input",
        str(folder),
        "--output",
        str(out),
        server_address=server.address,
    )
    assert result.returncode == 0, result.stderr
    table = pq.read_table(out).to_pandas()
    assert table["id"].tolist() == ["a/x.png", "b.png", "c.png"]
    expected = [_quadrant_means(pixels[name])[0] for name in table["id"]]
    np.testing.assert_allclose(table[[f"code_{i}" for i in range(CODE)]], expected, atol=1e-6)


def test_a_corrupt_image_in_a_folder_is_named(server, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.png", "c.png"):
        Image.fromarray(np.full((20, 20), 90, np.uint8)).save(folder / name)
    (folder / "b.png").write_bytes(b"\x89PNG but nothing after")
    out = tmp_path / "codes.parquet"
    result = _features(
        "--model", "enc", "--input", str(folder), "--output", str(out), "--retries", "0",
        server_address=server.address,
    )  # fmt: skip
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: image b.png: Predict on 'enc' version 1: INVALID_ARGUMENT:")
    assert not out.exists()


def test_interrupted_pull_resumes_without_losing_or_repeating_rows(server, tmp_path):
    rows = np.random.default_rng(1).random((20000, 32, 32), dtype=np.float32)
    src = tmp_path / "in.npy"
    np.save(src, rows)
    out = tmp_path / "codes.npy"
    args = [
        "--model",
        "enc",
        "--input",
        str(src),
        "--output",
        str(out),
        "--batch-size",
        "16",
        "--in-flight",
        "1",
        "--part-rows",
        "64",
        "--server",
        server.address,
        "--no-progress",
    ]
    state = tmp_path / ".codes.npy.partial" / "state.json"
    first = subprocess.Popen(
        [sys.executable, "-m", "tfsp.cli", "features", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and first.poll() is None:
        if state.exists():
            done = json.loads(state.read_text())["rows_done"]
            if done >= 640:
                break
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)  # no clean-up runs: the hardest interruption
    first.wait()
    assert 0 < done < len(rows), "the pull finished before it could be interrupted"
    assert not out.exists()

    resumed = _features(*args[:-3], server_address=server.address)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at row" in resumed.stdout
    resumed_from = int(resumed.stdout.rsplit("resumed at row ", 1)[1].rstrip(")\n"))
    assert resumed_from >= done and resumed_from % 64 == 0
    np.testing.assert_allclose(np.load(out), _quadrant_means(rows), atol=1e-6)
    assert _leftovers(tmp_path) == []


def test_a_model_that_is_not_an_encoder_is_refused(server, images, tmp_path):
    src, out = tmp_path / "in.npy", tmp_path / "codes.npy"
    np.save(src, images[:10])
    result = _features(
        "--model", "toy", "--input", str(src), "--output", str(out), server_address=server.address
    )
    assert result.returncode == 1
    assert "model 'toy' is not an encoder" in result.stderr.strip().splitlines()[-1]
    assert not out.exists() and _leftovers(tmp_path) == []


def test_byte_pixels_are_refused_naming_the_row_and_nothing_is_written(server, tmp_path):
    src, out = tmp_path / "in.npy", tmp_path / "codes.npy"
    np.save(src, np.full((10, 32, 32), 255, np.uint8))
    result = _features(
        "--model", "enc", "--input", str(src), "--output", str(out), server_address=server.address
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.endswith("in.npy: row 0 holds 255, but pixels are numbers in [0, 1]; 0-255 "
                         "pixels? divide them by 255"), last  # fmt: skip
    assert not out.exists() and _leftovers(tmp_path) == []


def test_predict_on_an_encoder_says_it_answers_codes(server, images, tmp_path):
    src = tmp_path / "in.npy"
    np.save(src, images[:2])
    result = subprocess.run(
        [sys.executable, "-m", "tfsp.cli", "predict", "--model", "enc", "--npy", str(src),
         "--server", server.address],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: model enc's predict_images answers codes, not 'probabilities': 'tfsp predict' "
        "prints a classifier's classes; pull an encoder's codes with 'tfsp features'"
    )


def test_an_unknown_model_is_not_found(server, images, tmp_path):
    src, out = tmp_path / "in.npy", tmp_path / "codes.npy"
    np.save(src, images[:10])
    result = _features(
        "--model", "nope", "--input", str(src), "--output", str(out), server_address=server.address
    )
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr
    assert not out.exists() and _leftovers(tmp_path) == []


def test_wrong_image_shape_is_refused_before_any_request(tmp_path):
    src, out = tmp_path / "in.npy", tmp_path / "codes.npy"
    np.save(src, np.zeros((5, 28, 28), np.float32))
    result = _features(
        "--input", str(src), "--output", str(out), server_address=f"127.0.0.1:{free_port()}"
    )
    assert result.returncode == 1
    assert "in.npy has shape [5, 28, 28]; expected [n, 32, 32]" in result.stderr  # its real shape
    assert not out.exists() and _leftovers(tmp_path) == []


def test_unreachable_server_fails_cleanly_after_retries(images, tmp_path):
    src, out = tmp_path / "in.npy", tmp_path / "codes.npy"
    np.save(src, images[:10])
    result = _features(
        "--input",
        str(src),
        "--output",
        str(out),
        "--retries",
        "2",
        "--timeout",
        "2",
        server_address=f"127.0.0.1:{free_port()}",
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: model server at 127.0.0.1:") and "UNAVAILABLE" in last
    assert "after 3 tries" in last
    assert not out.exists() and _leftovers(tmp_path) == []


def test_a_server_that_comes_up_late_is_retried(images, tmp_path):
    root = tmp_path / "models"
    encoder = _ToyEncoder()
    tf.saved_model.save(
        encoder, str(root / "enc" / "1"), signatures={"predict_images": encoder.encode}
    )
    late = ServerProcess("--model_name=enc", f"--model_base_path={root / 'enc'}", rest=False)
    src, out = tmp_path / "in.npy", tmp_path / "codes.npy"
    np.save(src, images[:50])
    pull = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfsp.cli",
            "features",
            "--no-progress",
            "--model",
            "enc",
            "--input",
            str(src),
            "--output",
            str(out),
            "--retries",
            "10",
            "--server",
            late.address,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # the pull's first attempts meet a closed port
    late.start()
    try:
        stdout, stderr = pull.communicate(timeout=180)
    finally:
        late.stop()
    assert pull.returncode == 0, stderr
    np.testing.assert_allclose(np.load(out), _quadrant_means(images[:50]), atol=1e-6)
