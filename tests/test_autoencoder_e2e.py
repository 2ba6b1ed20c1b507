"""End-to-end: the AutoEncoder pipeline, its two servables, and the PCA gate."""

import re

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import run_pipeline
from tfsp.data.prepare import read_split

pytestmark = pytest.mark.e2e


def _versions(home, model):
    root = home / "serving" / model
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.fixture(scope="module")
def blessed(tmp_path_factory, digits_dir):
    home = tmp_path_factory.mktemp("ae-home")
    # A small code makes the comparison with PCA clear after few epochs.
    result = run_pipeline(
        "autoencoder", digits_dir, "--epochs", "15", "--code-size", "8", home=home
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return home, result


def test_both_servables_are_pushed_with_one_version(blessed):
    home, result = blessed
    (version,) = _versions(home, "autoencoder")
    assert _versions(home, "autoencoder_encoder") == [version]
    assert "claim:          autoencoder mean_squared_error" in result.stdout
    assert "vs PCA" in result.stdout
    assert "test MSE:" in result.stdout


def test_the_autoencoder_beats_pca_in_the_evaluators_output(blessed):
    _, result = blessed
    line = next(x for x in result.stdout.splitlines() if x.startswith("claim:"))
    found = re.search(r"mean_squared_error (\S+) vs PCA (\S+) ", line)
    assert found, line
    assert float(found.group(1)) < float(found.group(2))


def test_encoder_export_agrees_with_the_full_models_code_layer(blessed, digits_dir):
    home, _ = blessed
    (version,) = _versions(home, "autoencoder")
    full = tf.saved_model.load(str(home / "serving" / "autoencoder" / version))
    encoder = tf.saved_model.load(str(home / "serving" / "autoencoder_encoder" / version))
    images, _ = read_split(digits_dir / "test" / "data.tfrecord")
    batch = tf.constant(images[:32].reshape(-1, 32, 32, 1))
    codes = encoder.signatures["predict_images"](images=batch)["codes"]
    assert codes.shape == (32, 8)
    inside = full.signatures["encode_images"](images=batch)["codes"]
    np.testing.assert_allclose(codes.numpy(), inside.numpy(), atol=1e-5)
    reconstruction = full.signatures["predict_images"](images=batch)["reconstruction"]
    assert reconstruction.shape == (32, 32, 32, 1)
    assert float(np.mean((reconstruction.numpy()[..., 0] - images[:32]) ** 2)) < 0.02


def test_figure_of_originals_and_reconstructions_is_written(blessed):
    _, result = blessed
    figures = [
        x.split(maxsplit=1)[1] for x in result.stdout.splitlines() if x.startswith("figure:")
    ]
    assert any(f.endswith("reconstructions.png") for f in figures)
    with open(next(f for f in figures if f.endswith("reconstructions.png")), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def _feature_splits(home) -> dict[str, list[tf.train.Example]]:
    (output,) = (home / "pipelines" / "tfsp-autoencoder" / "FeatureGen" / "features").iterdir()
    return {
        split.name.removeprefix("Split-"): [
            tf.train.Example.FromString(record.numpy())
            for record in tf.data.TFRecordDataset([str(f) for f in split.glob("*.gz")], "GZIP")
        ]
        for split in sorted(output.glob("Split-*"))
    }


def test_feature_gen_adds_the_pushed_encoders_codes_to_every_split(blessed, digits_dir):
    home, result = blessed
    assert "FeatureGen" in result.stderr
    (version,) = _versions(home, "autoencoder_encoder")
    encoder = tf.saved_model.load(str(home / "serving" / "autoencoder_encoder" / version))
    splits = _feature_splits(home)
    assert sorted(splits) == ["eval", "test", "train"]
    for split, examples in splits.items():
        images, labels = read_split(digits_dir / split / "data.tfrecord")
        assert len(examples) == len(images), split
        pixels = np.stack(
            [np.asarray(e.features.feature["image"].float_list.value, np.float32) for e in examples]
        )
        codes = np.stack(
            [np.asarray(e.features.feature["codes"].float_list.value, np.float32) for e in examples]
        )
        assert codes.shape == (len(images), 8)
        expected = encoder.signatures["predict_images"](
            images=tf.constant(pixels.reshape(-1, 32, 32, 1))
        )["codes"]
        np.testing.assert_allclose(codes, expected.numpy(), atol=1e-5)
        assert sorted(int(e.features.feature["label"].int64_list.value[0]) for e in examples) == (
            sorted(labels.tolist())
        )


def test_an_autoencoder_that_loses_to_pca_pushes_nothing(tmp_path, digits_dir):
    result = run_pipeline(
        "autoencoder", digits_dir, "--epochs", "1", "--learning-rate", "1e-5", home=tmp_path
    )
    assert result.returncode == 1
    assert "not blessed" in result.stderr
    assert "PCA" in result.stderr
    assert _versions(tmp_path, "autoencoder") == []
    assert _versions(tmp_path, "autoencoder_encoder") == []
    features = tmp_path / "pipelines" / "tfsp-autoencoder" / "FeatureGen"
    assert not list(features.rglob("Split-*"))  # no features of a model nobody serves


def test_main_job_serves_what_was_pushed_and_pulls_features(blessed, digits_dir, capsys):
    import pyarrow.parquet as pq

    from tfsp.cli.pipeline import FamilyOutcome
    from tfsp.cli.run import serve_and_check
    from tfsp.pipelines.layout import LocalLayout

    home, _ = blessed
    (version,) = _versions(home, "autoencoder")
    outcomes = [FamilyOutcome("autoencoder", version, "autoencoder MSE below PCA", True)]
    assert serve_and_check(LocalLayout(home), outcomes, data_dir=digits_dir) == 0
    table = capsys.readouterr().out
    assert f"autoencoder_encoder  {version}" in table
    assert f"v{version}: codes [1, 8]" in table
    assert f"v{version}: reconstruction [1, 32, 32, 1]" in table
    codes = pq.read_table(home / "features" / "autoencoder_encoder_test_codes.parquet").to_pandas()
    test_rows = len(read_split(digits_dir / "test" / "data.tfrecord")[1])
    assert len(codes) == test_rows and list(codes.columns)[:2] == ["id", "code_0"]
    assert codes["id"].tolist() == list(range(test_rows))
