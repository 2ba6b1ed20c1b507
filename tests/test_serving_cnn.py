"""End to end: the CNN the pipeline pushes, served, called by the `tfsp` client commands."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import run_pipeline
from tests.serving_harness import REPO, running_server
from tfsp.data.prepare import read_split
from tfsp.serving.client import RestClient, ServingClient

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pushed_cnn(tmp_path_factory, digits_dir) -> Path:
    home = tmp_path_factory.mktemp("cnn-home")
    result = run_pipeline("cnn", digits_dir, "--epochs", "2", "--min-accuracy", "0.1", home=home)
    assert result.returncode == 0, result.stderr[-3000:]
    versions = list((home / "serving" / "cnn").iterdir())
    assert len(versions) == 1
    return versions[0]


@pytest.fixture(scope="module")
def cnn_server(pushed_cnn, tmp_path_factory):
    log = tmp_path_factory.mktemp("cnn-server") / "server.log"
    with running_server(
        "--model_name=cnn", f"--model_base_path={pushed_cnn.parent}", log_path=log
    ) as server:
        yield server


@pytest.fixture(scope="module")
def test_images(digits_dir):
    images, labels = read_split(digits_dir / "test" / "data.tfrecord")
    return np.asarray(images, np.float32).reshape(-1, 32, 32, 1)[:16], np.asarray(labels)[:16]


def _tfsp(*args: str, server=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if server is not None:
        env["TFSP_SERVER"] = server.address
        env["TFSP_REST_SERVER"] = server.rest_address
    return subprocess.run(
        [sys.executable, "-m", "tfsp.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_grpc_predict_matches_the_model_in_process(cnn_server, pushed_cnn, test_images):
    images, _ = test_images
    with ServingClient(cnn_server.address) as client:
        spec, outputs = client.predict("cnn", {"images": images}, signature="predict_images")
    assert spec.version.value == int(pushed_cnn.name)
    local = tf.saved_model.load(str(pushed_cnn)).signatures["predict_images"](
        images=tf.constant(images)
    )
    np.testing.assert_allclose(outputs["probabilities"], local["probabilities"].numpy(), atol=1e-5)
    assert outputs["class_ids"].tolist() == local["class_ids"].numpy().tolist()


def test_classify_api_on_serving_default(cnn_server, test_images):
    images, _ = test_images
    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={"image": tf.train.Feature(float_list=tf.train.FloatList(value=i.ravel()))}
            )
        )
        for i in images[:4]
    ]
    with ServingClient(cnn_server.address) as client:
        response = client.classify("cnn", examples)
        _, outputs = client.predict("cnn", {"images": images[:4]}, signature="predict_images")
    for classification, probabilities in zip(
        response.result.classifications, outputs["probabilities"], strict=True
    ):
        assert [c.label for c in classification.classes] == [str(i) for i in range(10)]
        scores = [c.score for c in classification.classes]
        np.testing.assert_allclose(scores, probabilities, atol=1e-5)


def test_rest_predict_and_metadata(cnn_server, test_images):
    images, _ = test_images
    rest = RestClient(cnn_server.rest_address)
    reply = rest.predict("cnn", instances=images[:2].tolist(), signature="predict_images")
    assert len(reply["predictions"]) == 2
    assert set(reply["predictions"][0]) == {"probabilities", "class_ids"}
    signatures = rest.metadata("cnn")["metadata"]["signature_def"]["signature_def"]
    assert signatures["serving_default"]["inputs"]["inputs"]["dtype"] == "DT_STRING"


def test_tfsp_predict_status_metadata_commands(cnn_server, pushed_cnn, test_images, tmp_path):
    images, _ = test_images
    npy = tmp_path / "digits.npy"
    np.save(npy, images[:3])
    png = tmp_path / "digit.png"
    Image.fromarray((images[0, :, :, 0] * 255).astype(np.uint8)).save(png)
    version = pushed_cnn.name

    result = _tfsp("predict", "--model", "cnn", "--npy", str(npy), server=cnn_server)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"model cnn version {version} (predict_images, gRPC")
    assert [line.split(":")[0] for line in lines[1:]] == ["image 0", "image 1", "image 2"]

    result = _tfsp(
        "predict", "--model", "cnn", "--image", str(png), "--rest", "--version", version,
        "--rest-server", cnn_server.rest_address,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"version {version} (predict_image_bytes, REST" in result.stdout
    assert "image 0: class" in result.stdout

    result = _tfsp("status", "--model", "cnn", server=cnn_server)
    assert result.returncode == 0 and "AVAILABLE" in result.stdout and version in result.stdout
    result = _tfsp("metadata", "--model", "cnn", "--rest", server=cnn_server)
    assert result.returncode == 0, result.stderr
    assert "signature predict_images" in result.stdout
    assert "images: DT_FLOAT [-1, 32, 32, 1]" in result.stdout


@pytest.mark.parametrize(
    "args, fragment, code",
    [
        (
            ("predict", "--model", "nope", "--npy", "{npy}"),
            "error: NOT_FOUND: Servable not found",
            1,
        ),
        (("predict", "--model", "cnn", "--npy", "{bad}"), "error: ", 1),  # not 32×32 pixels
        (
            ("predict", "--model", "cnn", "--image", "{corrupt}"),
            "error: INVALID_ARGUMENT: Unknown image file format",
            1,
        ),
        (
            ("predict", "--model", "cnn", "--image", "{corrupt}", "--invert"),
            "error: --invert applies to --npy only",
            2,  # a flag combination
        ),
    ],
)
def test_tfsp_client_errors_are_one_line(cnn_server, tmp_path, args, fragment, code):
    npy = tmp_path / "ok.npy"
    np.save(npy, np.zeros((1, 32, 32, 1), np.float32))
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((5,), np.float32))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image at all")
    argv = [a.format(npy=npy, bad=bad, corrupt=corrupt) for a in args]
    result = _tfsp(*argv, server=cnn_server)
    assert result.returncode == code
    assert result.stderr.strip().splitlines()[-1].startswith(fragment), result.stderr
    assert "Traceback" not in result.stderr
