"""The one error type of the data plane (a gRPC status code plus a one-line message), and
the text of a TensorFlow error as a client or a model status shows it."""

import re

import grpc

# TF Serving's REST status for each gRPC code (http_server.cc ToHTTPStatusCode).
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


class ServingError(Exception):
    """A request that fails with `code`; `message` is safe to show the client."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """The HTTP status TF Serving's REST API uses for this code."""
        return _HTTP_STATUS.get(self.code, 500)


def status_code(number: int) -> grpc.StatusCode:
    """The gRPC code with this number (a TensorFlow status's code); UNKNOWN for any other."""
    return next((c for c in grpc.StatusCode if c.value[0] == number), grpc.StatusCode.UNKNOWN)


def invalid(message: str) -> ServingError:
    """INVALID_ARGUMENT."""
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    """NOT_FOUND."""
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    """FAILED_PRECONDITION."""
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


# What TensorFlow wraps around an op's own message: the Python stack of the op's definition
# (eager "Graph execution error"; indented lines and blank lines), the failing node
# ("\n\t [[{{node ...}}]]"), the function that ran it and the eager op name.
_STACK_HEAD = re.compile(
    r"Graph execution error:\n+(?:Detected at node .*? \(most recent call last\):\n"
    r"(?:(?:[ \t].*)?\n)*)?(?:Node: '.*'\n)?"
)
_FUNCTION_NODE = re.compile(r"^(?:\{\{function_node [^}]*\}\} ?)+")
_OP_SUFFIX = re.compile(r" \[Op:[^\]]*\](?: name: .*)?$", re.DOTALL)
_NODE_CONTEXT = "\n\t [["


def _printable(text: str) -> str:
    """`text` on one line: characters that are not printable (newlines, control bytes,
    lone surrogates from undecodable bytes) become backslash escapes, so raw request bytes
    quoted by an op reach a client readable and a gRPC status stays valid UTF-8."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def tensorflow_message(message: str | bytes) -> str:
    """The op's own message out of a TF error, one printable line.

    Only the text between TensorFlow's known head and tail is kept, and it is not split
    into lines: an op that quotes its input (ParseExample quotes a whole serialized
    tf.Example) may quote newlines, which are escaped rather than dropped.
    """
    if isinstance(message, bytes):
        # A message TF could not decode (raw request bytes): keep them as \xNN escapes.
        message = message.decode("utf-8", errors="backslashreplace")
    text = _STACK_HEAD.sub("", message, count=1)
    text = text.split(_NODE_CONTEXT, 1)[0]
    text = _OP_SUFFIX.sub("", text)
    text = _FUNCTION_NODE.sub("", text).strip()
    return _printable(text) or "the model failed on this input"


# TF Serving's gRPC services send at most this many bytes of a status message, then a marker
# (grpc_status_util.cc ToGRPCStatus); its REST API sends the whole text.
_GRPC_MESSAGE_BYTES = 1024
_TRUNCATED = "...TRUNCATED"


def grpc_status_message(message: str) -> str:
    """`message` as TF Serving's gRPC services send a status: its first 1,024 bytes and
    "...TRUNCATED" when it is longer (a character the cut splits is dropped)."""
    if len(message) * 4 <= _GRPC_MESSAGE_BYTES:  # UTF-8 spends at most 4 bytes a character
        return message
    raw = message.encode("utf-8", errors="surrogatepass")
    if len(raw) <= _GRPC_MESSAGE_BYTES:
        return message
    return raw[:_GRPC_MESSAGE_BYTES].decode("utf-8", errors="ignore") + _TRUNCATED
