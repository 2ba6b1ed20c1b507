"""Every model family, one line each: the single list the pipelines, the CLI and the main job
read (no TensorFlow import; each line imports only the family's entry and options).

Adding a family: write trainers/<name>/family.py (its options and FAMILY) and model.py (its
`run_fn`), then add it to `_REGISTERED` (see the README's development section).
"""

from tfsp.core.errors import UserError
from tfsp.core.family import Family
from tfsp.trainers.autoencoder.family import FAMILY as AUTOENCODER
from tfsp.trainers.batchnorm.family import FAMILY as BATCHNORM
from tfsp.trainers.cnn.family import FAMILY as CNN
from tfsp.trainers.rnn.family import FAMILY as RNN
from tfsp.trainers.transfer.family import FAMILY as TRANSFER

_REGISTERED = (CNN, RNN, BATCHNORM, TRANSFER, AUTOENCODER)

FAMILIES: dict[str, Family] = {family.name: family for family in _REGISTERED}


def register(family: Family) -> None:
    """Add a family defined elsewhere (a plugin, a test); its name must be new."""
    if family.name in FAMILIES:
        raise ValueError(f"a family named {family.name!r} is already registered")
    FAMILIES[family.name] = family


def get_family(name: str) -> Family:
    """The registered family called `name`, or a UserError listing the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise UserError(f"unknown family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None


def served_model_names() -> list[str]:
    """Every model name any family pushes, in registry order (what models.config lists)."""
    return [model for family in FAMILIES.values() for model in family.served_models()]


def run_order(names: list[str] | None = None) -> list[str]:
    """`names` (default: every family) with each family after the families it depends on.

    Dependencies not in `names` are not added: running `transfer` alone uses whatever CNN
    is already pushed.
    """
    wanted = list(FAMILIES) if names is None else [get_family(n).name for n in names]
    ordered: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in ordered:
            return
        if name in path:
            raise ValueError(f"families depend on each other in a cycle: {path + (name,)}")
        for dependency in FAMILIES[name].depends_on:
            if dependency in wanted:
                visit(dependency, path + (name,))
        ordered.append(name)

    for name in wanted:
        visit(name, ())
    return ordered
