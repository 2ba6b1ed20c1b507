"""End-to-end: every family's real pipeline, run by `tfsp pipeline run --family all` (few
epochs, lowered bounds), then the pushed models as clients see them; and the refusals."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO, run_crippled_pipeline, run_pipeline, user_env
from tfsp.data.prepare import read_split, to_example
from tfsp.trainers.registry import FAMILIES as REGISTERED
from tfsp.trainers.registry import served_model_names

pytestmark = pytest.mark.e2e

# As in test_pipeline_e2e.py: few epochs and a lowered floor. The claims themselves (BN above
# plain, transferred above scratch) are still the Evaluator's strict comparisons.
# The autoencoder needs a few more epochs than the classifiers to beat PCA; a small code makes
# its comparison with PCA clear at that length.
SMALL_RUN = ("--epochs", "10", "--min-accuracy", "0.5", "--code-size", "8")
FAMILIES = ("cnn", "rnn", "batchnorm", "transfer", "autoencoder")


def _examples(images, labels):
    return tf.constant(
        [
            to_example(image, label).SerializeToString()
            for image, label in zip(images, labels, strict=True)
        ]
    )


def _versions(home, family):
    root = home / "serving" / family
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.fixture(scope="module")
def all_home(tmp_path_factory, digits_dir):
    """A home where `--family all` ran every family once."""
    home = tmp_path_factory.mktemp("all")
    result = run_pipeline("all", digits_dir, *SMALL_RUN, home=home)
    assert result.returncode == 0, result.stderr[-3000:]
    return home, result


def test_all_runs_every_family_in_dependency_order_and_pushes_each(all_home):
    home, result = all_home
    starts = [result.stderr.index(f"==> pipeline tfsp-{name} ") for name in FAMILIES]
    assert starts.index(min(starts)) == 0  # cnn first
    assert starts[0] < starts[FAMILIES.index("transfer")]
    for name in FAMILIES:
        assert len(_versions(home, name)) == 1, name
    # Every registered family runs (families added later included).
    assert result.stdout.count("pushed:") == len(REGISTERED)


def test_claim_families_print_both_figures_and_the_bn_figure(all_home):
    home, result = all_home
    assert "claim:          BN variant accuracy" in result.stdout
    assert "vs plain variant" in result.stdout
    assert "claim:          transferred model accuracy" in result.stdout
    assert "vs from-scratch model" in result.stdout
    figures = [line.split()[-1] for line in result.stdout.splitlines() if "figure:" in line]
    (figure,) = [f for f in figures if f.endswith("distributions.png")]
    assert open(figure, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "ReferenceModelGen" in result.stderr


def test_every_pushed_model_runs_on_tf_servings_load_path(all_home):
    """All six models: graph-mode load (restore op, init op, signatures by tensor name in a
    Session) against TF2's loader, every signature, in a process importing only TensorFlow."""
    home, _ = all_home
    folders = []
    for model in served_model_names():
        (version,) = _versions(home, model)
        folder = home / "serving" / model / version
        assert (folder / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
        folders.append(str(folder))
    reports = _graph_load_compare(folders)
    signatures = {r["model"].split("/")[-2]: sorted(r["max_abs_diff"]) for r in reports}
    assert "transformed_labels" in signatures["transfer"]
    assert "encode_images" in signatures["autoencoder"]
    # Decoding and framing image files is core TensorFlow: it runs where TF Serving runs.
    assert all("predict_image_bytes" in names for names in signatures.values()), signatures


def _graph_load_compare(folders: list[str]) -> list[dict]:
    compared = subprocess.run(
        [sys.executable, str(REPO / "tests" / "graph_load_compare.py"), *folders],
        capture_output=True,
        text=True,
        timeout=600,
    )
    reports = [json.loads(line) for line in compared.stdout.splitlines()]
    assert compared.returncode == 0, (reports, compared.stderr[-3000:])
    assert [r["model"] for r in reports] == folders and all(r["ok"] for r in reports)
    return reports


def test_every_rnn_cell_runs_on_tf_servings_load_path(all_home, tmp_path):
    """Every `--cell` (the Jordan cell included), bidirectional and stacked, exported the one
    way with the run's Transform graph, runs in a Session as TF Serving runs it. Built with
    TF_USE_LEGACY_KERAS=1 set (TFT asks users to set it): the models are Keras 3 all the same."""
    home, _ = all_home
    (graph,) = (home / "pipelines" / "tfsp-rnn" / "Transform" / "transform_graph").iterdir()
    exported = subprocess.run(
        [sys.executable, str(REPO / "tests" / "export_rnn_variants.py"), str(graph), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={**user_env(), "TF_USE_LEGACY_KERAS": "1"},
    )
    assert exported.returncode == 0, exported.stderr[-3000:]
    folders = exported.stdout.split()
    assert [f.split("/")[-1] for f in folders] == [
        "simple", "jordan", "lstm", "gru",
        "jordan-bidirectional", "gru-stacked", "lstm-bidirectional-stacked",
    ]  # fmt: skip
    for report in _graph_load_compare(folders):
        assert sorted(report["max_abs_diff"]) == [
            "predict_image_bytes", "predict_images", "serving_default",
        ]  # fmt: skip


@pytest.mark.parametrize("family", ["rnn", "batchnorm"])
def test_pushed_classifiers_have_both_signatures(all_home, digits_dir, family):
    home, _ = all_home
    (version,) = _versions(home, family)
    loaded = tf.saved_model.load(str(home / "serving" / family / version))
    assert {"serving_default", "predict_images"} <= set(loaded.signatures)
    images, labels = read_split(digits_dir / "test" / "data.tfrecord")
    raw = loaded.signatures["predict_images"](images=tf.constant(images[:32, ..., None]))
    examples = _examples(images[:32], labels[:32])
    scores = loaded.signatures["serving_default"](inputs=examples)["scores"]
    assert scores.shape == (32, 10)
    np.testing.assert_allclose(scores.numpy(), raw["probabilities"].numpy(), atol=1e-5)


def test_transferred_model_serves_the_new_label_set(all_home, digits_dir):
    home, _ = all_home
    (version,) = _versions(home, "transfer")
    loaded = tf.saved_model.load(str(home / "serving" / "transfer" / version))
    assert set(loaded.signatures) == {
        "serving_default", "predict_images", "predict_image_bytes", "transformed_labels",
    }  # fmt: skip
    images, labels = read_split(digits_dir / "test" / "data.tfrecord")
    examples = _examples(images[:40], labels[:40])
    classified = loaded.signatures["serving_default"](inputs=examples)
    assert classified["classes"].numpy()[0].tolist() == [b"0-4", b"5-9"]
    task = loaded.signatures["transformed_labels"](examples=examples)["task_label"]
    assert task.numpy()[:, 0].tolist() == (labels[:40] >= 5).astype(int).tolist()
    raw = loaded.signatures["predict_images"](images=tf.constant(images[:40, ..., None]))
    assert raw["probabilities"].shape == (40, 2)


def test_all_stops_at_the_first_failed_gate_and_transfer_needs_a_cnn(tmp_path, digits_dir):
    result = run_crippled_pipeline("all", digits_dir, home=tmp_path)
    assert result.returncode == 1
    assert "cnn: not blessed; nothing pushed" in result.stderr
    assert "stopped at family cnn" in result.stderr
    assert "tfsp-rnn" not in result.stderr  # nothing after the failed family ran
    assert _versions(tmp_path, "cnn") == []

    alone = run_pipeline("transfer", digits_dir, home=tmp_path)
    assert alone.returncode == 1
    (error,) = [line for line in alone.stderr.splitlines() if line.startswith("error:")]
    assert "the transfer family builds on the pushed cnn model: no cnn model" in error
    assert "--family cnn' first" in error
