"""The contract between the pipelines and the trainers: what one hands the other.

The pipeline's HyperparametersGen writes `Hyperparameters` as a HyperParameters artifact;
the Trainer reads them back. A Trainer that trains a reference model (the other side of a
family's claim) exports it under REFERENCE_MODEL_DIR of its model_run, where the pipeline's
ReferenceModelGen finds it.
"""

import json
from dataclasses import asdict, dataclass, fields

HYPERPARAMETERS_FILE = "hyperparameters.json"
# Where a Trainer that trains a reference model (the other side of a family's claim) exports
# it, under its model_run directory; ReferenceModelGen publishes it as a Model artifact.
REFERENCE_MODEL_DIR = "reference"


@dataclass(frozen=True)
class Hyperparameters:
    """Training knobs carried from the pipeline to the trainer as a HyperParameters artifact."""

    epochs: int
    learning_rate: float
    batch_size: int

    def to_json(self) -> str:
        """Serialise for the HyperParameters artifact."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict | None) -> "Hyperparameters":
        """Read back what HyperparametersGen wrote; every field must be present."""
        missing = [f.name for f in fields(cls) if f.name not in (values or {})]
        if missing:
            raise ValueError(f"hyper-parameters artifact lacks {missing}; got {values}")
        return cls(**{f.name: values[f.name] for f in fields(cls)})
