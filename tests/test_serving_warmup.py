"""Warmup replay, in-process: TF Serving's file, record kinds, limits and error statuses."""

import shutil

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from tests.serving_harness import (
    build_toy_model,
    build_unservable_model,
    warmup_predict,
    write_warmup,
)
from tfsp.serving.servable import load_servable
from tfsp.serving.warmup import MAX_RECORDS, WarmupError, run_warmup
from tfsp.trainers.warmup import classify_log

X = {"x": np.ones((2, 3), np.float32)}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_toy_model(tmp_path_factory.mktemp("warmup") / "toy", 2.0)


@pytest.fixture
def toy(built, tmp_path):
    path = tmp_path / "1"
    shutil.copytree(built, path)
    return path


def _example(x: float) -> tf.train.Example:
    feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=[x]))}
    return tf.train.Example(features=tf.train.Features(feature=feature))


def test_no_file_is_no_warmup(toy):
    assert run_warmup(load_servable("toy", 1, str(toy))) is None


def test_predict_classify_and_regress_records_are_replayed(toy):
    regress = prediction_log_pb2.PredictionLog()
    regress.regress_log.request.model_spec.signature_name = "regress"
    regress.regress_log.request.input.example_list.examples.add().CopyFrom(_example(0.5))
    write_warmup(
        toy,
        [warmup_predict("", X), classify_log("classify", [_example(0.25)]), regress],
    )
    assert run_warmup(load_servable("toy", 1, str(toy)), iterations=3) == 3


def test_a_failing_request_fails_with_its_status(toy):
    write_warmup(toy, [warmup_predict("nope", X)])
    with pytest.raises(WarmupError, match='Serving signature key "nope" not found.') as caught:
        run_warmup(load_servable("toy", 1, str(toy)))
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.integration
def test_unrestored_variables_fail_warmup_as_in_tf_serving(tmp_path):
    path = build_unservable_model(tmp_path / "1", with_warmup=True)
    with pytest.raises(WarmupError, match="Could not find variable dense/") as caught:
        run_warmup(load_servable("bad", 1, str(path)))
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_a_record_that_is_not_a_prediction_log_is_refused(toy):
    write_warmup(toy, [], raw=[b"\xff\xff not a proto"])
    with pytest.raises(WarmupError, match="Failed to parse warmup record") as caught:
        run_warmup(load_servable("toy", 1, str(toy)))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_file_that_is_not_tfrecord_is_data_loss(toy):
    path = toy / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir()
    path.write_bytes(b"this is not a TFRecord file at all, just text")
    with pytest.raises(WarmupError, match="Please verify your warmup data is in TFRecord") as e:
        run_warmup(load_servable("toy", 1, str(toy)))
    assert e.value.code == grpc.StatusCode.DATA_LOSS


def test_session_run_logs_are_unimplemented(toy):
    record = prediction_log_pb2.PredictionLog()
    record.session_run_log.SetInParent()
    write_warmup(toy, [record])
    with pytest.raises(WarmupError, match="Unsupported log_type for warmup: 5") as caught:
        run_warmup(load_servable("toy", 1, str(toy)))
    assert caught.value.code == grpc.StatusCode.UNIMPLEMENTED


def test_more_than_a_thousand_records_are_refused(toy):
    write_warmup(toy, [warmup_predict("", {"x": np.ones((1, 3), np.float32)})] * (MAX_RECORDS + 1))
    with pytest.raises(WarmupError, match=r"exceeds the maximum \(1000\)"):
        run_warmup(load_servable("toy", 1, str(toy)))
