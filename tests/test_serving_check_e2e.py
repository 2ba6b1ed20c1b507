"""End-to-end: the ServingCheck refuses a candidate TF Serving could not run.

The real CNN pipeline pushes a version; then the same family, trained by a trainer whose
export leaves the Keras variables untracked (tests/unservable_trainer.py), runs again. TF2's
loader (the Evaluator) runs that candidate; the serving check's model server does not. The
run says why in one line, nothing is pushed, and the served version stays.
"""

import dataclasses

import pytest
from ml_metadata import metadata_store
from tfx import v1 as tfx

from pipelines.factory import SERVING_CHECK
from pipelines.families import FAMILIES
from pipelines.layout import LocalLayout
from pipelines.local_runner import run_local

pytestmark = pytest.mark.e2e

SMALL = dict(epochs=2, gate_lower_bound=0.3)


def _versions(home):
    root = home / "serving" / "cnn"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def _check_blessings(home) -> list[int]:
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(str(home / "metadata.sqlite"))
    )
    context = store.get_context_by_type_and_name("node", f"tfsp-cnn.{SERVING_CHECK}")
    artifacts = store.get_artifacts_by_context(context.id)
    return [a.custom_properties["blessed"].int_value for a in sorted(artifacts, key=lambda a: a.id)]


def test_an_unservable_candidate_is_refused_and_the_served_version_stays(
    tmp_path, digits_dir, monkeypatch
):
    layout = LocalLayout(tmp_path)
    first = run_local("cnn", layout, data_dir=digits_dir, **SMALL)
    assert first.blessed, first.failures
    (served,) = _versions(tmp_path)

    unservable = dataclasses.replace(FAMILIES["cnn"], run_fn="tests.unservable_trainer.run_fn")
    monkeypatch.setitem(FAMILIES, "cnn", unservable)
    second = run_local("cnn", layout, data_dir=digits_dir, enable_cache=False, **SMALL)

    assert not second.blessed
    assert second.pushed_dir is None
    (refusal,) = [f for f in second.failures if f.startswith("not servable: ")]
    assert "did not become AVAILABLE" in refusal and "Could not find variable" in refusal
    assert "\n" not in refusal
    assert _versions(tmp_path) == [served]
    assert _check_blessings(tmp_path) == [1, 0]
