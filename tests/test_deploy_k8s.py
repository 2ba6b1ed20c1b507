"""The Kubernetes manifests, built as a cluster would receive them and checked offline.

`kubectl kustomize` builds each overlay; every resource validates against a pinned
Kubernetes schema (kubernetes-validate, strict: unknown fields fail); the TF Serving files in
the ConfigMaps parse as the protos TF Serving reads. No cluster is involved.
"""

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from tfsp.pipelines.kubeflow_runner import (
    DEFAULT_SERVING_ROOT,
    MODEL_STORE_PVC,
    WORK_MOUNT,
    WORK_PVC,
)
from tfsp.pipelines.model_config import parse_models_config
from tfsp.serving.options import Options, build_parser
from tfsp.trainers.registry import served_model_names

pytestmark = pytest.mark.integration  # runs kubectl and the tfsp CLI

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
OVERLAYS = ("cpu", "gpu", "local")
# The oldest Kubernetes minor we support; the schemas ship inside kubernetes-validate.
K8S_VERSION = "1.32.0"
TF_SERVING_TAG = "2.21.0"  # the TensorFlow line the models are trained and exported with


def _kustomize(path: Path) -> list[dict]:
    # kubectl ships with our machines (shared/docs/environment.md); without it these checks
    # must fail, not be skipped, or the manifests would go untested unnoticed.
    assert shutil.which("kubectl"), "kubectl is not on PATH: the kustomize builds cannot run"
    result = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict]]:
    """Every overlay (and the jobs kustomization) as `kubectl kustomize` renders it."""
    return {name: _kustomize(K8S / "overlays" / name) for name in OVERLAYS} | {
        "jobs": _kustomize(K8S / "jobs"),
        "kfp-s3": _kustomize(K8S / "kfp-s3"),
    }


def _one(resources: list[dict], kind: str, name: str | None = None) -> dict:
    found = [r for r in resources if r["kind"] == kind and name in (None, r["metadata"]["name"])]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def _serving_container(resources: list[dict]) -> dict:
    deployment = _one(resources, "Deployment", "tf-serving")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _flags(container: dict) -> dict[str, str]:
    return dict(arg.removeprefix("--").split("=", 1) for arg in container["args"])


def _config_files(resources: list[dict]) -> dict[str, str]:
    (config_map,) = [
        r
        for r in resources
        if r["kind"] == "ConfigMap" and r["metadata"]["name"].startswith("tf-serving-config")
    ]
    return config_map["data"]


# TF Serving's BatchingParameters and MonitoringConfig protos are not on PyPI, so the tests
# declare the same fields (tensorflow_serving/servables/tensorflow/session_bundle_config.proto
# and config/monitoring_config.proto) to parse the files as strictly as the server does.
def _serving_protos() -> tuple[type, type]:
    fd = descriptor_pb2.FileDescriptorProto(
        name="tfsp_test_serving.proto",
        package="tfsp_test",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    f = descriptor_pb2.FieldDescriptorProto
    optional, repeated = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    batching = fd.message_type.add(name="BatchingParameters")
    for number, name in enumerate(
        ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"), 1
    ):
        batching.field.add(
            name=name,
            number=number,
            label=optional,
            type=f.TYPE_MESSAGE,
            type_name=".google.protobuf.Int64Value",
        )
    batching.field.add(
        name="thread_pool_name",
        number=5,
        label=optional,
        type=f.TYPE_MESSAGE,
        type_name=".google.protobuf.StringValue",
    )
    batching.field.add(name="allowed_batch_sizes", number=6, label=repeated, type=f.TYPE_INT64)
    batching.field.add(
        name="pad_variable_length_inputs", number=7, label=optional, type=f.TYPE_BOOL
    )
    prometheus = fd.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, label=optional, type=f.TYPE_BOOL)
    prometheus.field.add(name="path", number=2, label=optional, type=f.TYPE_STRING)
    monitoring = fd.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config",
        number=1,
        label=optional,
        type=f.TYPE_MESSAGE,
        type_name=".tfsp_test.PrometheusConfig",
    )
    pool = descriptor_pool.DescriptorPool()
    from google.protobuf import wrappers_pb2

    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(fd)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("tfsp_test.BatchingParameters")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("tfsp_test.MonitoringConfig")),
    )


BatchingParameters, MonitoringConfig = _serving_protos()


@pytest.mark.parametrize("overlay", [*OVERLAYS, "jobs", "kfp-s3"])
def test_every_resource_validates_against_the_pinned_kubernetes_schema(built, overlay):
    kinds = set()
    for resource in built[overlay]:
        kubernetes_validate.validate(resource, K8S_VERSION, strict=True)
        kinds.add(resource["kind"])
        assert resource["metadata"].get("namespace", "tfsp") == "tfsp" or (
            resource["kind"] == "Namespace"
        )
    serving_kinds = {
        "Namespace",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    expected = {"jobs": {"Job"}, "kfp-s3": {"ConfigMap"}}.get(overlay, serving_kinds)
    assert kinds == expected


def test_the_validator_rejects_a_broken_resource(built):
    # The check above must be able to fail: a misspelt field is refused in strict mode.
    deployment = _one(built["cpu"], "Deployment", "tf-serving")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_tf_serving_runs_the_official_pinned_image_with_its_config_files(built, overlay):
    resources = built[overlay]
    container = _serving_container(resources)
    image, _, tag = container["image"].rpartition(":")
    assert image == "tensorflow/serving"
    assert tag == (f"{TF_SERVING_TAG}-gpu" if overlay == "gpu" else TF_SERVING_TAG)
    # Read as tensorflow_model_server reads its command line (TensorFlow's flag syntax:
    # --flag=value only, its value types), and the channel arguments as server.cc does.
    parsed = build_parser().parse_args(container["args"])
    assert (parsed.port, parsed.rest_api_port, parsed.enable_batching) == (8500, 8501, True)
    channel_arguments = Options(grpc_channel_arguments=parsed.grpc_channel_arguments)
    # Without a bounded connection age, round-robin clients never see scaled-up replicas.
    assert dict(channel_arguments.channel_arguments)["grpc.max_connection_age_ms"] > 0
    # Enough gRPC threads for two full batches in flight, plus the one waiting for calls:
    # past them TF Serving refuses calls (RESOURCE_EXHAUSTED), and its default is 4 per CPU.
    # As many REST threads, one of which runs the HTTP event loop: past them, calls wait.
    batching = text_format.Parse(
        _config_files(resources)["batching_parameters.txt"], BatchingParameters()
    )
    two_batches = 2 * batching.max_batch_size.value + 1
    assert min(parsed.grpc_max_threads, parsed.rest_api_num_threads) >= two_batches
    flags = _flags(container)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}

    # Every file a flag names is in the ConfigMap mounted where the flag points.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {
        v["name"]: v for v in _one(resources, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    files = _config_files(resources)
    config_map_name = next(r["metadata"]["name"] for r in resources if r["kind"] == "ConfigMap")
    for flag in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
        folder, _, name = flags[flag].rpartition("/")
        (volume,) = [v for v, path in mounts.items() if path == folder]
        assert volumes[volume]["configMap"]["name"] == config_map_name
        assert name in files, flag


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_files_parse_as_tf_serving_reads_them(built, overlay):
    files = _config_files(built[overlay])
    models = parse_models_config(files["models.config"])
    assert [c.name for c in models.model_config_list.config] == served_model_names()

    batching = text_format.Parse(files["batching_parameters.txt"], BatchingParameters())
    sizes = list(batching.allowed_batch_sizes)
    assert sizes == sorted(sizes) and sizes[-1] == batching.max_batch_size.value
    assert batching.num_batch_threads.value >= 1
    assert batching.batch_timeout_micros.value > 0

    monitoring = text_format.Parse(files["monitoring.config"], MonitoringConfig())
    assert monitoring.prometheus_config.enable
    deployment = _one(built[overlay], "Deployment", "tf-serving")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == monitoring.prometheus_config.path
    assert annotations["prometheus.io/port"] == "8501"


def test_batching_proto_stand_in_refuses_the_wrapper_form_for_plain_fields():
    # allowed_batch_sizes is a plain repeated int64: the `{ value: N }` form fails to parse.
    with pytest.raises(text_format.ParseError):
        text_format.Parse("allowed_batch_sizes { value: 8 }", BatchingParameters())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ask_the_rest_model_status_endpoint_of_a_served_model(built, overlay):
    container = _serving_container(built[overlay])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["port"] == "http", probe
        prefix, _, model = check["path"].rpartition("/")
        assert prefix == "/v1/models" and model in served_model_names(), probe


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_locked_down(built, overlay):
    deployment = _one(built[overlay], "Deployment", "tf-serving")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    container = _serving_container(built[overlay])
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    # The HPA owns the replica count.
    assert "replicas" not in deployment["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_model_store_is_the_claim_and_path_the_pipelines_push_to(built, overlay):
    resources = built[overlay]
    pod = _one(resources, "Deployment", "tf-serving")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"]["claimName"] == MODEL_STORE_PVC
    (mount,) = [
        m for m in _serving_container(resources)["volumeMounts"] if m["name"] == volume["name"]
    ]
    assert mount["mountPath"] == DEFAULT_SERVING_ROOT and mount["readOnly"] is True
    models = parse_models_config(_config_files(resources)["models.config"])
    for config in models.model_config_list.config:
        assert config.base_path == f"{DEFAULT_SERVING_ROOT}/{config.name}"
    claims = {r["metadata"]["name"]: r for r in resources if r["kind"] == "PersistentVolumeClaim"}
    assert set(claims) == {MODEL_STORE_PVC, WORK_PVC}
    modes = {m for c in claims.values() for m in c["spec"]["accessModes"]}
    assert modes == ({"ReadWriteOnce"} if overlay == "local" else {"ReadWriteMany"})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gpu_requests_only_in_the_gpu_overlay(built, overlay):
    container = _serving_container(built[overlay])
    pod = _one(built[overlay], "Deployment", "tf-serving")["spec"]["template"]["spec"]
    gpus = container["resources"]["limits"].get("nvidia.com/gpu")
    if overlay == "gpu":
        assert gpus == "1"
        assert pod["nodeSelector"].get("nvidia.com/gpu.present") == "true"
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    else:
        assert gpus is None and "tolerations" not in pod
        assert not any("nvidia" in key for key in pod.get("nodeSelector", {}))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_autoscaler_budget_and_network_policy_select_the_serving_pods(built, overlay):
    resources = built[overlay]
    deployment = _one(resources, "Deployment", "tf-serving")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict) -> bool:
        return selector and all(pod_labels.get(k) == v for k, v in selector.items())

    clusterip = _one(resources, "Service", "tf-serving")
    headless = _one(resources, "Service", "tf-serving-grpc")
    assert selects(clusterip["spec"]["selector"]) and selects(headless["spec"]["selector"])
    assert {p["port"] for p in clusterip["spec"]["ports"]} == {8500, 8501}
    # The gRPC Service is headless, so DNS returns every pod for client-side balancing.
    assert headless["spec"]["clusterIP"] == "None"
    assert [p["port"] for p in headless["spec"]["ports"]] == [8500]

    hpa = _one(resources, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "tf-serving",
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = _one(resources, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"])
    # The budget must let a drain proceed even at the autoscaler's minimum.
    if "minAvailable" in pdb["spec"]:
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    else:
        assert pdb["spec"]["maxUnavailable"] >= 1

    policy = _one(resources, "NetworkPolicy")
    assert selects(policy["spec"]["podSelector"]["matchLabels"])
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    sources = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    # Only labelled clients and Prometheus: no rule admits every pod or namespace.
    assert sources and all(peer.get("podSelector", {}).get("matchLabels") for peer in sources)


def test_prepare_job_mounts_both_volumes_where_the_compiled_pipelines_expect_them(built):
    job = _one(built["jobs"], "Job")
    pod = job["spec"]["template"]["spec"]
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    (container,) = pod["containers"]
    mounts = {
        claims[m["name"]]: m["mountPath"] for m in container["volumeMounts"] if m["name"] in claims
    }
    assert mounts == {WORK_PVC: WORK_MOUNT, MODEL_STORE_PVC: DEFAULT_SERVING_ROOT}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["fsGroup"]
    assert container["args"][:2] == ["data", "prepare"]
    output = container["args"][container["args"].index("--output") + 1]
    assert output.startswith(WORK_MOUNT + "/")


def test_kfp_launcher_config_names_an_s3_root_and_its_credentials(built):
    # The fields KFP's launcher reads (backend/src/v2/config/env.go and s3.go).
    (config,) = built["kfp-s3"]
    assert (config["kind"], config["metadata"]["name"]) == ("ConfigMap", "kfp-launcher")
    assert config["data"]["defaultPipelineRoot"].startswith("s3://")
    s3 = yaml.safe_load(config["data"]["providers"])["s3"]["default"]
    assert s3["endpoint"] and s3["region"]
    secret = s3["credentials"]["secretRef"]
    assert s3["credentials"]["fromEnv"] is False
    assert set(secret) == {"secretName", "accessKeyKey", "secretKeyKey"}
