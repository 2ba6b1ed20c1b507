"""absl::SimpleAtoi, the text-to-integer rule TF Serving applies to version folder names
and to `--grpc_channel_arguments` values."""

import re

# absl strips ASCII whitespace around the number and takes one optional sign; nothing else
# (no underscores, no base prefix, no other Unicode digits, which Python's int() accepts).
_DECIMAL = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)[ \t\n\v\f\r]*")


def simple_atoi(text: str, bits: int) -> int | None:
    """`text` as the signed `bits`-wide integer absl::SimpleAtoi reads from it, or None
    where SimpleAtoi fails: not a decimal number, or out of the type's range."""
    match = _DECIMAL.fullmatch(text)
    if match is None:
        return None
    value = int(match.group(1))
    bound = 1 << (bits - 1)
    return value if -bound <= value < bound else None
