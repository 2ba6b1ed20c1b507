"""Where a local installation keeps things, and the names runs share. No heavy imports here,
so the CLI can check paths and names before TensorFlow loads.

Everything lives under one home folder (``--home`` or ``$TFSP_HOME``, default ``./.tfsp``):
    data/digits/          prepared TFRecords (tfsp data prepare)
    pipelines/<name>/     pipeline root: every component's artifacts
    metadata.sqlite       ML Metadata for all families (lineage, caching)
    serving/<family>/<v>/ pushed SavedModels, the layout TF Serving reads
"""

import os
from dataclasses import dataclass
from pathlib import Path

from tfsp.core.errors import UserError
from tfsp.core.features import SPLITS


@dataclass(frozen=True)
class LocalLayout:
    """Where a local installation keeps its data, artifacts, metadata and models."""

    home: Path

    @classmethod
    def from_env(cls, home: str | None = None) -> "LocalLayout":
        """`home`, else $TFSP_HOME, else ./.tfsp (absolute, so runs can change directory)."""
        return cls(Path(home or os.environ.get("TFSP_HOME") or ".tfsp").resolve())

    @property
    def data_dir(self) -> Path:
        return self.home / "data" / "digits"

    @property
    def metadata_path(self) -> Path:
        return self.home / "metadata.sqlite"

    @property
    def serving_root(self) -> Path:
        return self.home / "serving"

    def pipeline_root(self, pipeline_name: str) -> Path:
        return self.home / "pipelines" / pipeline_name


def pipeline_name(family: str) -> str:
    """The pipeline (and ML Metadata context) name of a family."""
    return f"tfsp-{family}"


def check_data_dir(data_dir: Path) -> None:
    """Fail early, in one line, unless `data_dir` holds the three prepared splits."""
    if not data_dir.is_dir():
        raise UserError(f"data folder {data_dir} does not exist; run 'tfsp data prepare' first")
    missing = [s for s in SPLITS if not any((data_dir / s).glob("*"))]
    if missing:
        raise UserError(f"data folder {data_dir} has no {'/'.join(missing)} split files")
