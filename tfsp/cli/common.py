"""What the command groups share: the parser class, how a command's handler is called, and
the flags several groups take (home, verbosity, Beam options, training and family flags).

A handler is a plain function with typed keyword parameters. `command(parser, handler,
**derived)` makes it a parser's command: the root calls it with the parsed flags its
parameters name, after computing each `derived` value from the parsed flags (e.g. the
training request, or the server's Options); no handler sees the argparse namespace.
"""

import argparse
import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tfsp.core import argtypes
from tfsp.core.errors import UsageError

if TYPE_CHECKING:  # the client module imports grpc
    from tfsp.serving.client import ServingClient

Handler = Callable[..., int]
Derive = Callable[[argparse.Namespace], object]


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (plus where to look), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def grpc_client(server: str | None, timeout: float) -> "ServingClient":
    """The gRPC client for `server` (else $TFSP_SERVER); a target gRPC would misread is a
    flag error."""
    from tfsp.serving.client import ServingClient

    try:
        return ServingClient(server, timeout=timeout)
    except ValueError as exc:
        raise UsageError(f"{'--server' if server else '$TFSP_SERVER'}: {exc}") from None


def command(parser: argparse.ArgumentParser, handler: Handler, **derived: Derive) -> None:
    """Make `handler` the command `parser` runs (see the module docstring)."""
    parser.set_defaults(_handler=handler, _derived=derived)


def invoke(args: argparse.Namespace) -> int:
    """Call the parsed command's handler with the values its parameters name."""
    values = {name: derive(args) for name, derive in args._derived.items()}
    parameters = inspect.signature(args._handler).parameters
    return args._handler(
        **{name: values[name] if name in values else getattr(args, name) for name in parameters}
    )


def from_flags(cls: type, args: argparse.Namespace, **computed: object) -> object:
    """A dataclass built from the parsed flags of the same names, and `computed` values for
    the fields no flag names directly."""
    return cls(
        **{
            field.name: computed[field.name]
            if field.name in computed
            else getattr(args, field.name)
            for field in dataclasses.fields(cls)
        }
    )


def beam_args(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The --beam-arg options given (None: none, Beam runs in this process)."""
    return tuple(args.beam_args) if args.beam_args else None


def add_home(parser: argparse.ArgumentParser) -> None:
    """--home: where data, artifacts, metadata and pushed models live."""
    parser.add_argument(
        "--home",
        help="folder for data, pipeline artifacts, metadata and pushed models "
        "(default: $TFSP_HOME, else ./.tfsp)",
    )


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """--verbose: framework logs and tracebacks."""
    parser.add_argument(
        "--verbose", action="store_true", help="show TFX/Beam logs and tracebacks on failure"
    )


def add_beam_flag(parser: argparse.ArgumentParser, help_text: str | None = None) -> None:
    """--beam-arg, repeatable (dest beam_args: None when not given)."""
    parser.add_argument(
        "--beam-arg",
        action="append",
        dest="beam_args",
        metavar="ARG",
        help=help_text
        or "Beam pipeline option for the Beam steps (StatisticsGen, Transform, Evaluator...), "
        "e.g. --beam-arg=--runner=DataflowRunner; repeatable, replaces the default (Beam's "
        "FnApiRunner in-process, no download)",
    )


def add_gate_flag(parser: argparse.ArgumentParser) -> None:
    """--min-accuracy: the Evaluator's floor for the classifier families."""
    parser.add_argument(
        "--min-accuracy",
        type=argtypes.fraction,
        help="the Evaluator's absolute floor on accuracy, for the classifier families "
        "(family default; the autoencoder's MSE gate keeps its own bounds)",
    )


def family_names() -> str:
    """The registered families, for help texts."""
    from tfsp.trainers.registry import FAMILIES

    return ", ".join(FAMILIES)


def add_family_flag(
    parser: argparse.ArgumentParser,
    help_text: str,
    *,
    all_too: bool = False,
    default: str | None = None,
) -> None:
    """`--family`: a registered family, or also 'all' where the command can run every one;
    required unless given a `default`. A typo is a flag error (exit 2) before anything loads."""
    from tfsp.trainers.registry import FAMILIES

    parser.add_argument(
        "--family",
        required=default is None,
        default=default,
        choices=[*FAMILIES, "all"] if all_too else list(FAMILIES),
        metavar="FAMILY",
        help=help_text,
    )


def add_family_flags(parser: argparse.ArgumentParser) -> None:
    """One group of flags per family, built from its options dataclass (trainers/registry.py).

    Every flag defaults to None (absent: the Trainer keeps the option's default), so only the
    options given reach the Trainer's custom_config; the same choices and bounds are checked
    again there (tfsp.core.family.options_from_config).
    """
    from tfsp.core.family import flag_fields, flag_name
    from tfsp.trainers.registry import FAMILIES

    for family in FAMILIES.values():
        if family.options is None:
            continue
        group = parser.add_argument_group(f"{family.title or family.name} (family {family.name})")
        for option in flag_fields(family.options):
            group.add_argument(
                flag_name(option),
                dest=option_dest(family.name, option.name),
                **_flag_kwargs(option),
            )


def option_dest(family: str, option: str) -> str:
    """The parsed-flags name of one family option."""
    return f"option__{family}__{option}"


def _flag_kwargs(option: dataclasses.Field) -> dict:
    """argparse keywords for one option: its type, choices and bounds, and its help text."""
    meta, default = option.metadata, option.default
    if isinstance(default, bool):
        return {"action": "store_const", "const": not default, "help": meta["help"]}
    kwargs: dict = {"help": f"{meta['help']} (default {default})"}
    if meta.get("choices") is not None:
        kwargs["choices"] = meta["choices"]
    if isinstance(default, int):
        kwargs["type"] = argtypes.whole_number(meta.get("minimum"), meta.get("maximum"))
        kwargs["metavar"] = "N"
    elif isinstance(default, float):
        kwargs["metavar"] = "X"
        minimum = meta.get("minimum")
        kwargs["type"] = argtypes.number(float("-inf") if minimum is None else minimum)
    return kwargs


def custom_config(args: argparse.Namespace) -> dict:
    """The Trainer's custom_config from the family flags given: {family: {option: value}}."""
    from tfsp.core.family import flag_fields
    from tfsp.trainers.registry import FAMILIES

    config = {}
    for family in FAMILIES.values():
        options = flag_fields(family.options) if family.options is not None else []
        values = {o.name: getattr(args, option_dest(family.name, o.name), None) for o in options}
        given = {name: value for name, value in values.items() if value is not None}
        if given:
            config[family.name] = given
    return config


def check_options_apply(config: dict, families: list[str]) -> None:
    """UsageError if `config` (custom_config's shape) sets an option of a family not among
    `families`: its Trainer never runs, so the flag would be silently ignored."""
    from tfsp.core.family import flag_fields, flag_name
    from tfsp.trainers.registry import FAMILIES

    for name, options in config.items():
        if name in families:
            continue
        flags = [flag_name(o) for o in flag_fields(FAMILIES[name].options) if o.name in options]
        raise UsageError(
            f"{', '.join(flags)} {'applies' if len(flags) == 1 else 'apply'} to family "
            f"{name}, which --family {', '.join(families)} does not train"
        )


@dataclass(frozen=True)
class TrainingRequest:
    """What the training flags ask of a run; None means the family's default."""

    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    gate_lower_bound: float | None = None
    custom_config: dict = dataclasses.field(default_factory=dict)
    enable_cache: bool = True
    beam_args: tuple[str, ...] | None = None  # None: Beam in this process


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of a local run: training values, the gate's floor, caching, Beam, and every
    family's options. The handler gets them as one `training: TrainingRequest`."""
    parser.add_argument(
        "--epochs", type=argtypes.positive_int, help="training epochs (family default)"
    )
    parser.add_argument(
        "--learning-rate", type=argtypes.positive_float, help="Adam learning rate (family default)"
    )
    parser.add_argument(
        "--batch-size", type=argtypes.positive_int, help="batch size (family default)"
    )
    add_gate_flag(parser)
    parser.add_argument(
        "--no-cache", action="store_true", help="re-run every component (caching is on)"
    )
    add_beam_flag(parser)
    add_family_flags(parser)


def training_request(args: argparse.Namespace) -> TrainingRequest:
    """The TrainingRequest of the flags `add_training_flags` added."""
    return from_flags(
        TrainingRequest,
        args,
        gate_lower_bound=args.min_accuracy,
        custom_config=custom_config(args),
        enable_cache=not args.no_cache,
        beam_args=beam_args(args),
    )
