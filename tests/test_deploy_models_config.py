"""models.config comes from the family registry: one source of truth, and drift fails here."""

import pytest

from tests.conftest import REPO, run_tfsp
from tfsp.core.family import Family
from tfsp.pipelines.kubeflow_runner import DEFAULT_SERVING_ROOT
from tfsp.pipelines.model_config import (
    DEFAULT_ROOT,
    build_models_config,
    parse_models_config,
    render_models_config,
)
from tfsp.trainers import registry
from tfsp.trainers.registry import FAMILIES, served_model_names

COMMITTED = REPO / "k8s" / "base" / "models.config"
REGENERATE = "tfsp deploy models-config --root /models --output k8s/base/models.config"


def test_committed_models_config_is_what_the_registry_generates():
    # If this fails, a family or servable changed: run the command in the message.
    assert COMMITTED.read_text() == render_models_config(DEFAULT_ROOT, served_model_names()), (
        f"run: {REGENERATE}"
    )


def test_committed_models_config_serves_every_registered_model_from_the_store():
    config = parse_models_config(COMMITTED.read_text())
    entries = config.model_config_list.config
    assert [e.name for e in entries] == served_model_names()
    for family in FAMILIES.values():
        assert set(family.served_models()) <= {e.name for e in entries}, family.name
    for entry in entries:
        assert entry.base_path == f"{DEFAULT_SERVING_ROOT}/{entry.name}"
        assert entry.model_platform == "tensorflow"


def test_default_root_is_where_compiled_pipelines_push():
    assert DEFAULT_ROOT == DEFAULT_SERVING_ROOT


def test_a_new_family_changes_the_generated_config(monkeypatch):
    # The comparison above can fail: registering a family changes what is generated.
    extra = Family(
        name="extra",
        run_fn="tfsp.trainers.extra.run_fn",
        gate_lower_bound=0.5,
        default_epochs=1,
        default_learning_rate=1e-3,
        default_batch_size=8,
        companions=(("extra_encoder", "encoder"),),
    )
    monkeypatch.setitem(registry.FAMILIES, "extra", extra)
    assert render_models_config(DEFAULT_ROOT, served_model_names()) != COMMITTED.read_text()
    names = [
        c.name
        for c in build_models_config(DEFAULT_ROOT, served_model_names()).model_config_list.config
    ]
    assert names[-2:] == ["extra", "extra_encoder"]


def test_object_store_roots_and_duplicate_names():
    config = build_models_config("gs://bucket/models/", ["cnn"])
    assert config.model_config_list.config[0].base_path == "gs://bucket/models/cnn"
    with pytest.raises(ValueError, match="not unique: cnn"):
        build_models_config("/models", ["cnn", "cnn"])


@pytest.mark.parametrize("root", ["models", "./models", "", "gs:/bucket"])
def test_a_relative_root_is_refused_as_tf_serving_would_refuse_it(root):
    # ValidateModelConfigList refuses every model under it, and the server stops at startup
    with pytest.raises(ValueError, match="is a relative path; TF Serving takes only an absolute"):
        build_models_config(root, ["cnn"])


@pytest.mark.integration
def test_cli_writes_the_same_config(tmp_path):
    out = tmp_path / "models.config"
    result = run_tfsp("deploy", "models-config", "--root", "/srv/models", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text() == render_models_config("/srv/models", served_model_names())
    printed = run_tfsp("deploy", "models-config")
    assert printed.returncode == 0 and printed.stdout == COMMITTED.read_text()
    relative = run_tfsp("deploy", "models-config", "--root", "models", "--output", str(out))
    assert relative.returncode == 2  # a flag error
    assert relative.stderr.strip().splitlines()[-1] == (
        "error: --root: 'models' is a relative path; TF Serving takes only an absolute path or "
        "a URI as a model's base path"
    )


@pytest.mark.integration
def test_pushed_only_lists_the_models_with_a_version(tmp_path):
    # `make serve` after some families ran: a listed model without versions would hold the
    # server at startup for ever (TF Serving waits for every listed model too).
    root = tmp_path / "serving"
    (root / "cnn" / "3").mkdir(parents=True)
    (root / "cnn" / "3" / "saved_model.pb").write_bytes(b"")
    (root / "rnn" / "tmp-push").mkdir(parents=True)  # no numeric version: not pushed
    out = tmp_path / "models.config"
    args = ("deploy", "models-config", "--pushed-only", "--root", str(root), "--output", str(out))
    result = run_tfsp(*args)
    assert result.returncode == 0, result.stderr
    entries = parse_models_config(out.read_text()).model_config_list.config
    assert [(e.name, e.base_path) for e in entries] == [("cnn", str(root / "cnn"))]

    nothing = run_tfsp(*args[:4], str(tmp_path / "empty"), "--output", str(out))
    assert nothing.returncode == 1
    assert nothing.stderr.strip().splitlines()[-1] == (
        f"error: no model is pushed under {tmp_path / 'empty'}; run 'make run' (or 'tfsp run') "
        "first"
    )
