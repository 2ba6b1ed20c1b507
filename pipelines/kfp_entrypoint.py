"""The container command of every step on the open-source Kubeflow Pipelines backend.

TFX's v2 entrypoint (kubeflow_v2_run_executor) is written for Vertex AI Pipelines. What the
open-source launcher (backend/src/v2/component/launcher_v2.go) hands a step differs, and the
entrypoint fails on each difference before any work is done:

- input artifacts arrive with an empty type (`instanceSchema: ""`): the type is taken back
  from the step's own inputs spec, which the compiled command carries;
- every step has an extra `executor-logs` output of type `system.Artifact`, which the
  launcher itself writes: it is left out of what the TFX executor sees;
- artifact URIs are remote (`minio://`, `s3://`, `gs://`) and the launcher downloads inputs
  to, and uploads outputs from, a local path (`gs://b/k` → `/gcs/b/k`, `minio://` →
  `/minio/`, `s3://` → `/s3/`). TFX's executors read and write `artifact.uri` with
  tf.io.gfile, which has no minio:// or s3:// scheme here, so they get the local paths,
  with the output folders created; the ExecutorOutput written back names the remote URIs,
  because the launcher records and uploads whatever URI that file names.

Everything else is TFX's own entrypoint, unchanged: its flag parser and `_run_executor`
(private names of the pinned TFX; tests/test_kfp_package_e2e.py runs every step through
them, so a TFX upgrade that moves them fails there, not in a cluster).
"""

import argparse
import os
from collections.abc import Iterator, Mapping

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

# The local folder the launcher's paths are under: "/" in a pod. A test that plays the
# launcher on one machine points it elsewhere.
LOCAL_ROOT_ENV = "TFSP_KFP_LOCAL_ROOT"
# launcher_v2.go LocalPathForURI: remote scheme → local top folder.
_LOCAL_FOLDER_OF_SCHEME = {"gs://": "gcs", "minio://": "minio", "s3://": "s3"}
# Types the KFP system owns (the launcher's executor-logs); no TFX executor declares them.
_SYSTEM_TYPE_PREFIX = "system."


def local_path(uri: str, local_root: str = "/") -> str:
    """Where the launcher puts the artifact at `uri`; a URI it does not map is returned as is."""
    for scheme, folder in _LOCAL_FOLDER_OF_SCHEME.items():
        if uri.startswith(scheme):
            return os.path.join(local_root, folder, uri[len(scheme) :])
    return uri


def _runtime_artifacts(
    artifact_lists: Mapping[str, pipeline_spec_pb2.ArtifactList],
) -> Iterator[tuple[str, pipeline_spec_pb2.RuntimeArtifact]]:
    for key, artifact_list in artifact_lists.items():
        for artifact in artifact_list.artifacts:
            yield key, artifact


def _is_untyped(schema: pipeline_spec_pb2.ArtifactTypeSchema) -> bool:
    kind = schema.WhichOneof("kind")
    return kind is None or not getattr(schema, kind)


def _is_system_type(schema: pipeline_spec_pb2.ArtifactTypeSchema) -> bool:
    return schema.schema_title.startswith(_SYSTEM_TYPE_PREFIX)


def localize(
    executor_input: pipeline_spec_pb2.ExecutorInput,
    inputs_spec: pipeline_spec_pb2.ComponentInputsSpec,
    local_root: str = "/",
) -> dict[str, str]:
    """Turn `executor_input`, as the launcher gives it, into what TFX's entrypoint runs on.

    In place: input types from `inputs_spec`, system-typed outputs dropped, URIs replaced by
    the launcher's local paths. Returns {local path: remote URI} of the outputs, to name the
    remote URIs again in the ExecutorOutput.
    """
    for key, artifact in _runtime_artifacts(executor_input.inputs.artifacts):
        if _is_untyped(artifact.type):
            if key not in inputs_spec.artifacts:
                raise ValueError(
                    f"input artifact {key!r} has no type and the step's inputs spec does not "
                    "declare it"
                )
            artifact.type.CopyFrom(inputs_spec.artifacts[key].artifact_type)
        artifact.uri = local_path(artifact.uri, local_root)

    outputs = executor_input.outputs.artifacts
    for key in [k for k, v in outputs.items() if any(_is_system_type(a.type) for a in v.artifacts)]:
        del outputs[key]
    remote_of_local = {}
    for _, artifact in _runtime_artifacts(outputs):
        path = local_path(artifact.uri, local_root)
        remote_of_local[path] = artifact.uri
        artifact.uri = path
    return remote_of_local


def make_output_folders(executor_input: pipeline_spec_pb2.ExecutorInput) -> None:
    """Create each output artifact's folder (a value artifact's parent), as TFX's launcher does:
    the KFP launcher creates only the parents."""
    # TFX is imported where it is used: it loads TensorFlow, which the URI and type
    # translation above does not need.
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
    from tfx.orchestration.portable import outputs_utils

    outputs = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(executor_input.outputs.artifacts)
    outputs_utils.make_output_dirs(outputs)


def restore_remote_uris(
    executor_output: pipeline_spec_pb2.ExecutorOutput, remote_of_local: dict[str, str]
) -> None:
    """Name the remote URI, in place, of every output artifact TFX reported by local path."""
    for _, artifact in _runtime_artifacts(executor_output.artifacts):
        artifact.uri = remote_of_local.get(artifact.uri, artifact.uri)


def run_step(args: argparse.Namespace, beam_args: list[str]) -> None:
    """Run TFX's v2 entrypoint on its parsed flags as the open-source launcher calls it."""
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

    executor_input = json_format.Parse(
        args.json_serialized_invocation_args,
        pipeline_spec_pb2.ExecutorInput(),
        ignore_unknown_fields=True,
    )
    inputs_spec = pipeline_spec_pb2.ComponentInputsSpec()
    if args.json_serialized_inputs_spec_args:
        json_format.Parse(args.json_serialized_inputs_spec_args, inputs_spec)
    remote_of_local = localize(executor_input, inputs_spec, os.environ.get(LOCAL_ROOT_ENV, "/"))
    make_output_folders(executor_input)
    args.json_serialized_invocation_args = json_format.MessageToJson(executor_input)

    kubeflow_v2_run_executor._run_executor(args, beam_args)

    output_file = executor_input.outputs.output_file
    with open(output_file) as f:
        executor_output = json_format.Parse(
            f.read(), pipeline_spec_pb2.ExecutorOutput(), ignore_unknown_fields=True
        )
    restore_remote_uris(executor_output, remote_of_local)
    with open(output_file, "w") as f:
        f.write(json_format.MessageToJson(executor_output))


def main() -> None:
    """The step's process: TFX's flags and logging set-up, then run_step."""
    from absl import app
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

    app.run(lambda parsed: run_step(*parsed), flags_parser=kubeflow_v2_run_executor._parse_flags)


if __name__ == "__main__":
    main()
