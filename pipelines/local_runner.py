"""Run a family's pipeline on this machine: LocalDagRunner, SQLite ML Metadata, Beam in-process.

Paths come from `pipelines.layout.LocalLayout`.
"""

from pathlib import Path

from tfx import v1 as tfx

from pipelines.components import DataAnomaliesError
from pipelines.factory import PipelineSpec, create_pipeline
from pipelines.families import get_family
from pipelines.layout import LocalLayout, check_data_dir, pipeline_name
from pipelines.results import RunResult, read_run_result
from tfsp.errors import UserError

# In-process Beam: these data sets are small, and worker processes would only add start-up.
DEFAULT_BEAM_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def run_local(
    family: str,
    layout: LocalLayout,
    *,
    data_dir: Path | None = None,
    epochs: int | None = None,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    gate_lower_bound: float | None = None,
    custom_config: dict | None = None,
    enable_cache: bool = True,
) -> RunResult:
    """Run `family`'s pipeline to completion and return what the gate decided."""
    spec_family = get_family(family)
    data_dir = (data_dir or layout.data_dir).resolve()
    check_data_dir(data_dir)
    name = pipeline_name(family)
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(layout.metadata_path)
    )
    layout.home.mkdir(parents=True, exist_ok=True)
    spec = PipelineSpec(
        family=spec_family,
        pipeline_name=name,
        pipeline_root=str(layout.pipeline_root(name)),
        data_root=str(data_dir),
        serving_root=str(layout.serving_root),
        epochs=spec_family.default_epochs if epochs is None else epochs,
        learning_rate=(
            spec_family.default_learning_rate if learning_rate is None else learning_rate
        ),
        batch_size=spec_family.default_batch_size if batch_size is None else batch_size,
        gate_lower_bound=gate_lower_bound,
        custom_config=custom_config or {},
        metadata_connection_config=connection,
        beam_pipeline_args=DEFAULT_BEAM_ARGS,
        enable_cache=enable_cache,
    )
    try:
        tfx.orchestration.LocalDagRunner().run(create_pipeline(spec))
    except DataAnomaliesError as exc:
        raise UserError(f"run stopped before training: {exc}") from exc
    return read_run_result(connection, name)
