"""argparse `type=` converters shared by every command (tfsp and tfsp-model-server).

Each turns one flag's text into a value or raises ArgumentTypeError with a one-line reason,
which argparse prefixes with the flag's name.
"""

import argparse
import math
from collections.abc import Callable


def whole_number(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """A converter to int, refusing values outside [minimum, maximum] (either may be open)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value

    return parse


def number(minimum: float = float("-inf"), *, above: bool = False) -> Callable[[str], float]:
    """A converter to float: at least `minimum`, or strictly above it with `above=True`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if math.isinf(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if value != value or (value <= minimum if above else value < minimum):
            bound = "greater than" if above else "at least"
            raise argparse.ArgumentTypeError(f"must be {bound} {minimum:g}, got {value:g}")
        return value

    return parse


positive_int = whole_number(1)
non_negative_int = whole_number(0)
positive_float = number(0.0, above=True)
non_negative_float = number(0.0)


def port(text: str) -> int:
    """A TCP port number, 0 (off, or any free port where the flag says so) to 65535."""
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (0-65535), got {value}")
    return value


def container_image(text: str) -> str:
    """A container image reference: not empty, no whitespace. An empty one would be taken
    for "none given", and TFX's runners then fall back to their own default image."""
    if not text or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"must be a container image reference, got {text!r}")
    return text


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    value = non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value:g}")
    return value


def fractions(text: str) -> tuple[float, float, float]:
    """Three comma-separated fractions (train,eval,test)."""
    parts = text.split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected train,eval,test fractions, got {text!r}")
    values = fraction(parts[0]), fraction(parts[1]), fraction(parts[2])
    if min(values) == 0:
        raise argparse.ArgumentTypeError(f"every split needs a share above 0, got {text!r}")
    if abs(sum(values) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(f"the shares must sum to 1, got {text!r}")
    return values
