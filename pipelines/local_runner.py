"""Run a family's pipeline on this machine: LocalDagRunner, SQLite ML Metadata, Beam in-process.

Paths come from `tfsp.pipelines.layout.LocalLayout`.
"""

from collections.abc import Sequence
from pathlib import Path

from tfx import v1 as tfx

from tfsp.beam_defaults import IN_PROCESS_BEAM_ARGS
from tfsp.errors import UserError
from tfsp.family import Family
from tfsp.pipelines.components import DataAnomaliesError
from tfsp.pipelines.factory import PipelineSpec, create_pipeline
from tfsp.pipelines.layout import LocalLayout, check_data_dir, pipeline_name
from tfsp.pipelines.model_store import latest_pushed_version, pushed_model
from tfsp.pipelines.results import RunResult, read_run_result
from tfsp.trainers.registry import get_family


def pinned_versions(family: Family, serving_root: Path) -> dict[str, str]:
    """The model store versions `family`'s pipeline reads: the latest of the family itself
    (its baseline, if it has pushed any) and of every family it builds on (UserError if one
    has none).

    Pinning them when the run starts (rather than letting the components look) makes a newly
    pushed model invalidate the cached baseline and Trainer, and a missing base fail before
    any component runs.
    """
    versions = {}
    own = latest_pushed_version(str(serving_root / family.name))
    if family.baseline == "last_blessed" and own is not None:
        versions[family.name] = own
    for base in family.depends_on:
        versions[base], _ = pushed_model(str(serving_root), base)
    return versions


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
    beam_args: Sequence[str] = IN_PROCESS_BEAM_ARGS,
) -> RunResult:
    """Run `family`'s pipeline to completion and return what the gate decided.

    `beam_args` are the Beam pipeline options of its Beam steps (default: in this process).
    """
    spec_family = get_family(family)
    data_dir = (data_dir or layout.data_dir).resolve()
    check_data_dir(data_dir)
    name = pipeline_name(family)
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(layout.metadata_path)
    )
    layout.home.mkdir(parents=True, exist_ok=True)
    custom_config = dict(custom_config or {})
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
        custom_config=custom_config,
        metadata_connection_config=connection,
        beam_pipeline_args=list(beam_args),
        enable_cache=enable_cache,
        pinned_versions=pinned_versions(spec_family, layout.serving_root),
    )
    try:
        tfx.orchestration.LocalDagRunner().run(create_pipeline(spec))
    except DataAnomaliesError as exc:
        raise UserError(f"run stopped before training: {exc}") from exc
    return read_run_result(connection, name, spec_family)
