"""pipelines/kfp_entrypoint.py: what the open-source launcher hands a step, as TFX takes it."""

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from tfsp.pipelines.kfp_entrypoint import local_path, localize, restore_remote_uris

MODEL_TYPE = {"instanceSchema": "title: tfx.Model\ntype: object\n"}


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("gs://bucket/a/b", "/gcs/bucket/a/b"),
        ("minio://mlpipeline/v2/artifacts/x", "/minio/mlpipeline/v2/artifacts/x"),
        ("s3://bucket/k", "/s3/bucket/k"),
        ("/tfsp/pipelines/x", "/tfsp/pipelines/x"),  # a local path stays as it is
    ],
)
def test_local_path_is_the_launchers(uri, expected):
    assert local_path(uri) == expected


def test_local_path_under_another_root():
    assert local_path("minio://b/k", "/tmp/pod") == "/tmp/pod/minio/b/k"


def _executor_input(input_type: dict) -> pipeline_spec_pb2.ExecutorInput:
    return json_format.ParseDict(
        {
            "inputs": {
                "artifacts": {
                    "model": {
                        "artifacts": [
                            {
                                "name": "12",
                                "type": input_type,
                                "uri": "minio://b/run/Trainer/1/model",
                            }
                        ]
                    }
                }
            },
            "outputs": {
                "artifacts": {
                    "evaluation": {
                        "artifacts": [
                            {
                                "type": {"instanceSchema": "title: tfx.ModelEvaluation\n"},
                                "uri": "minio://b/run/Evaluator/2/evaluation",
                            }
                        ]
                    },
                    "executor-logs": {
                        "artifacts": [
                            {
                                "type": {"schemaTitle": "system.Artifact"},
                                "uri": "minio://b/run/Evaluator/3/executor-logs",
                            }
                        ]
                    },
                },
                "outputFile": "/tmp/kfp_outputs/output_metadata.json",
            },
        },
        pipeline_spec_pb2.ExecutorInput(),
    )


def _inputs_spec() -> pipeline_spec_pb2.ComponentInputsSpec:
    return json_format.ParseDict(
        {"artifacts": {"model": {"artifactType": MODEL_TYPE}}},
        pipeline_spec_pb2.ComponentInputsSpec(),
    )


def test_localize_types_inputs_drops_system_outputs_and_uses_local_paths():
    executor_input = _executor_input({"instanceSchema": ""})  # as metadata/client.go sends it
    remote_of_local = localize(executor_input, _inputs_spec(), "/pod")
    (model,) = executor_input.inputs.artifacts["model"].artifacts
    assert model.type.instance_schema == MODEL_TYPE["instanceSchema"]
    assert model.uri == "/pod/minio/b/run/Trainer/1/model"
    assert model.name == "12"
    assert set(executor_input.outputs.artifacts) == {"evaluation"}
    (evaluation,) = executor_input.outputs.artifacts["evaluation"].artifacts
    assert evaluation.uri == "/pod/minio/b/run/Evaluator/2/evaluation"
    assert remote_of_local == {evaluation.uri: "minio://b/run/Evaluator/2/evaluation"}


def test_localize_keeps_a_type_the_input_has():
    executor_input = _executor_input({"schemaTitle": "tfx.Model"})
    localize(executor_input, pipeline_spec_pb2.ComponentInputsSpec(), "/")
    (model,) = executor_input.inputs.artifacts["model"].artifacts
    assert model.type.schema_title == "tfx.Model"


def test_localize_refuses_an_untyped_input_its_spec_does_not_declare():
    executor_input = _executor_input({"instanceSchema": ""})
    with pytest.raises(ValueError, match="input artifact 'model' has no type"):
        localize(executor_input, pipeline_spec_pb2.ComponentInputsSpec(), "/")


def test_restore_remote_uris_names_the_remote_uri_of_reported_outputs():
    output = json_format.ParseDict(
        {
            "artifacts": {
                "evaluation": {"artifacts": [{"uri": "/pod/minio/b/e", "metadata": {"k": 1}}]},
                "other": {"artifacts": [{"uri": "gs://elsewhere/x"}]},
            }
        },
        pipeline_spec_pb2.ExecutorOutput(),
    )
    restore_remote_uris(output, {"/pod/minio/b/e": "minio://b/e"})
    assert output.artifacts["evaluation"].artifacts[0].uri == "minio://b/e"
    assert output.artifacts["evaluation"].artifacts[0].metadata["k"] == 1
    assert output.artifacts["other"].artifacts[0].uri == "gs://elsewhere/x"
