"""The compiled KFP packages run step by step as the open-source backend's launcher runs them.

tests/kfp_launcher.py plays the backend's driver and launcher on this machine (untyped
inputs, executor-logs, a MinIO root with downloads and uploads); every step runs the package's
own command in its own process. The CNN runs first and pushes; the transfer family then takes
that CNN as its base model; a second CNN run is compared with the first one's model; the
autoencoder's run ends with FeatureGen, a Beam step. What is not reproduced (mounts, images,
Argo) is listed there.
"""

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
import tensorflow_model_analysis as tfma
import yaml

from tests.kfp_launcher import PackageRun, StepFailed
from tfsp.pipelines.factory import schema_path
from tfsp.pipelines.kubeflow_runner import (
    DEFAULT_PIPELINE_ROOT,
    TFX_ENTRYPOINT_COMMAND,
    ClusterOptions,
    kfp_package,
    write_kfp_package,
)
from tfsp.trainers.registry import get_family

pytestmark = pytest.mark.e2e

# A short run with a matching floor, as in test_pipeline_e2e.py.
SHORT = {"epochs": 4}
# Enough for the autoencoder (code size 32) to beat PCA and push: 40 epochs did by 11% here.
AUTOENCODER = {"epochs": 60}
GATE = 0.5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, digits_dir):
    """A work volume holding the data, an empty model store, and the compiled packages."""
    root = tmp_path_factory.mktemp("cluster")
    work = root / "work"
    shutil.copytree(digits_dir, work / "data" / "digits")
    options = ClusterOptions(
        pipeline_root=DEFAULT_PIPELINE_ROOT,
        data_root=str(work / "data" / "digits"),
        serving_root=str(root / "models"),
        schema_file=schema_path(),
        trainer_gpus=0,
        work_mount=str(work),
        gate_lower_bound=GATE,
    )
    packages = {}
    for family in ("cnn", "transfer", "autoencoder"):
        packages[family] = root / f"{family}.yaml"
        package = kfp_package(get_family(family), "unused:image", options)
        write_kfp_package(packages[family], *package)
    return root, packages


@pytest.fixture(scope="module")
def cnn_run(cluster):
    root, packages = cluster
    run = PackageRun(root / "cnn-run", DEFAULT_PIPELINE_ROOT)
    run.run(packages["cnn"], SHORT)
    return run


def _versions(models, name):
    return sorted(p.name for p in (models / name).iterdir() if not p.name.startswith("."))


def test_cnn_package_runs_every_step_and_pushes_to_the_model_store(cluster, cnn_run):
    root, _ = cluster
    assert set(cnn_run.outputs) >= {"ImportExampleGen", "Trainer", "Evaluator", "Pusher"}
    (version,) = _versions(root / "models", "cnn")
    assert (root / "models" / "cnn" / version / "saved_model.pb").is_file()
    pushed = cnn_run.outputs["Pusher"]["pushed_model"]
    assert pushed["metadata"]["pushed"] == 1
    assert pushed["metadata"]["pushed_version"] == version
    # Nothing pushed before: the baseline holds no model, and the Evaluator gated without it.
    assert cnn_run.outputs["BaselineModelGen"]["model"]["metadata"]["pushed_version"] == "none"
    assert cnn_run.outputs["Evaluator"]["blessing"]["metadata"]["blessed"] == 1


def test_every_output_is_recorded_at_its_remote_uri_and_uploaded(cnn_run):
    prefix = f"{DEFAULT_PIPELINE_ROOT}/tfsp-cnn/{cnn_run.run_id}/"
    assert cnn_run.not_uploaded == []
    for task, outputs in cnn_run.outputs.items():
        for key, artifact in outputs.items():
            assert artifact["uri"].startswith(f"{prefix}{task}/"), (task, key, artifact["uri"])
    examples = cnn_run.outputs["ImportExampleGen"]["examples"]["uri"]
    stored = cnn_run.store / "minio" / examples.removeprefix("minio://")
    assert sorted(p.name for p in stored.iterdir()) == ["Split-eval", "Split-test", "Split-train"]


@pytest.fixture(scope="module")
def later_runs(cluster, cnn_run):
    """The transfer run and a second cnn run, both after the first cnn push, run at once (as
    two KFP runs may be): {"first": the first cnn version, "transfer": …, "cnn": …}."""
    root, packages = cluster
    (first,) = _versions(root / "models", "cnn")
    runs = {
        family: PackageRun(root / f"{family}-later-run", DEFAULT_PIPELINE_ROOT)
        for family in ("transfer", "cnn")
    }
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        done = [pool.submit(run.run, packages[family], SHORT) for family, run in runs.items()]
        for future in done:
            future.result()
    return {"first": first, **runs}


def test_transfer_package_takes_the_pushed_cnn_as_its_base(cluster, later_runs):
    root, _ = cluster
    run = later_runs["transfer"]
    base = run.outputs["BaseModelGen"]["model"]["metadata"]
    # The second cnn run may push while transfer runs: the base is a version the store holds
    # (BaseModelGen reads at the start of the run, so in practice the first).
    assert base["pushed_model_name"] == "cnn"
    assert base["pushed_version"] in _versions(root / "models", "cnn")
    (version,) = _versions(root / "models", "transfer")
    assert run.outputs["Pusher"]["pushed_model"]["metadata"]["pushed_version"] == version


def test_second_cnn_run_is_compared_with_the_first_runs_model(cluster, later_runs):
    root, _ = cluster
    run = later_runs["cnn"]
    baseline = run.outputs["BaselineModelGen"]["model"]
    assert baseline["metadata"]["pushed_version"] == later_runs["first"]
    # The Evaluator got that model (downloaded from the store) and compared the candidate with
    # it: its metrics hold the baseline's and the difference.
    evaluation = (
        run.store / "minio" / run.outputs["Evaluator"]["evaluation"]["uri"].removeprefix("minio://")
    )
    keys = [
        kv.key
        for metrics in tfma.load_metrics(str(evaluation))
        for kv in metrics.metric_keys_and_values
        if kv.key.name == "sparse_categorical_accuracy"
    ]
    assert {key.model_name for key in keys} == {"candidate", "baseline"}
    assert any(key.is_diff for key in keys)
    # Blessed or not, the Pusher did what the Evaluator decided.
    blessed = run.outputs["Evaluator"]["blessing"]["metadata"]["blessed"] == 1
    assert len(_versions(root / "models", "cnn")) == (2 if blessed else 1)


def test_tfx_own_entrypoint_fails_where_the_backend_fails_it(cluster, tmp_path):
    # The stand-in is as strict as the backend: TFX's v2 entrypoint, unadapted, fails the
    # first step on the launcher's executor-logs output (production-facts: every step).
    _, packages = cluster
    pipeline_spec, platform_spec = yaml.safe_load_all(packages["cnn"].read_text())
    for executor in pipeline_spec["deploymentSpec"]["executors"].values():
        executor["container"]["command"] = TFX_ENTRYPOINT_COMMAND
    unadapted = tmp_path / "tfx-entrypoint.yaml"
    write_kfp_package(unadapted, pipeline_spec, platform_spec)
    run = PackageRun(tmp_path / "run", DEFAULT_PIPELINE_ROOT)
    with pytest.raises(StepFailed, match="(?s)exited 1.*Could not import system.Artifact"):
        run.run(unadapted, SHORT)
    assert run.outputs == {}  # the first step already failed


def test_autoencoder_package_pushes_and_adds_the_codes_to_every_split(cluster):
    import tensorflow as tf

    root, packages = cluster
    run = PackageRun(root / "autoencoder-run", DEFAULT_PIPELINE_ROOT)
    run.run(packages["autoencoder"], AUTOENCODER)
    assert run.outputs["Pusher"]["pushed_model"]["metadata"]["pushed"] == 1
    features = run.outputs["FeatureGen"]["features"]
    assert features["metadata"]["encoded"] == 1
    assert run.not_uploaded == []
    stored = run.store / "minio" / features["uri"].removeprefix("minio://")
    assert sorted(p.name for p in stored.iterdir()) == ["Split-eval", "Split-test", "Split-train"]
    files = [str(f) for f in (stored / "Split-test").glob("*.gz")]
    examples = [
        tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files, "GZIP")
    ]
    manifest = json.loads((root / "work" / "data" / "digits" / "manifest.json").read_text())
    assert len(examples) == manifest["splits"]["test"]["num_examples"]
    assert all(len(e.features.feature["codes"].float_list.value) == 32 for e in examples)
