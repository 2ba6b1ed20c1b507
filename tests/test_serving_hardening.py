"""Bad input, case by case: the status code and message a client gets (issue #12's table).

In-process over the real data plane and model manager; tests/test_serving_fuzz.py checks the
same property over random input, and at the wire.
"""

import asyncio

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving import tensors
from serving.dataplane import SpecRef
from serving.errors import ServingError
from tests.serving_harness import build_toy_model, in_process_dataplane


@pytest.fixture(scope="module")
def dataplane(tmp_path_factory):
    root = tmp_path_factory.mktemp("hardening") / "toy"
    build_toy_model(root / "1", 1.0)
    with in_process_dataplane(root) as plane:
        yield plane


def _predict_error(dataplane, signature: str, inputs: dict) -> ServingError:
    with pytest.raises(ServingError) as caught:
        asyncio.run(dataplane.predict(SpecRef("toy"), signature, inputs))
    return caught.value


@pytest.mark.parametrize(
    "serialized, fragment",
    [
        (b"\x80", "Could not parse example input, value: '\\x80'"),
        (b"\xff\xfe garbage", "Could not parse example input"),
        (b"\x0a\x05hello", "Could not parse example input"),  # valid UTF-8, not an Example
    ],
    ids=["lone-continuation-byte", "invalid-utf8", "utf8-garbage"],
)
def test_garbage_serialized_examples_are_invalid_argument(dataplane, serialized, fragment):
    inputs = {"inputs": np.array([serialized], dtype=object)}
    error = _predict_error(dataplane, "classify", inputs)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in error.message
    assert "\n" not in error.message and "[[" not in error.message
    # and the model still answers
    good = asyncio.run(dataplane.predict(SpecRef("toy"), "", {"x": np.ones((1, 3), np.float32)}))
    assert good.outputs["y"].tolist() == [[1.0, 1.0, 1.0]]


def _tensor(dtype: int, dims: list[int]) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype)
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    return proto


@pytest.mark.parametrize(
    "dims, fragment",
    [
        ([1] * 65, "65 dimensions; at most 64"),
        ([1] * 254, "254 dimensions; at most 64"),
        ([0, 2**40, 2**40], "is too large (more than 2**63 - 1 entries)"),
        ([2**62, 0, 2**62], "is too large"),
    ],
    ids=["65-dims", "254-dims", "zero-elements-2^80", "zero-elements-2^124"],
)
def test_tensors_numpy_cannot_hold_are_invalid_argument(dims, fragment):
    with pytest.raises(ServingError) as caught:
        tensors.to_numpy("x", _tensor(types_pb2.DT_FLOAT, dims))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.message.startswith("input 'x': ") and fragment in caught.value.message


def test_zero_element_tensors_that_fit_still_decode():
    assert tensors.to_numpy("x", _tensor(types_pb2.DT_FLOAT, [0, 2**40])).shape == (0, 2**40)
    assert tensors.to_numpy("x", _tensor(types_pb2.DT_FLOAT, [1] * 64)).ndim == 64
