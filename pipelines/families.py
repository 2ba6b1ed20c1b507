"""The model families the pipelines know: one entry each, the single source of truth."""

from dataclasses import dataclass, field

from tfsp.errors import UserError


@dataclass(frozen=True)
class Family:
    """What the pipeline factory needs to know about one model family."""

    name: str
    run_fn: str  # dotted path of the Trainer entry point
    preprocessing_fn: str  # dotted path of the Transform function
    gate_metric: str  # a Keras metric class name TFMA computes on the eval split
    gate_lower_bound: float  # absolute bound the candidate must reach to be blessed
    default_epochs: int
    default_learning_rate: float
    default_batch_size: int
    custom_config: dict = field(default_factory=dict)
    # The model names this family pushes under the serving root (and that servers serve);
    # most push one model named after the family.
    servables: tuple[str, ...] = ()

    def served_models(self) -> tuple[str, ...]:
        """Names of the servables this family pushes: `servables`, or just the family name."""
        return self.servables or (self.name,)


FAMILIES: dict[str, Family] = {
    "cnn": Family(
        name="cnn",
        run_fn="trainers.cnn.run_fn",
        preprocessing_fn="trainers.preprocessing.preprocessing_fn",
        gate_metric="SparseCategoricalAccuracy",
        gate_lower_bound=0.97,
        default_epochs=30,
        default_learning_rate=2e-3,
        default_batch_size=32,
    ),
}


def get_family(name: str) -> Family:
    """The registered family called `name`, or a UserError listing the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise UserError(f"unknown family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None


def served_model_names() -> list[str]:
    """Every model name any family pushes, in registry order (what models.config lists)."""
    return [model for family in FAMILIES.values() for model in family.served_models()]
