"""End-to-end: the real CNN pipeline (real TFX components, LocalDagRunner, SQLite MLMD)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata import metadata_store
from tfx import v1 as tfx

from tests.conftest import run_crippled_pipeline, run_pipeline
from tfsp.data.prepare import read_split, to_example
from tfsp.pipelines.factory import TRAINER

pytestmark = pytest.mark.e2e

# Few epochs keep the suite fast; the bound is lowered to match (the 0.97 gate is measured
# by `make run` and reported in the README).
SMALL_RUN = ("--epochs", "4", "--min-accuracy", "0.5")


def _versions(home: Path) -> list[str]:
    root = home / "serving" / "cnn"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def _executions(home: Path, node_id: str) -> list:
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(str(home / "metadata.sqlite"))
    )
    context = store.get_context_by_type_and_name("node", f"tfsp-cnn.{node_id}")
    return store.get_executions_by_context(context.id) if context else []


@pytest.fixture(scope="module")
def blessed_home(tmp_path_factory, digits_dir):
    """A home where one small CNN run was blessed and pushed."""
    home = tmp_path_factory.mktemp("home")
    result = run_pipeline("cnn", digits_dir, *SMALL_RUN, home=home)
    assert result.returncode == 0, result.stderr[-3000:]
    return home, result


def test_blessed_run_pushes_a_loadable_versioned_savedmodel(blessed_home, digits_dir):
    home, result = blessed_home
    (version,) = _versions(home)
    assert version.isdigit()
    model_dir = home / "serving" / "cnn" / version
    assert f"pushed:         {model_dir}" in result.stdout
    loaded = tf.saved_model.load(str(model_dir))
    assert set(loaded.signatures) == {"serving_default", "predict_images", "predict_image_bytes"}

    images, labels = read_split(digits_dir / "test" / "data.tfrecord")
    batch = images[:64].reshape(-1, 32, 32, 1)
    raw = loaded.signatures["predict_images"](images=tf.constant(batch))
    assert raw["probabilities"].shape == (64, 10)
    np.testing.assert_allclose(raw["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)

    examples = tf.constant(
        [
            to_example(im, lb).SerializeToString()
            for im, lb in zip(images[:64], labels[:64], strict=True)
        ]
    )
    classified = loaded.signatures["serving_default"](inputs=examples)
    # Both signatures are the same model behind the same Transform graph.
    np.testing.assert_allclose(
        classified["scores"].numpy(), raw["probabilities"].numpy(), atol=1e-5
    )
    assert classified["classes"].numpy()[0].tolist() == [str(i).encode() for i in range(10)]
    accuracy = float(np.mean(raw["class_ids"].numpy() == labels[:64]))
    assert accuracy > 0.5
    assert "test accuracy:" in result.stdout


def test_progress_lists_every_component_once(blessed_home):
    _, result = blessed_home
    for component in (
        "ImportExampleGen",
        "StatisticsGen",
        "ImportSchemaGen",
        "ExampleValidator",
        "AnomalyGate",
        "Transform",
        "HyperparametersGen",
        "Trainer",
        "Evaluator",
        "Pusher",
    ):
        assert result.stderr.count(f"] {component} ") == 1, component


def test_crippled_run_is_not_blessed_and_keeps_the_good_version(blessed_home, digits_dir):
    home, _ = blessed_home
    before = _versions(home)
    result = run_crippled_pipeline("cnn", digits_dir, "--min-accuracy", "0.5", home=home)
    assert result.returncode == 1
    assert "not blessed; nothing pushed" in result.stderr
    assert "is below the bound 0.5 " in result.stderr
    assert _versions(home) == before


def test_rerun_with_same_inputs_is_served_from_cache(blessed_home, digits_dir):
    home, _ = blessed_home
    trainer_runs = len(_executions(home, TRAINER))
    result = run_pipeline("cnn", digits_dir, *SMALL_RUN, home=home)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Trainer                      cached" in result.stderr
    assert "(cached run)" in result.stdout
    assert len(_executions(home, TRAINER)) == trainer_runs + 1  # a CACHED execution


def test_crippled_run_on_a_fresh_home_pushes_nothing(tmp_path, digits_dir):
    result = run_crippled_pipeline("cnn", digits_dir, home=tmp_path)
    assert result.returncode == 1
    assert "not blessed" in result.stderr
    assert "below the bound 0.97 " in result.stderr
    assert _versions(tmp_path) == []


def _write_records(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for image, label in zip(images, labels, strict=True):
            writer.write(to_example(image, int(label)).SerializeToString())


def test_anomalous_data_stops_the_run_before_training(tmp_path, digits_dir):
    data = tmp_path / "data"
    shutil.copytree(digits_dir, data)
    images, labels = read_split(digits_dir / "eval" / "data.tfrecord")
    labels[:5] = 12  # outside the schema's label domain 0..9
    _write_records(data / "eval" / "data.tfrecord", images, labels)
    home = tmp_path / "home"

    result = run_pipeline("cnn", data, *SMALL_RUN, home=home)

    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: run stopped before training: data anomalies")
    assert "eval: label" in error
    assert _executions(home, TRAINER) == []
    assert _versions(home) == []
