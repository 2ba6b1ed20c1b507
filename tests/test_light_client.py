"""The light install: `pip install tfsp[client]` in a new venv, no TensorFlow, against a server.

Builds tfsp's wheel, installs it with the [client] extra (pinned by constraints.txt) into a
fresh virtual environment of the base Python, and checks there that TensorFlow and TF
Serving's API package are absent, that `tfsp status/metadata/predict/features` and the
client library answer as the full install does, and that a full-install command says what
to install. Marked e2e: it downloads the client's wheels from PyPI on a new machine.
"""

import configparser
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import REPO
from tests.serving_harness import running_server
from tfsp.data.framing import frame_encoded

pytestmark = pytest.mark.e2e


class _ToyModels(tf.Module):
    """A 10-class classifier and a 4-number encoder of 32×32 images, both cheap to check;
    the classifier also takes encoded image files, framed in the graph as our exports do."""

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 1], tf.float32, name="images")])
    def classify(self, images: tf.Tensor) -> dict:
        bands = tf.reduce_mean(tf.reshape(images[:, :30], [-1, 10, 3 * 32]), axis=2)
        probabilities = tf.nn.softmax(bands * 10.0)
        return {"probabilities": probabilities, "class_ids": tf.argmax(probabilities, axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def classify_files(self, image_bytes: tf.Tensor) -> dict:
        return self.classify(frame_encoded(image_bytes))

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 1], tf.float32, name="images")])
    def encode(self, images: tf.Tensor) -> dict:
        quadrants = tf.nn.avg_pool2d(images, 16, 16, "VALID")
        return {"codes": tf.reshape(quadrants, [-1, 4])}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    models = _ToyModels()
    tf.saved_model.save(
        models,
        str(root / "digits" / "1"),
        {"predict_images": models.classify, "predict_image_bytes": models.classify_files},
    )
    tf.saved_model.save(models, str(root / "enc" / "1"), {"predict_images": models.encode})
    config = root / "models.config"
    config.write_text(
        "model_config_list {\n"
        + "".join(
            f'  config {{ name: "{n}" base_path: "{root / n}" model_platform: "tensorflow" }}\n'
            for n in ("digits", "enc")
        )
        + "}\n"
    )
    with running_server(f"--model_config_file={config}", rest=False) as running:
        yield running, models


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """tfsp's wheel, as `pip install .` builds it."""
    scratch = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools writes build/ next to the sources it builds.
    source = scratch / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("tfsp", "pipelines", "trainers", "serving"):
        shutil.copytree(
            REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(scratch / "wheels"), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    (built,) = (scratch / "wheels").glob("tfsp-*.whl")
    return built


def test_the_wheel_installs_one_top_level_package_tfsp(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"tfsp", "tfsp-0.1.0.dist-info"}
    for expected in (
        "tfsp/pipelines/schemas/digits.pbtxt",  # where the image's compiled specs read it
        "tfsp/trainers/cnn/family.py",
        "tfsp/serving/server.py",
    ):
        assert expected in names, expected


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory, wheel) -> Path:
    scratch = tmp_path_factory.mktemp("light")
    # The base interpreter, not our venv's: the light install must not need the private
    # runtime (a Debian 12 host's own glibc runs gRPC, numpy, Pillow and pyarrow).
    venv_config = configparser.ConfigParser()
    venv_config.read_string("[venv]\n" + (Path(sys.prefix) / "pyvenv.cfg").read_text())
    base_python = venv_config["venv"]["executable"]
    venv = scratch / "venv"
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "-c", str(REPO / "constraints.txt"), f"tfsp[client] @ {wheel.as_uri()}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    return venv


def _light(venv: Path, *args: str) -> subprocess.CompletedProcess:
    # Run outside the repository, so that only the installed package can be imported.
    return subprocess.run(
        [str(venv / "bin" / "tfsp"), *args], cwd=venv, capture_output=True, text=True, timeout=120
    )


def test_the_light_install_has_no_tensorflow(light_venv):
    listed = subprocess.run(
        [str(light_venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    installed = {package["name"].lower() for package in json.loads(listed)}
    assert {"tfsp", "grpcio", "protobuf", "numpy", "pillow", "pyarrow"} <= installed
    heavy = {"tensorflow", "tensorflow-serving-api", "tfx", "keras", "apache-beam"} & installed
    assert not heavy


def test_status_and_metadata(light_venv, server):
    running, _ = server
    status = _light(light_venv, "status", "--model", "digits", "--server", running.address)
    assert status.returncode == 0, status.stderr
    assert status.stdout.split() == ["model", "digits", "version", "1", "AVAILABLE"]
    metadata = _light(light_venv, "metadata", "--model", "enc", "--server", running.address)
    assert metadata.returncode == 0, metadata.stderr
    assert "input  images: DT_FLOAT [-1, 32, 32, 1]" in metadata.stdout
    assert "output codes: DT_FLOAT [-1, 4]" in metadata.stdout


def test_predict_an_image_as_the_full_install_does(light_venv, server, tmp_path):
    running, models = server
    picture = np.full((48, 40), 255, np.uint8)
    picture[8:44, 14:22] = 0  # a dark bar on white, any size: the model frames it
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    path = tmp_path / "digit.png"
    path.write_bytes(buffer.getvalue())
    result = _light(
        light_venv, "predict", "--model", "digits", "--image", str(path),
        "--server", running.address,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "(predict_image_bytes, gRPC" in result.stdout
    expected = models.classify_files(tf.constant([buffer.getvalue()]))["probabilities"]
    best = int(np.argmax(expected[0]))
    last = f"image 0: class {best}  p={expected[0][best]:.3f}"
    assert result.stdout.splitlines()[-1] == last


def test_features_to_parquet(light_venv, server, tmp_path):
    running, _ = server
    images = np.random.default_rng(3).random((300, 32, 32), dtype=np.float32)
    np.save(tmp_path / "images.npy", images)
    output = tmp_path / "codes.parquet"
    result = _light(
        light_venv, "features", "--model", "enc", "--input", str(tmp_path / "images.npy"),
        "--output", str(output), "--server", running.address, "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pq.read_table(output)
    codes = np.stack([table.column(f"code_{i}").to_numpy() for i in range(4)], axis=1)
    quadrants = images.reshape(-1, 2, 16, 2, 16).mean(axis=(2, 4)).reshape(-1, 4)
    np.testing.assert_allclose(codes, quadrants, atol=1e-6)


def test_the_client_library_imports_no_tensorflow(light_venv, server):
    running, _ = server
    script = (
        "import sys, numpy as np\n"
        "from tfsp.serving.client import ServingClient\n"
        f"with ServingClient('{running.address}') as client:\n"
        "    images = {'images': np.ones((2, 32, 32, 1), np.float32)}\n"
        "    spec, out = client.predict('enc', images, signature='predict_images')\n"
        "    print(spec.name, spec.version.value, out['codes'].tolist())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'tensorflow_serving')))\n"
    )
    result = subprocess.run(
        [str(light_venv / "bin" / "python"), "-c", script],
        cwd=light_venv, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "enc 1 [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]",
        "[]",
    ]


def test_a_full_install_command_says_what_to_install(light_venv, tmp_path):
    result = _light(light_venv, "serve", "--model_name=x", f"--model_base_path={tmp_path}")
    assert result.returncode == 1
    assert result.stderr.startswith("error: this command needs the full install")
    assert "pip install 'tfsp[full]'" in result.stderr
