"""Digits as users make them, through the served CNN: `predict_image_bytes` over gRPC and REST.

The CNN is trained by the real pipeline with its defaults on `tfsp data prepare`'s default
data (handwritten digits and digits printed in tfsp/data/printed.py's training fonts). The
test renders digits in fonts that training never saw (italics and obliques, Computer Modern
sans and typewriter), at several sizes, stroke widths and positions on canvases of several
sizes, in both polarities and in colour, as PNG and JPEG files, and sends the files as they
are: the model decodes and frames them. The issue's bar: at least 0.9 right.
"""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_pipeline
from tests.serving_harness import running_server
from tfsp.data.printed import TRAINING_FONTS, render_digit
from tfsp.serving.client import ClientError, RestClient, ServingClient

pytestmark = pytest.mark.e2e

UNSEEN_FONTS = (
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
)
REQUIRED_ACCURACY = 0.9
SIGNATURE = "predict_image_bytes"


@pytest.fixture(scope="module")
def server(tmp_path_factory, digits_dir):
    home = tmp_path_factory.mktemp("cnn-home")
    result = run_pipeline("cnn", digits_dir, home=home)  # the family's defaults
    assert result.returncode == 0, result.stderr[-3000:]
    with running_server("--model_name=cnn", f"--model_base_path={home / 'serving' / 'cnn'}") as s:
        yield s


def _user_images() -> tuple[list[bytes], np.ndarray]:
    """Three renderings of each digit in each unseen font, as image files."""
    assert not set(UNSEEN_FONTS) & set(TRAINING_FONTS)
    rng = np.random.default_rng(7)
    files, labels = [], []
    for font in UNSEEN_FONTS:
        for digit in range(10):
            for variant in range(3):
                canvas = int(rng.integers(48, 129))
                size = int(rng.integers(canvas // 3, canvas * 2 // 3))
                position = (
                    int(rng.integers(0, canvas - int(size * 0.7))),
                    int(rng.integers(0, max(1, canvas - int(size * 1.2)))),
                )
                grey = render_digit(
                    digit, font, size=size, stroke=int(rng.integers(0, 3)), position=position,
                    dark_on_light=variant != 1, canvas=canvas,
                )  # fmt: skip
                pixels = (grey * 255).astype(np.uint8)
                if variant == 2:  # dark blue ink on pale yellow paper, as a colour JPEG
                    ink, paper = np.array([20, 30, 140]), np.array([250, 240, 180])
                    share = (grey[..., None]).astype(np.float32)
                    pixels = (ink + (paper - ink) * share).astype(np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="JPEG" if variant == 2 else "PNG")
                files.append(buffer.getvalue())
                labels.append(digit)
    return files, np.asarray(labels)


@pytest.fixture(scope="module")
def user_images():
    return _user_images()


def test_grpc_gets_printed_digits_in_unseen_fonts_right(server, user_images):
    files, labels = user_images
    batch = np.empty(len(files), dtype=object)
    batch[:] = files
    with ServingClient(server.address) as client:
        _, outputs = client.predict("cnn", {"image_bytes": batch}, signature=SIGNATURE)
    accuracy = float(np.mean(outputs["class_ids"] == labels))
    print(f"gRPC accuracy on {len(labels)} digits in unseen fonts: {accuracy:.3f}")
    assert accuracy >= REQUIRED_ACCURACY


def test_rest_b64_answers_as_grpc(server, user_images):
    files, labels = user_images
    instances = [{"b64": base64.b64encode(f).decode()} for f in files[:60]]
    reply = RestClient(server.rest_address).predict("cnn", instances=instances, signature=SIGNATURE)
    rest_classes = [row["class_ids"] for row in reply["predictions"]]
    batch = np.empty(60, dtype=object)
    batch[:] = files[:60]
    with ServingClient(server.address) as client:
        _, outputs = client.predict("cnn", {"image_bytes": batch}, signature=SIGNATURE)
    assert rest_classes == outputs["class_ids"].tolist()
    assert np.mean(np.asarray(rest_classes) == labels[:60]) >= REQUIRED_ACCURACY


def test_a_corrupt_image_is_invalid_argument_and_the_server_stays(server, user_images):
    files, _ = user_images
    batch = np.empty(2, dtype=object)
    batch[:] = [files[0], files[1][:40]]  # the second file cut short
    with ServingClient(server.address) as client, pytest.raises(ClientError) as error:
        client.predict("cnn", {"image_bytes": batch}, signature=SIGNATURE)
    assert error.value.code == "INVALID_ARGUMENT"
    assert server.alive()
    with ServingClient(server.address) as client:
        _, outputs = client.predict("cnn", {"image_bytes": batch[:1]}, signature=SIGNATURE)
    assert outputs["class_ids"].shape == (1,)
