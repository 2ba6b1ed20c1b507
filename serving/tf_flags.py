"""TensorFlow's flag syntax, as tensorflow_model_server reads its command line
(tsl/util/command_line_flags.cc): argparse `type=` converters for each flag type, and the
check that every value comes as `--flag=value`.

TensorFlow's parser reads a value only after `=`: `--port 9000` leaves --port unset and
makes `9000` an unknown argument, which TF Serving prints and then ignores. argparse would
take the same words as --port=9000, so a manifest that works here would serve on another
port there; and `--enable_batching false` is batching *on* there (a bool flag alone is
true). Both are refused here, as are values TensorFlow's parser refuses.
"""

import argparse
import re
from collections.abc import Callable, Iterable, Sequence

from tfsp.core import argtypes

# sscanf("%d%c") accepts C whitespace before the number, one sign and digits, and nothing
# after them: not "9000 ", "1_000" or "0x10", which int() takes or reads differently.
_SCANF_INTEGER = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")
_C_SPACE = " \t\n\v\f\r"


def integer(
    bits: int, minimum: int | None = None, convert: Callable[[str], int] | None = None
) -> Callable[[str], int]:
    """A converter for an int32 or int64 flag: TensorFlow's syntax, then `convert` if given,
    else the type's range (where TensorFlow's sscanf would overflow) and `minimum`."""
    bound = 1 << (bits - 1)
    convert = convert or argtypes.whole_number(-bound if minimum is None else minimum, bound - 1)

    def parse(text: str) -> int:
        if not _SCANF_INTEGER.fullmatch(text):
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
        return convert(text)

    return parse


def floating(text: str) -> float:
    """A float flag's value as sscanf("%f%c") reads it: C whitespace before a number in
    strtod's syntax (hexadecimal, inf and nan included), nothing after it."""
    number = text.lstrip(_C_SPACE)
    refused = argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    if not number or "_" in number or number[-1] in _C_SPACE:
        raise refused  # float() takes digit separators and trailing spaces; strtod does not
    try:
        return float(number)
    except ValueError:
        pass
    try:
        return float.fromhex(number)
    except ValueError:
        raise refused from None


def boolean(text: str) -> bool:
    """A bool flag's value after `=`: true or false in any case, 1 or 0; nothing else."""
    if text.lower() == "true" or text == "1":
        return True
    if text.lower() == "false" or text == "0":
        return False
    raise argparse.ArgumentTypeError(f"expected true, false, 1 or 0, got {text!r}")


def separate_value_error(
    argv: Sequence[str], value_flags: Iterable[str], bool_flags: Iterable[str]
) -> str | None:
    """Why `argv` is not in TensorFlow's `--flag=value` form, or None if it is: a value
    flag written without `=` (its value would be the next word), or a bool flag followed by
    a word that argparse would take as its value."""
    value_flags = {f"--{name}" for name in value_flags}
    bool_flags = {f"--{name}" for name in bool_flags}
    for index, word in enumerate(argv):
        if word == "--":
            return None  # the rest are arguments, which the parser refuses as unknown
        following = argv[index + 1] if index + 1 < len(argv) else None
        if word in value_flags:
            return (
                f"{word} takes its value as {word}=VALUE: TensorFlow's flag parser reads no "
                f"other form (there, a separate value leaves {word} unset)"
            )
        if word in bool_flags and following is not None and not following.startswith("-"):
            try:
                boolean(following)
                fix = f"{word}={following}"
            except argparse.ArgumentTypeError:
                fix = f"{word}=true or {word}=false"
            return (
                f"'{word} {following}': TensorFlow's flag parser reads {word} alone as true "
                f"and {following!r} as an unknown argument; write {fix}"
            )
    return None


# What --help prints for the usage line: the flags are listed below it, each in this form.
USAGE = "%(prog)s [--flag=value ...]"


class FlagHelpFormatter(argparse.HelpFormatter):
    """--help in TensorFlow's flag syntax: `--port=int32`, `--enable_batching[=true|false]`
    (argparse would print `--port PORT`, a form TensorFlow's parser does not read)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        flag = action.option_strings[-1]
        if action.nargs == "?":
            return f"{flag}[=true|false]"
        return f"{flag}={action.metavar}"
