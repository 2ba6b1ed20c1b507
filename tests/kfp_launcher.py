"""Run a compiled KFP package task by task on this machine, handing each step what the
open-source Kubeflow Pipelines backend's driver and launcher hand it.

The spec is KFP's backend (backend/src/v2: driver/driver.go, component/launcher_v2.go,
metadata/client.go and converter.go, objectstore/object_store.go). Reproduced:
- a task runs once its `dependentTasks` are done, tasks ready together at once; parameters
  from `runtimeValue.constant` and the root's parameters (run arguments over the package's
  defaults); a trigger policy is refused;
- input artifacts are the producer's recorded outputs, with an empty type
  (`instanceSchema: ""`, metadata/client.go) and the MLMD id as name;
- output URIs `<root>/<pipeline>/<run id>/<task>/<uuid>/<key>`, and the extra
  `executor-logs` output of type `system.Artifact`;
- an object store that holds files only (no empty folders): inputs are downloaded to
  LocalPathForURI (`minio://x` → `/minio/x`, under the step's own root) before the command,
  outputs uploaded from there after it; a missing output path is recorded as an empty
  artifact, not an error; the ExecutorOutput's uri and metadata are merged into what is
  recorded (mergeRuntimeArtifacts), and an output whose URI the launcher cannot map is not
  uploaded;
- the command is the container's command and args with `{{$}}` replaced by the
  ExecutorInput JSON, run in its own process with its own local root and output file.

Not reproduced: PVC mounts (every step sees this machine's filesystem), images, caching,
retries, Argo.
"""

import itertools
import json
import os
import shutil
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.conftest import REPO, user_env
from tfsp.pipelines.kfp_entrypoint import LOCAL_ROOT_ENV

EXECUTOR_LOGS = "executor-logs"
_SYSTEM_ARTIFACT = {"schemaTitle": "system.Artifact", "schemaVersion": "0.0.1"}


def local_path(uri: str, root: str) -> str:
    """launcher_v2.go LocalPathForURI, under `root` (a pod's "/"): written here from the Go
    source, not taken from the code under test, so the two sides of the contract can differ."""
    for scheme, folder in (("gs://", "/gcs/"), ("minio://", "/minio/"), ("s3://", "/s3/")):
        if uri.startswith(scheme):
            return root.rstrip("/") + folder + uri.removeprefix(scheme)
    return uri  # not mapped: the launcher skips downloading or uploading it


class StepFailed(AssertionError):
    """A step's command exited non-zero; the message carries its log's tail."""


@dataclass
class PackageRun:
    """One run of a package: where its object store and steps live, and what they recorded."""

    workdir: Path
    pipeline_root: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    outputs: dict[str, dict[str, dict]] = field(default_factory=dict)  # task → key → artifact
    logs: dict[str, str] = field(default_factory=dict)
    not_uploaded: list[str] = field(default_factory=list)  # "task.key" with unmapped URIs
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))  # MLMD ids

    @property
    def store(self) -> Path:
        """The object store: `minio://b/k` is `store/minio/b/k`."""
        return self.workdir / "store"

    def run(self, package: Path, arguments: dict | None = None) -> None:
        """Run every task of the package at `package` in dependency order."""
        pipeline_spec = next(yaml.safe_load_all(package.read_text()))
        root_parameters = pipeline_spec["root"].get("inputDefinitions", {}).get("parameters", {})
        run_parameters = {k: v.get("defaultValue") for k, v in root_parameters.items()}
        run_parameters.update(arguments or {})
        tasks = pipeline_spec["root"]["dag"]["tasks"]
        # Tasks whose dependencies are done run at once, as Argo runs them.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for wave in _waves(tasks):
                runs = [
                    pool.submit(self._run_task, pipeline_spec, name, tasks[name], run_parameters)
                    for name in wave
                ]
                for run in runs:
                    run.result()  # the first failure stops the run after its wave

    def _run_task(self, pipeline_spec: dict, name: str, task: dict, run_parameters: dict) -> None:
        if "triggerPolicy" in task:
            raise NotImplementedError(f"task {name}: trigger policies are not reproduced")
        component = pipeline_spec["components"][task["componentRef"]["name"]]
        executor = pipeline_spec["deploymentSpec"]["executors"][component["executorLabel"]]
        container = executor["container"]  # importers/resolvers: not in our packages
        pod = self.workdir / "pods" / name
        executor_input = {
            "inputs": {
                "parameterValues": self._parameters(task, run_parameters),
                "artifacts": self._input_artifacts(name, task),
            },
            "outputs": {
                "artifacts": self._output_artifacts(pipeline_spec, name, component),
                "outputFile": str(pod / "tmp" / "kfp_outputs" / "output_metadata.json"),
            },
        }
        if component.get("outputDefinitions", {}).get("parameters"):
            raise NotImplementedError(f"task {name}: output parameters are not reproduced")
        for artifact in _artifacts(executor_input["inputs"]["artifacts"]):
            self._download(artifact["uri"], pod)
        for artifact in _artifacts(executor_input["outputs"]["artifacts"]):
            Path(local_path(artifact["uri"], str(pod))).parent.mkdir(parents=True, exist_ok=True)

        invocation = json.dumps(executor_input)
        command = [
            part.replace("{{$}}", invocation) for part in container["command"] + container["args"]
        ]
        env = user_env()
        env[LOCAL_ROOT_ENV] = str(pod)
        # The image's `python` is its venv's; here, the one running the tests.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        result = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200
        )
        log = result.stdout + result.stderr
        self.logs[name] = log
        logs_artifact = executor_input["outputs"]["artifacts"][EXECUTOR_LOGS]["artifacts"][0]
        logs_path = Path(local_path(logs_artifact["uri"], str(pod)))
        logs_path.write_text(log)
        self._upload(logs_artifact["uri"], pod)
        if result.returncode != 0:
            raise StepFailed(f"task {name} exited {result.returncode}:\n{log[-4000:]}")
        self.outputs[name] = self._record_outputs(name, executor_input, pod)

    def _parameters(self, task: dict, run_parameters: dict) -> dict:
        values = {}
        for key, source in task.get("inputs", {}).get("parameters", {}).items():
            if "runtimeValue" in source:
                values[key] = source["runtimeValue"]["constant"]
            elif "componentInputParameter" in source:
                values[key] = run_parameters[source["componentInputParameter"]]
            else:
                raise NotImplementedError(f"parameter {key}: {source}")
        return values

    def _input_artifacts(self, name: str, task: dict) -> dict:
        artifacts = {}
        for key, source in task.get("inputs", {}).get("artifacts", {}).items():
            producer = source["taskOutputArtifact"]
            recorded = self.outputs[producer["producerTask"]][producer["outputArtifactKey"]]
            # What the driver reads back from MLMD: no type (metadata/client.go: Schema "").
            artifacts[key] = {"artifacts": [{**recorded, "type": {"instanceSchema": ""}}]}
        return artifacts

    def _output_artifacts(self, pipeline_spec: dict, task_name: str, component: dict) -> dict:
        definitions = component.get("outputDefinitions", {}).get("artifacts", {})
        pipeline_name = pipeline_spec["pipelineInfo"]["name"]
        task_root = f"{self.pipeline_root}/{pipeline_name}/{self.run_id}/{task_name}"
        outputs = {}
        for key, definition in {**definitions, EXECUTOR_LOGS: None}.items():
            artifact_type = definition["artifactType"] if definition else _SYSTEM_ARTIFACT
            uri = f"{task_root}/{uuid.uuid4()}/{key}"
            outputs[key] = {"artifacts": [{"type": artifact_type, "uri": uri, "metadata": {}}]}
        return outputs

    def _record_outputs(self, task: str, executor_input: dict, pod: Path) -> dict[str, dict]:
        output_file = Path(executor_input["outputs"]["outputFile"])
        reported = json.loads(output_file.read_text()) if output_file.exists() else {}
        recorded = {}
        for key, artifact_list in executor_input["outputs"]["artifacts"].items():
            if key == EXECUTOR_LOGS:
                continue
            artifact = dict(artifact_list["artifacts"][0])
            merged = reported.get("artifacts", {}).get(key, {}).get("artifacts", [{}])[0]
            if merged.get("uri"):
                artifact["uri"] = merged["uri"]
            artifact["metadata"] = {**artifact["metadata"], **merged.get("metadata", {})}
            if local_path(artifact["uri"], str(pod)) == artifact["uri"]:
                self.not_uploaded.append(f"{task}.{key}")  # the launcher skips unmapped URIs
            else:
                self._upload(artifact["uri"], pod)
            artifact["name"] = str(next(self._ids))
            recorded[key] = artifact
        return recorded

    def _download(self, uri: str, pod: Path) -> None:
        if local_path(uri, str(pod)) == uri:
            return  # the launcher skips an input whose URI it cannot map
        source = Path(local_path(uri, str(self.store)))
        _copy_files(source, Path(local_path(uri, str(pod))))

    def _upload(self, uri: str, pod: Path) -> None:
        _copy_files(Path(local_path(uri, str(pod))), Path(local_path(uri, str(self.store))))


def _artifacts(artifact_lists: dict) -> list[dict]:
    return [a for artifact_list in artifact_lists.values() for a in artifact_list["artifacts"]]


def _copy_files(source: Path, target: Path) -> None:
    """Copy the files at or under `source` to `target`, as an object store holds them: folders
    exist only as the prefix of a file, so an empty one is not copied."""
    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return
    if not source.is_dir():
        return  # nothing there: the launcher logs it and records an empty artifact
    for path in source.rglob("*"):
        if path.is_file():
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)


def _waves(tasks: dict) -> list[list[str]]:
    """The tasks in waves: each wave's dependencies are all in earlier waves."""
    done: set[str] = set()
    waves = []
    pending = dict(tasks)
    while pending:
        ready = sorted(
            name
            for name, task in pending.items()
            if all(dep in done for dep in task.get("dependentTasks", []))
        )
        if not ready:
            raise ValueError(f"the DAG has a cycle or a missing task among {sorted(pending)}")
        waves.append(ready)
        done.update(ready)
        for name in ready:
            del pending[name]
    return waves
