"""tfsp/data/framing.py: the one definition of how a picture becomes a 32×32 model input."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfsp.data.framing import frame_arrays, frame_encoded, frame_grey


def _encoded(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _bar(height: int = 60, width: int = 90, dark_on_light: bool = True) -> np.ndarray:
    """A 20×10 bar somewhere on a page: the only ink."""
    page = np.full((height, width), 230 if dark_on_light else 10, np.uint8)
    page[30:50, 70:80] = 20 if dark_on_light else 240
    return page


def test_the_ink_box_is_squared_centred_and_fills_the_frame():
    framed = frame_grey(_bar() / 255.0).numpy()
    assert framed.shape == (32, 32)
    # 20×10 padded to 20×20 and enlarged bilinearly: the bar is the middle half of the
    # columns, all rows, each edge blending over two columns.
    np.testing.assert_allclose(framed[:, 9:23], 1.0, atol=1e-6)
    np.testing.assert_allclose(framed[:, :7], 0.0, atol=1e-6)
    np.testing.assert_allclose(framed[:, 25:], 0.0, atol=1e-6)


def test_a_large_picture_is_shrunk_by_area_averaging():
    page = np.zeros((640, 640), np.float32)
    page[:, 300:302] = 1.0  # a stroke 2 px wide on a 640 px page, full height
    framed = frame_grey(page).numpy()
    # The crop is the stroke (2 × 640), squared to 640 and shrunk 20×: area averaging keeps
    # its ink in the middle column (1/10 of it), where sampling could miss it entirely.
    assert framed.shape == (32, 32)
    np.testing.assert_allclose(framed.sum(axis=1), 0.1, atol=1e-5)


def test_either_polarity_and_any_range_frame_the_same():
    dark_ink = frame_grey(_bar(dark_on_light=True) / 255.0).numpy()
    bright_ink = frame_grey(_bar(dark_on_light=False).astype(np.float32) * 7.0).numpy()
    np.testing.assert_allclose(dark_ink, bright_ink, atol=1e-6)


def test_a_blank_image_stays_blank():
    assert frame_grey(np.full((20, 30), 0.7, np.float32)).numpy().max() == 0.0


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_encoded_files_of_every_format_frame_as_their_pixels(fmt):
    page = _bar()
    colour = np.stack([page, page, page], axis=-1)  # an RGB file of the same picture
    files = tf.constant([_encoded(page, fmt), _encoded(colour, fmt)])
    framed = frame_encoded(files).numpy()
    assert framed.shape == (2, 32, 32, 1)
    expected = frame_arrays([page / 255.0])[0]
    atol = 0.08 if fmt == "JPEG" else 0.02  # lossy, and 8-bit grey conversion
    np.testing.assert_allclose(framed[0, ..., 0], expected, atol=atol)
    np.testing.assert_allclose(framed[1, ..., 0], expected, atol=atol)


def test_a_file_that_is_not_an_image_fails_naming_the_format():
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        frame_encoded(tf.constant([b"plain text, not a picture"]))


def test_frame_arrays_takes_images_of_different_sizes():
    framed = frame_arrays([_bar(60, 90) / 255.0, _bar(100, 81) / 255.0])
    assert framed.shape == (2, 32, 32)
    np.testing.assert_allclose(framed[0], framed[1], atol=1e-6)
