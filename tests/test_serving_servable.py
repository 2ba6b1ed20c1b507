"""Servable.run: the direct way into TensorFlow must answer exactly as the public call path."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from serving.servable import load_servable
from tests.serving_harness import build_toy_model

EXAMPLE = tf.train.Example(
    features=tf.train.Features(
        feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[0.25]))}
    )
).SerializeToString()
INPUTS = {
    "serving_default": {"x": np.arange(6, dtype=np.float32).reshape(2, 3)},
    "classify": {"examples": np.array([EXAMPLE, EXAMPLE], dtype=object)},
    "regress": {"examples": np.array([EXAMPLE], dtype=object)},
    "types": {
        "a": np.array([1, -2], dtype=np.int64),
        "s": np.array([b"p", b"q"], dtype=object),
        "h": np.array([[1, 2], [3, 4]], dtype=np.int32),
    },
}


@pytest.fixture(scope="module")
def servable(tmp_path_factory):
    path = build_toy_model(tmp_path_factory.mktemp("servable") / "toy" / "2", 2.0)
    return load_servable("toy", 2, str(path))


def _public_call(servable, signature: str, inputs: dict) -> dict:
    results = servable.functions[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {key: value.numpy() for key, value in results.items()}


@pytest.mark.parametrize("signature", sorted(INPUTS))
def test_direct_call_matches_the_public_call(servable, signature):
    assert signature in servable.callers  # the toy's layout is the one the direct way expects
    direct = servable.run(signature, INPUTS[signature])
    public = _public_call(servable, signature, INPUTS[signature])
    assert sorted(direct) == sorted(public)
    for key, value in public.items():
        assert direct[key].dtype == value.dtype, key
        np.testing.assert_array_equal(direct[key], value)


def test_signatures_of_another_layout_take_the_public_call(servable):
    public_only = dataclasses.replace(servable, callers={})
    for signature, inputs in INPUTS.items():
        expected = servable.run(signature, inputs)
        got = public_only.run(signature, inputs)
        assert sorted(got) == sorted(expected)
        for key, value in expected.items():
            np.testing.assert_array_equal(got[key], value)


def test_direct_call_keeps_only_the_requested_outputs(servable):
    outputs = servable.run("types", INPUTS["types"], ["h_sum"])
    assert list(outputs) == ["h_sum"]
    np.testing.assert_array_equal(outputs["h_sum"], [3, 7])


def test_a_failing_op_raises_tensorflows_error_type(servable):
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        servable.run("regress", {"examples": np.array([b"not an Example"], dtype=object)})
    assert "parse" in caught.value.message.lower()
