"""JSON as TF Serving writes it: the values it puts in error messages, and its float numbers.

TF Serving's REST layer (tensorflow_serving/util/json_tensor.cc) quotes the offending JSON
in its error messages through `JsonValueToDebugString`: RapidJSON's PrettyWriter (4-space
indent, arrays on one line) that stops taking values once 256 bytes are written. It writes
float outputs through `WriteDecimal`: six significant digits when they read back as the same
float, else `max_digits10`. Both are rebuilt here from that source, so that our messages and
our numbers are TF Serving's.
"""

import math
from decimal import Decimal
from typing import Any

import numpy as np

DEBUG_LIMIT_BYTES = 256  # json_tensor.cc kMaxJsonDebugStringBytes
_INDENT = "    "
# RapidJSON's Writer escapes '"', '\\' and the control characters, with upper-case hex;
# everything else, UTF-8 included, is written as it is.
_ESCAPES = {i: f"\\u{i:04X}" for i in range(0x20)} | {
    0x08: "\\b",
    0x09: "\\t",
    0x0A: "\\n",
    0x0C: "\\f",
    0x0D: "\\r",
    0x22: '\\"',
    0x5C: "\\\\",
}


class _LimitReached(Exception):
    pass


def json_type(value: object) -> str:
    """RapidJSON's type name of a parsed JSON value, as json_tensor.cc JsonTypeString."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def rapidjson_double(value: float) -> str:
    """A double as RapidJSON's Writer::Double spells it (Grisu2 digits, then Prettify):
    `1.0`, `0.001234`, `1e21`, `1.5e-7`. The digits are Python's repr's, the shortest that
    read back; Grisu2's are too but for rare values, where one more digit may differ."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    all_digits = "".join(map(str, digit_tuple))
    digits = all_digits.rstrip("0")
    k = int(exponent) + len(all_digits) - len(digits)  # value = digits * 10**k
    point = len(digits) + k  # where the decimal point falls among the digits
    if 0 <= k and point <= 21:
        text = digits + "0" * k + ".0"
    elif 0 < point <= 21:
        text = f"{digits[:point]}.{digits[point:]}"
    elif -6 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        mantissa = digits if len(digits) == 1 else f"{digits[0]}.{digits[1:]}"
        text = f"{mantissa}e{point - 1}"
    return sign + text


def _string(text: str) -> str:
    return '"' + text.translate(_ESCAPES) + '"'


class _DebugWriter:
    """RapidJSON's PrettyWriter (kFormatSingleLineArray) behind JsonWriterWithLimit."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self._size = 0
        # One entry per open container: [is_array, values written in it so far].
        self._levels: list[list] = []

    def _put(self, text: str) -> None:
        self.out.append(text)
        self._size += len(text.encode("utf-8", "surrogatepass"))

    def _gate(self) -> None:
        # JsonWriterWithLimit: a handler call made with 256 bytes written returns false,
        # which ends Accept().
        if self._size >= DEBUG_LIMIT_BYTES:
            raise _LimitReached

    def _prefix(self) -> None:
        # PrettyWriter::PrettyPrefix: ", " between array values; in an object, a new line
        # and indent before each key and ": " before its value.
        if not self._levels:
            return
        level = self._levels[-1]
        is_array, count = level
        if is_array:
            if count > 0:
                self._put(", ")
        else:
            if count > 0:
                self._put(",\n" if count % 2 == 0 else ": ")
            else:
                self._put("\n")
            if count % 2 == 0:
                self._put(_INDENT * len(self._levels))
        level[1] += 1

    def _scalar(self, text: str | None) -> None:
        self._gate()
        self._prefix()
        if text is None:  # NaN or an infinity: Writer::Double fails after the prefix
            raise _LimitReached
        self._put(text)

    def write(self, item: object) -> None:
        """Write one JSON value, raising _LimitReached where RapidJSON would stop."""
        if isinstance(item, dict | list):
            self._gate()
            self._prefix()
            self._put("{" if isinstance(item, dict) else "[")
            self._levels.append([isinstance(item, list), 0])
            if isinstance(item, dict):
                for key, member in item.items():
                    self._scalar(_string(key))
                    self.write(member)
            else:
                for member in item:
                    self.write(member)
            self._gate()
            is_array, count = self._levels.pop()
            if is_array:
                self._put("]")
            else:
                self._put("}" if count == 0 else "\n" + _INDENT * len(self._levels) + "}")
        elif item is None:
            self._scalar("null")
        elif isinstance(item, bool):
            self._scalar("true" if item else "false")
        elif isinstance(item, int):
            self._scalar(str(item))
        elif isinstance(item, float):
            self._scalar(rapidjson_double(item) if math.isfinite(item) else None)
        else:
            self._scalar(_string(str(item)))  # a string: parsed JSON holds nothing else


def debug_string(value: object) -> str:
    """`value` as json_tensor.cc JsonValueToDebugString writes it into an error message.

    Each token goes out with its separator while fewer than 256 bytes are written; the first
    token after that ends the text (it may end mid-value). A NaN or an infinity also ends it:
    RapidJSON's default writer refuses them after writing the separator before them.
    """
    writer = _DebugWriter()
    try:
        writer.write(value)
    except _LimitReached:
        pass
    return "".join(writer.out)


def float32_values(array: np.ndarray) -> Any:
    """A float32 array's values (nested lists; a float for a scalar) as TF Serving's JSON
    carries them.

    WriteDecimal writes `absl::StrCat(v)` (printf `%.6g`) when that reads back as the same
    float, else `%.9g`: the JSON number is that decimal, not the float's exact binary value
    (0.1, not 0.10000000149011612). Each value is returned as the double nearest that
    decimal, which is what a JSON reader gets from TF Serving's text.
    """
    values = array.ravel()
    doubles = values.astype(np.float64).tolist()
    written = np.array([float(f"{value:.6g}") for value in doubles])
    # NaN fails this test too; %.9g keeps it NaN, as WriteDecimal writes NaN.
    for index in np.flatnonzero(written.astype(np.float32) != values).tolist():
        written[index] = float(f"{doubles[index]:.9g}")
    return written.reshape(array.shape).tolist()
