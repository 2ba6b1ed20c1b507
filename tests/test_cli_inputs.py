"""What `tfsp predict --npy` accepts as pixels (tfsp/cli/serving.py), in-process."""

import numpy as np
import pytest

from tfsp.cli.serving import _load_inputs
from tfsp.core.errors import UserError


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
