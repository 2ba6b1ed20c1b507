"""What `tfsp predict --npy` and `tfsp features` accept as pixels (tfsp/cli/serving.py,
serving/feature_sources.py), in-process."""

import itertools

import numpy as np
import pytest

from tfsp.cli.serving import _check_classifier, _load_inputs, _rest_output_names
from tfsp.core.errors import UserError
from tfsp.serving.feature_sources import NpySource


@pytest.mark.parametrize(
    "array, message",
    [
        (np.array(["a"] * 1024), "holds <U1 values, not pixel numbers"),
        (np.zeros(1024, np.complex64), "holds complex64 values, not pixel numbers"),
    ],
)
def test_arrays_that_are_not_pixel_numbers_are_refused(tmp_path, array, message):
    npy = tmp_path / "x.npy"
    np.save(npy, array)
    with pytest.raises(UserError, match=message):
        _load_inputs(None, npy, False, None)


def test_a_file_that_is_not_npy_says_so(tmp_path):
    # numpy reads a file without the .npy header as a pickle, and its error advises loading it
    npy = tmp_path / "x.npy"
    npy.write_text("not an array")
    with pytest.raises(UserError) as caught:
        _load_inputs(None, npy, False, None)
    assert str(caught.value) == f"cannot read {npy}: not a .npy array file"


def test_whole_number_pixels_are_taken(tmp_path):
    npy = tmp_path / "x.npy"
    np.save(npy, np.ones((2, 32, 32), np.uint8))
    _, _, value = _load_inputs(None, npy, False, None)
    assert value.shape == (2, 32, 32, 1) and value.dtype == np.float32


@pytest.mark.parametrize(
    "value, message",
    [
        (255, r"x\.npy: row 1 holds 255, but pixels are numbers in \[0, 1\]; 0-255 pixels\?"),
        (np.nan, r"x\.npy: row 1 holds nan, but pixels are numbers in \[0, 1\]$"),
        (-0.5, r"x\.npy: row 1 holds -0\.5, but pixels are numbers in \[0, 1\]$"),
    ],
)
def test_pixels_outside_zero_to_one_are_refused_naming_the_row(tmp_path, value, message):
    # the model would answer them anyway, with confident nonsense
    images = np.zeros((3, 32, 32), np.float32)
    images[1, 5, 7] = value
    npy = tmp_path / "x.npy"
    np.save(npy, images)
    with pytest.raises(UserError, match=message):
        _load_inputs(None, npy, False, None)


def test_float_rounding_past_one_is_a_pixel_and_the_byte_hint_needs_a_byte_value(tmp_path):
    images = np.zeros((2, 32, 32), np.float32)
    images[0, 0, 0] = np.nextafter(np.float32(1), np.float32(2))  # 1.0000001
    npy = tmp_path / "x.npy"
    np.save(npy, images)
    _load_inputs(None, npy, False, None)
    images[1, 0, 0] = 1.5
    np.save(npy, images)
    with pytest.raises(UserError) as caught:
        _load_inputs(None, npy, False, None)
    assert str(caught.value).endswith("row 1 holds 1.5, but pixels are numbers in [0, 1]")


def test_a_features_pull_names_the_row_of_a_bad_pixel_in_its_whole_input(tmp_path):
    # rows are read batch by batch: the row named is the input's, not the batch's
    images = np.zeros((10, 32, 32, 1), np.float32)
    images[7, 0, 0, 0] = 2.0
    npy = tmp_path / "in.npy"
    np.save(npy, images)
    batches = NpySource(npy).batches(start=0, batch_size=4)
    assert [first for first, _ in itertools.islice(batches, 1)] == [0]
    with pytest.raises(UserError, match=r"in\.npy: row 7 holds 2,"):
        list(NpySource(npy).batches(start=4, batch_size=4))


@pytest.mark.parametrize(
    "rows, answered",
    [
        ([[0.1, 0.2, 0.3, 0.4]], "one unnamed output"),  # one output: TF Serving drops its name
        ([{"codes": [0.1], "reconstruction": [0.2]}], "codes, reconstruction"),
    ],
)
def test_a_rest_answer_without_probabilities_names_what_it_holds(rows, answered):
    with pytest.raises(UserError) as caught:
        _check_classifier("enc", "predict_images", _rest_output_names(rows))
    assert f"model enc's predict_images answers {answered}, not 'probabilities'" in str(
        caught.value
    )
    _check_classifier("cnn", "predict_images", _rest_output_names([{"probabilities": [1.0]}]))
