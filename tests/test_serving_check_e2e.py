"""End-to-end: the ServingCheck refuses a candidate TF Serving could not run.

The real CNN pipeline pushes a version; then the same family, trained by a trainer whose
export leaves the Keras variables untracked (tests/unservable_trainer.py), runs again. TF2's
loader (the Evaluator) runs that candidate; the serving check's model server does not. The
run says why in one line, nothing is pushed, and the served version stays.
"""

import json
import subprocess
import sys

import pytest
from ml_metadata import metadata_store
from tfx import v1 as tfx

from tests.conftest import REPO, user_env
from tfsp.pipelines.factory import SERVING_CHECK

pytestmark = pytest.mark.e2e

# Each run in a fresh process, as `tfsp pipeline run` would: the Trainer runs in-process
# under LocalDagRunner, and the Keras export it makes must not depend on what this test
# session's process built before (see tests/serving_harness.build_unservable_model).
_RUN = """
import dataclasses, json, sys
from pathlib import Path
from tfsp.trainers.registry import FAMILIES
from tfsp.pipelines.layout import LocalLayout
from tfsp.pipelines.local_runner import run_local

home, data, run_fn = sys.argv[1:4]
FAMILIES["cnn"] = dataclasses.replace(FAMILIES["cnn"], run_fn=run_fn)
result = run_local(FAMILIES["cnn"], LocalLayout(Path(home)), data_dir=Path(data), epochs=2,
                   gate_lower_bound=0.3, enable_cache=False)
print("RESULT " + json.dumps({"blessed": result.blessed, "failures": result.failures,
                              "pushed_dir": result.pushed_dir}))
"""


def _run(home, data, run_fn) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(home), str(data), run_fn],
        cwd=REPO,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))


def _versions(home):
    root = home / "serving" / "cnn"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def _check_blessings(home) -> list[int]:
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(str(home / "metadata.sqlite"))
    )
    context = store.get_context_by_type_and_name("node", f"tfsp-cnn.{SERVING_CHECK}")
    blessing = store.get_artifact_type("InfraBlessing").id
    artifacts = [a for a in store.get_artifacts_by_context(context.id) if a.type_id == blessing]
    return [a.custom_properties["blessed"].int_value for a in sorted(artifacts, key=lambda a: a.id)]


def test_an_unservable_candidate_is_refused_and_the_served_version_stays(tmp_path, digits_dir):
    first = _run(tmp_path, digits_dir, "tfsp.trainers.cnn.model.run_fn")
    assert first["blessed"], first["failures"]
    (served,) = _versions(tmp_path)

    second = _run(tmp_path, digits_dir, "tests.unservable_trainer.run_fn")

    assert not second["blessed"]
    assert second["pushed_dir"] is None
    (refusal,) = [f for f in second["failures"] if f.startswith("not servable: ")]
    # the model server's own reason for not starting, as TF Serving's startup gives it
    assert "model(s) did not become available" in refusal
    assert "Could not find variable" in refusal
    assert "\n" not in refusal
    assert _versions(tmp_path) == [served]
    assert _check_blessings(tmp_path) == [1, 0]
