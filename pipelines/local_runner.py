"""Run a family's pipeline on this machine: LocalDagRunner, SQLite ML Metadata, Beam in-process.

Paths come from `tfsp.pipelines.layout.LocalLayout`.
"""

from collections.abc import Sequence
from pathlib import Path

from tfx import v1 as tfx

from tfsp.core.beam_defaults import IN_PROCESS_BEAM_ARGS
from tfsp.core.errors import UserError
from tfsp.core.family import Family
from tfsp.pipelines.components import DataAnomaliesError
from tfsp.pipelines.factory import PipelineSpec, create_pipeline
from tfsp.pipelines.layout import LocalLayout, check_data_dir, pipeline_name
from tfsp.pipelines.results import RunResult, read_run_result


def run_local(
    family: Family,
    layout: LocalLayout,
    *,
    data_dir: Path | None = None,
    epochs: int | None = None,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    gate_lower_bound: float | None = None,
    custom_config: dict | None = None,
    enable_cache: bool = True,
    beam_args: Sequence[str] = IN_PROCESS_BEAM_ARGS,
) -> RunResult:
    """Run `family`'s pipeline to completion and return what the gate decided.

    Training values not given are the family's; the versions the run reads from the model
    store are pinned when it starts. `beam_args` are the Beam pipeline options of its Beam
    steps (default: in this process).
    """
    data_dir = (data_dir or layout.data_dir).resolve()
    check_data_dir(data_dir)
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(layout.metadata_path)
    )
    layout.home.mkdir(parents=True, exist_ok=True)
    spec = PipelineSpec.for_family(
        family,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        pin_versions=True,
        pipeline_root=str(layout.pipeline_root(pipeline_name(family.name))),
        data_root=str(data_dir),
        serving_root=str(layout.serving_root),
        gate_lower_bound=gate_lower_bound,
        custom_config=dict(custom_config or {}),
        metadata_connection_config=connection,
        beam_pipeline_args=list(beam_args),
        enable_cache=enable_cache,
    )
    try:
        tfx.orchestration.LocalDagRunner().run(create_pipeline(spec))
    except DataAnomaliesError as exc:
        raise UserError(f"run stopped before training: {exc}") from exc
    return read_run_result(connection, spec.pipeline_name, family)
