"""Kubeflow Pipelines: `compile --family all` and `submit`, up to the network boundary.

Every registered family is compiled once (one `tfsp` process); the specs are checked for the
image, the Trainer-only GPU, the parameters and the volume wiring to TF Serving's model store.
`submit` is run against a closed port (clean failure) and against a loopback recorder of
KFP's REST API, to see what the real KFP client sends. No Kubeflow is involved.
"""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from tests.conftest import REPO, run_tfsp
from tfsp.core.beam_defaults import IN_PROCESS_BEAM_ARGS
from tfsp.pipelines.kubeflow_runner import (
    DEFAULT_PIPELINE_ROOT,
    DEFAULT_SERVING_ROOT,
    GPU_RESOURCE,
    MODEL_STORE_PVC,
    WORK_MOUNT,
    WORK_PVC,
)
from tfsp.trainers.registry import FAMILIES

pytestmark = pytest.mark.integration  # runs tfsp pipeline compile

IMAGE = "registry.example/tfsp-pipeline:9.9.9"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kfp")
    result = run_tfsp(
        "pipeline", "compile", "--family", "all", "--image", IMAGE, "--output-dir", str(out)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("wrote ") == len(FAMILIES)
    return out


def _package(path: Path) -> tuple[dict, dict]:
    pipeline, platform = yaml.safe_load_all(path.read_text())
    return pipeline, platform


def _containers(pipeline_spec: dict) -> dict[str, dict]:
    executors = pipeline_spec["deploymentSpec"]["executors"]
    return {name: e["container"] for name, e in executors.items() if "container" in e}


def _gpu_steps(containers: dict[str, dict]) -> set[str]:
    return {
        name
        for name, c in containers.items()
        if c.get("resources", {}).get("accelerator", {}).get("type") == GPU_RESOURCE
        or c.get("resources", {}).get("accelerator", {}).get("resourceType") == GPU_RESOURCE
    }


def _push_directory(pipeline_spec: dict) -> str:
    """The Pusher's filesystem destination, as the compiled task passes it."""
    parameters = pipeline_spec["root"]["dag"]["tasks"]["Pusher"]["inputs"]["parameters"]
    value = parameters["push_destination"]["runtimeValue"]
    # Schema 2.1 (the package) has `constant`; 2.0 (Vertex's PipelineJob) `constantValue`.
    destination = json.loads(value.get("constant") or value["constantValue"]["stringValue"])
    return destination["filesystem"]["base_directory"]


TFX_COMMAND = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_compiles_to_a_package_of_schema_2_1_without_resolvers(compiled, family):
    assert sorted(p.name for p in compiled.iterdir()) == sorted(f"{f}.yaml" for f in FAMILIES)
    pipeline, platform = _package(compiled / f"{family}.yaml")
    # Both parse as the protos KFP's API takes (unknown fields would raise).
    json_format.ParseDict(pipeline, pipeline_spec_pb2.PipelineSpec())
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    assert pipeline["schemaVersion"] == "2.1.0"  # the only one the backend accepts
    assert pipeline["pipelineInfo"]["name"] == f"tfsp-{family}"
    executors = pipeline["deploymentSpec"]["executors"]
    # Every executor is a container: no resolver, which the backend refuses at run creation.
    assert set(executors) == set(_containers(pipeline))
    assert not any("resolver" in name.lower() for name in pipeline["root"]["dag"]["tasks"])
    containers = _containers(pipeline)
    assert {c["image"] for c in containers.values()} == {IMAGE}
    assert _gpu_steps(containers) == {"Trainer_executor"}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_package_carries_parameter_defaults_and_pipeline_root(compiled, family):
    pipeline, _ = _package(compiled / f"{family}.yaml")
    params = pipeline["root"]["inputDefinitions"]["parameters"]
    assert params["epochs"]["parameterType"] == "NUMBER_INTEGER"
    assert params["epochs"]["defaultValue"] == FAMILIES[family].default_epochs
    assert params["learning_rate"]["defaultValue"] == FAMILIES[family].default_learning_rate
    assert (
        pipeline["defaultPipelineRoot"]
        == DEFAULT_PIPELINE_ROOT
        == ("minio://mlpipeline/v2/artifacts")
    )


@pytest.mark.parametrize("family", list(FAMILIES))
def test_package_steps_run_the_open_source_entrypoint(compiled, family):
    pipeline, _ = _package(compiled / f"{family}.yaml")
    for name, container in _containers(pipeline).items():
        assert container["command"] == ["python", "-m", "tfsp.pipelines.kfp_entrypoint"], name
        assert "lifecycle" not in container, name  # a pre-cache driver the backend never runs
    # Beam steps get the in-pod DirectRunner options after TFX's own flags.
    transform_args = _containers(pipeline)["Transform_executor"]["args"]
    assert transform_args[-len(IN_PROCESS_BEAM_ARGS) :] == list(IN_PROCESS_BEAM_ARGS)
    tasks = pipeline["root"]["dag"]["tasks"]
    uncached = {t for t, task in tasks.items() if not task["cachingOptions"].get("enableCache")}
    readers = {"BaselineModelGen", "BaseModelGen"} & set(tasks)
    assert uncached == {"ImportExampleGen", *readers}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_pusher_writes_to_the_model_store_tf_serving_mounts(compiled, family):
    pipeline, platform = _package(compiled / f"{family}.yaml")
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    containers = _containers(pipeline)
    assert set(executors) == set(containers)  # every step gets the work volume

    def claims(executor: str) -> dict[str, str]:
        return {
            m["pvcNameParameter"]["runtimeValue"]["constant"]: m["mountPath"]
            for m in executors[executor].get("pvcMount", [])
        }

    # The steps that push or read pushed models, and only they, mount the model store.
    store_steps = {
        f"{component}_executor"
        for component in ("Pusher", "CompanionPusher", "BaselineModelGen", "BaseModelGen")
    } & set(executors)
    assert "Pusher_executor" in store_steps
    for executor in store_steps:
        assert claims(executor) == {
            WORK_PVC: WORK_MOUNT,
            MODEL_STORE_PVC: DEFAULT_SERVING_ROOT,
        }, executor
    for executor in set(executors) - store_steps:
        assert claims(executor) == {WORK_PVC: WORK_MOUNT}, executor
    tolerated = {e for e, config in executors.items() if config.get("tolerations")}
    assert tolerated == {"Trainer_executor"}

    # The Pusher's destination is <serving root>/<family>, inside that mount.
    assert _push_directory(pipeline) == f"{DEFAULT_SERVING_ROOT}/{family}"


def test_transfer_takes_the_pushed_cnn_as_an_input_artifact(compiled):
    spec, platform = _package(compiled / "transfer.yaml")
    tasks = spec["root"]["dag"]["tasks"]
    assert "ReferenceModelGen" in tasks  # its gate compares with the from-scratch reference
    # The Trainer gets the CNN as an input artifact, read from the model store TF Serving
    # reads: pinned in the lineage, with no path in the Trainer's config.
    base_model = tasks["Trainer"]["inputs"]["artifacts"]["base_model"]["taskOutputArtifact"]
    assert base_model["producerTask"] == "BaseModelGen"
    base_params = tasks["BaseModelGen"]["inputs"]["parameters"]
    assert base_params["serving_root"]["runtimeValue"]["constant"] == DEFAULT_SERVING_ROOT
    assert base_params["model_name"]["runtimeValue"]["constant"] == "cnn"
    assert "serving_root" not in json.dumps(tasks["Trainer"]["inputs"]["parameters"])


def test_single_family_output_with_an_object_store_model_store_and_beam_options(tmp_path):
    out = tmp_path / "one" / "cnn.yaml"
    result = run_tfsp(
        "pipeline", "compile", "--family", "cnn", "--image", IMAGE, "--output", str(out),
        "--serving-root", "gs://bucket/models", "--trainer-gpus", "0",
        "--beam-arg=--runner=DataflowRunner", "--beam-arg=--region=europe-west4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.parent.iterdir()) == ["cnn.yaml"]
    pipeline, platform = _package(out)
    assert _gpu_steps(_containers(pipeline)) == set()
    # --beam-arg replaces the in-pod defaults.
    transform_args = _containers(pipeline)["Transform_executor"]["args"]
    assert transform_args[-2:] == ["--runner=DataflowRunner", "--region=europe-west4"]
    assert not set(IN_PROCESS_BEAM_ARGS) & set(transform_args)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    # An object-store serving root needs no volume on the Pusher.
    assert [m["mountPath"] for m in executors["Pusher_executor"]["pvcMount"]] == [WORK_MOUNT]
    assert _push_directory(pipeline) == "gs://bucket/models/cnn"


@pytest.mark.parametrize(
    "args, message",
    [
        (("--family", "all", "--output", "x.yaml"), "use --output-dir"),
        (("--family", "cnn", "--output", "x.json"), "--target oss writes a .yaml file"),
        (("--family", "cnn", "--target", "vertex", "--output", "x.yaml"), "writes a .json"),
        (
            ("--family", "cnn", "--target", "vertex", "--output", "x.json"),
            "--pipeline-root minio://mlpipeline/v2/artifacts: Vertex AI Pipelines reads and "
            "writes Cloud Storage only",
        ),
        (
            (
                "--family",
                "cnn",
                "--target",
                "vertex",
                "--output",
                "x.json",
                "--pipeline-root",
                "gs://b/p",
                "--data-root",
                "gs://b/d",
            ),
            "--serving-root /models: Vertex AI",
        ),
        (("--family", "nope", "--output-dir", "d"), "argument --family: invalid choice: 'nope'"),
        (("--family", "cnn", "--output-dir", "d", "--data-root", "/data"), "outside /tfsp"),
        (("--family", "cnn", "--output-dir", "d", "--data-root", "s3://b/d"), "under /tfsp or gs"),
        (
            ("--family", "cnn", "--output-dir", "d", "--pipeline-root", "/tfsp/pipelines"),
            "is not an object-store URI",
        ),
    ],
)
def test_compile_refuses_bad_requests_in_one_line(tmp_path, args, message):
    result = run_tfsp("pipeline", "compile", "--image", IMAGE, *args)
    assert result.returncode == 2  # each is a flag or flag combination the backend refuses
    assert message in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_vertex_target_writes_tfx_pipeline_job_on_cloud_storage(tmp_path):
    out = tmp_path / "cnn.json"
    result = run_tfsp(
        "pipeline", "compile", "--family", "cnn", "--image", IMAGE, "--target", "vertex",
        "--output", str(out), "--pipeline-root", "gs://b/root", "--data-root", "gs://b/data",
        "--serving-root", "gs://b/models",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    job = json.loads(out.read_text())
    assert set(job) == {"displayName", "labels", "pipelineSpec", "runtimeConfig"}
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://b/root"
    containers = _containers(job["pipelineSpec"])
    # Vertex AI runs TFX's own entrypoint; its GPUs are named by model.
    assert {tuple(c["command"]) for c in containers.values()} == {tuple(TFX_COMMAND)}
    accelerators = {
        name: c["resources"]["accelerator"] for name, c in containers.items() if "resources" in c
    }
    assert list(accelerators) == ["Trainer_executor"]
    assert accelerators["Trainer_executor"]["type"] == "NVIDIA_TESLA_T4"
    assert int(accelerators["Trainer_executor"]["count"]) == 1
    assert _push_directory(job["pipelineSpec"]) == "gs://b/models/cnn"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the socket is


def test_submit_to_an_unreachable_host_fails_cleanly_and_fast(compiled):
    port = _closed_port()
    started = time.monotonic()
    result = run_tfsp(
        "pipeline", "submit", "--host", f"http://127.0.0.1:{port}", "--family", "cnn",
        "--spec-dir", str(compiled), "--timeout", "2",
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: cannot reach Kubeflow Pipelines at http://127.0.0.1:{port}")
    assert result.stdout == ""
    assert elapsed < 10  # no TensorFlow import, no retries


def test_submit_to_something_that_is_not_kfp_fails_cleanly(compiled, kfp_recorder):
    host, calls = kfp_recorder
    result = run_tfsp(
        "pipeline", "submit", "--host", f"{host}/not-kfp", "--family", "cnn",
        "--spec-dir", str(compiled),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: no Kubeflow Pipelines API at {host}/not-kfp (GET /apis/v2beta1/healthz: HTTP 404)"
    ]
    assert [method for method, _, _ in calls] == ["GET"]  # nothing was posted


@pytest.mark.parametrize(
    "args, message, code",
    [
        # a bad --param is a flag error (2); a package that is not there, a missing file (1)
        (("--param", "epochs=many"), "--param epochs=many: expected a number_integer", 2),
        (("--param", "dropout=0.1"), "not a parameter of this pipeline", 2),
        (("--param", "epochs"), "expected NAME=VALUE", 2),
        (("--spec", "nowhere.yaml"), "no pipeline package at nowhere.yaml", 1),
    ],
)
def test_submit_checks_its_inputs_before_connecting(compiled, args, message, code):
    result = run_tfsp(
        "pipeline", "submit", "--host", "http://127.0.0.1:9", "--family", "cnn",
        "--spec-dir", str(compiled), *args,
    )  # fmt: skip
    assert result.returncode == code
    assert message in result.stderr.strip().splitlines()[-1]


class _KfpRecorder(BaseHTTPRequestHandler):
    """Answers the few KFP v2beta1 REST calls a submit makes, and records them."""

    calls: list = []

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.calls.append(("GET", self.path, None))
        if self.path.startswith("/apis/v2beta1/healthz"):
            self._reply({"multi_user": False})
        elif self.path.startswith("/apis/v2beta1/experiments"):
            self._reply({"experiments": [], "total_size": 0})  # no experiment of that name yet
        else:
            self.send_error(404)

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append(("POST", self.path, body))
        if self.path == "/apis/v2beta1/experiments":
            self._reply({"experiment_id": "exp-1", "display_name": body["display_name"]})
        else:
            self._reply({"run_id": "run-42", "display_name": body["display_name"]})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def kfp_recorder():
    _KfpRecorder.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KfpRecorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _KfpRecorder.calls
    server.shutdown()
    server.server_close()


def test_submit_sends_the_package_and_parameters_and_prints_the_run_url(compiled, kfp_recorder):
    host, calls = kfp_recorder
    result = run_tfsp(
        "pipeline", "submit", "--host", host, "--family", "cnn", "--spec-dir", str(compiled),
        "--param", "epochs=3", "--param", "learning_rate=0.01",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == f"run: {host}/#/runs/details/run-42\n"
    posts = {path: body for method, path, body in calls if method == "POST"}
    assert posts["/apis/v2beta1/experiments"]["display_name"] == "tfsp-cnn"
    run = posts["/apis/v2beta1/runs"]
    assert run["experiment_id"] == "exp-1"
    assert run["runtime_config"]["parameters"] == {"epochs": 3, "learning_rate": 0.01}
    # The backend takes the root from the run only: the package's default is sent with it.
    assert run["runtime_config"]["pipeline_root"] == DEFAULT_PIPELINE_ROOT
    # The pipeline spec and the volume wiring both reach the API.
    uploaded = run["pipeline_spec"]
    assert uploaded["pipeline_spec"]["pipelineInfo"]["name"] == "tfsp-cnn"
    mounts = uploaded["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"][
        "Pusher_executor"
    ]["pvcMount"]
    assert {m["mountPath"] for m in mounts} == {WORK_MOUNT, DEFAULT_SERVING_ROOT}


def test_submit_sends_the_pipeline_root_it_is_given(compiled, kfp_recorder):
    host, calls = kfp_recorder
    result = run_tfsp(
        "pipeline", "submit", "--host", host, "--family", "cnn", "--spec-dir", str(compiled),
        "--pipeline-root", "s3://team-bucket/tfsp",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = [body for method, path, body in calls if path == "/apis/v2beta1/runs"]
    assert run["runtime_config"]["pipeline_root"] == "s3://team-bucket/tfsp"


def test_readme_documents_the_deploy_commands():
    readme = (REPO / "README.md").read_text()
    for command in (
        "tfsp pipeline compile --family all",
        "tfsp pipeline submit",
        "kubectl apply -k k8s/overlays/",
        "tfsp deploy models-config",
        "dns:///",
    ):
        assert command in readme, command
