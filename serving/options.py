"""tensorflow_model_server's flags, parsed into one Options object (no TensorFlow import).

Flag names, types and defaults follow TF Serving's `main.cc` and `server.h`; values are read
in TensorFlow's flag syntax (tfsp.serving.tf_flags): `--flag=value` only, a bool flag alone
meaning true.
"""

import argparse
import dataclasses
import functools
import logging
import os
import sys

from tfsp.core import argtypes
from tfsp.serving import tf_flags
from tfsp.serving.simple_atoi import simple_atoi

log = logging.getLogger("serving")

DEFAULT_GRPC_PORT = 8500
INT32_MAX = 2**31 - 1
# The message gRPC's synchronous C++ server answers, RESOURCE_EXHAUSTED, to a call that finds
# no thread free under its ResourceQuota (grpc src/cpp/server/server_cc.cc).
THREADPOOL_EXHAUSTED = "Server Threadpool Exhausted"


def schedulable_cpus() -> int:
    """The CPUs this process may run on (sched_getaffinity), as TensorFlow counts them for
    NumSchedulableCPUs and MaxParallelism, which size TF Serving's defaults."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def four_threads_per_cpu() -> int:
    """TF Serving's default for --grpc_max_threads and --rest_api_num_threads (server.h):
    4 per schedulable CPU."""
    return 4 * schedulable_cpus()


class FlagError(Exception):
    """A bad flag or flag combination; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Options:
    """Everything the server is told on its command line."""

    port: int = DEFAULT_GRPC_PORT
    grpc_socket_path: str = ""
    rest_api_port: int = 0
    # TF Serving's REST executor: its event loop takes one thread, its handlers the rest.
    rest_api_num_threads: int = dataclasses.field(default_factory=four_threads_per_cpu)
    rest_api_timeout_in_ms: int = 30000
    # Not a TF Serving flag: its HTTP server (libevent) has a fixed 50 s read timeout.
    rest_api_read_timeout_in_ms: int = 50000
    rest_api_enable_cors_support: bool = False
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    file_system_poll_wait_seconds: int = 1
    enable_batching: bool = False
    batching_parameters_file: str = ""
    enable_per_model_batching_parameters: bool = False
    allow_version_labels_for_unavailable_models: bool = False
    monitoring_config_file: str = ""
    ssl_config_file: str = ""
    # gRPC's thread quota, as TF Serving sets it (ResourceQuota::SetMaxThreads): one thread
    # always waits for new calls, so at most grpc_max_threads - 1 run at once, and a call past
    # them is refused, not queued (grpc thread_manager.cc).
    grpc_max_threads: int = dataclasses.field(default_factory=four_threads_per_cpu)
    grpc_channel_arguments: str = ""
    saved_model_tags: str = "serve"
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    tensorflow_session_parallelism: int = 0
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0
    enable_serialization_as_tensor_content: bool = False
    enable_grpc_healthcheck_service: bool = False
    enable_signature_method_name_check: bool = False
    tensorflow_session_config_file: str = ""
    per_process_gpu_memory_fraction: float = 0.0
    # Accepted as TF Serving accepts them; they change how it loads or what it keeps in
    # memory, never what a client sees (README: Known differences).
    num_load_threads: int = 0
    num_unload_threads: int = 0
    flush_filesystem_caches: bool = True
    remove_unused_fields_from_bundle_metagraph: bool = True
    enable_profiler: bool = True
    # Not a TF Serving flag: TF Serving ignores SIGTERM, so Kubernetes kills it after the
    # pod's terminationGracePeriodSeconds (30 s unless set); we drain within the same time.
    shutdown_grace_period_seconds: int = 30
    version: bool = False

    @property
    def session_threads(self) -> tuple[int, int]:
        """(intra-op, inter-op) threads of every model's session, chosen as TF Serving's
        server.cc does: the two specific flags as given if either is positive, else
        --tensorflow_session_parallelism for both."""
        intra = self.tensorflow_intra_op_parallelism
        inter = self.tensorflow_inter_op_parallelism
        if intra > 0 or inter > 0:
            return intra, inter
        return (self.tensorflow_session_parallelism,) * 2

    @property
    def meta_graph_tags(self) -> tuple[str, ...]:
        """The tag set every version loads with, as server.cc and saved_model_bundle_factory.cc
        make it: --saved_model_tags split at commas, pieces as they are (so "serve, gpu" asks
        for " gpu", and "serve," for ""), or {"serve"} if the flag is empty."""
        if not self.saved_model_tags:
            return ("serve",)
        return tuple(sorted(set(self.saved_model_tags.split(","))))

    @functools.cached_property
    def channel_arguments(self) -> tuple[tuple[str, int | str], ...]:
        """`--grpc_channel_arguments` as (key, value) pairs, read as TF Serving's server.cc
        reads them: pieces between commas, each `key=value` taken as it is (no trimming,
        text after a second `=` dropped), the value an int where absl::SimpleAtoi reads an
        int32 from it, else the text. Raises FlagError for a piece without `=`, an empty
        one included (",," or a trailing comma): server.cc reads past the end of its split
        there, which is undefined behaviour, not an argument."""
        if not self.grpc_channel_arguments:
            return ()
        pairs: list[tuple[str, int | str]] = []
        for piece in self.grpc_channel_arguments.split(","):
            key, *values = piece.split("=")
            if not values:
                raise FlagError(
                    f"--grpc_channel_arguments: {piece!r} is not key=value "
                    f"(in {self.grpc_channel_arguments!r})"
                )
            if len(values) > 1:
                log.warning(
                    "--grpc_channel_arguments: %r is read as %s=%s, as TF Serving reads it; "
                    "the text after the second '=' is dropped",
                    piece,
                    key,
                    values[0],
                )
            number = simple_atoi(values[0], 32)
            pairs.append((key, values[0] if number is None else number))
        return tuple(pairs)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise FlagError(message)


_HELP = {
    "port": "TCP port for the gRPC API (default 8500; 0: none, which needs --grpc_socket_path)",
    "grpc_socket_path": "also listen for gRPC on this UNIX socket",
    "rest_api_port": "port for the HTTP/REST API (0, the default, disables it)",
    "rest_api_num_threads": "threads of the REST executor, as in TF Serving (default 4 per "
    f"CPU, {four_threads_per_cpu()} here): its HTTP event loop takes one, so at most N-1 "
    "REST requests run at once and the rest wait; at least 1 with --rest_api_port",
    "rest_api_timeout_in_ms": "timeout of each REST call's session run in ms, 0 for none "
    "(default 30000)",
    "rest_api_read_timeout_in_ms": "REST connections whose request headers take longer than "
    "this to arrive (from the connection or the previous response), or whose body pauses "
    "longer, are closed (0: no limit; default 50000, libevent's read timeout in TF Serving)",
    "rest_api_enable_cors_support": "add CORS headers to REST responses",
    "model_name": "name of the model (ignored with --model_config_file; default 'default')",
    "model_base_path": "folder holding the model's numeric version folders",
    "model_config_file": "ModelServerConfig text proto (overrides --model_name/--model_base_path)",
    "model_config_file_poll_wait_seconds": "seconds between polls of --model_config_file "
    "(0: read once)",
    "file_system_poll_wait_seconds": "seconds between polls for new versions (0: once; default 1)",
    "enable_batching": "merge concurrent requests into batches",
    "batching_parameters_file": "BatchingParameters text proto",
    "enable_per_model_batching_parameters": (
        "with --enable_batching, batch each version by its own batching_params.pbtxt "
        "(a version without one is not batched); only the thread count comes from "
        "--batching_parameters_file"
    ),
    "allow_version_labels_for_unavailable_models": "let a new label (or one that keeps its "
    "version) name a version not loaded yet; moving a label still needs its new version "
    "AVAILABLE",
    "monitoring_config_file": "MonitoringConfig text proto (Prometheus endpoint on the REST port)",
    "ssl_config_file": "SSLConfig text proto: serve gRPC over TLS",
    "grpc_max_threads": "threads of the gRPC server, as in TF Serving (default 4 per CPU, "
    f"{four_threads_per_cpu()} here): at most this many minus one calls run at once, "
    f"and a call past them gets RESOURCE_EXHAUSTED '{THREADPOOL_EXHAUSTED}'",
    "grpc_channel_arguments": "comma-separated key=value gRPC server arguments, as TF Serving "
    "reads them (no trimming; a value is an int if it reads as an int32, else text), "
    "e.g. grpc.max_receive_message_length=1048576",
    "saved_model_tags": "comma-separated MetaGraph tags to load, taken as they are (no "
    "trimming; default 'serve', also when empty)",
    "max_num_load_retries": "retries of a failed version load (default 5)",
    "load_retry_interval_micros": "wait between load retries (default 60 s)",
    "tensorflow_session_parallelism": "threads of each session's intra- and inter-op pools, "
    "when neither of the next two flags is positive (0: automatic)",
    "tensorflow_intra_op_parallelism": "threads that parallelize one op (0: automatic)",
    "tensorflow_inter_op_parallelism": "threads that run independent ops (0: automatic; "
    "negative, with a positive intra-op count: every op runs in the calling thread)",
    "enable_model_warmup": "replay each version's assets.extra/tf_serving_warmup_requests "
    "before it becomes available (default true)",
    "num_request_iterations_for_warmup": "times each warmup request is replayed (used if > 0; "
    "default once)",
    "enable_serialization_as_tensor_content": "encode Predict outputs as tensor_content "
    "instead of the typed value fields (float_val, ...)",
    "enable_grpc_healthcheck_service": "serve grpc.health.v1.Health (services '', "
    "'ModelService' and 'PredictionService' SERVING; NOT_SERVING once shutting down)",
    "enable_signature_method_name_check": "refuse a signature whose method_name does not "
    "fit the API: Predict takes the predict, classify and regress methods, Classify and "
    "Regress only their own (tensorflow/serving/classify, .../regress)",
    "tensorflow_session_config_file": "ConfigProto text proto for every model's session "
    "(its thread counts are replaced by the parallelism flags, as in TF Serving)",
    "per_process_gpu_memory_fraction": "share of each GPU's memory the server takes, "
    "between 0 and 1 (0: TensorFlow chooses; by default it takes nearly all of it at start)",
    "num_load_threads": "accepted for compatibility (versions load one at a time)",
    "num_unload_threads": "accepted for compatibility (versions unload one at a time)",
    "flush_filesystem_caches": "accepted for compatibility (nothing to flush)",
    "remove_unused_fields_from_bundle_metagraph": "accepted for compatibility (the "
    "MetaGraph's signatures are all that is kept)",
    "enable_profiler": "accepted for compatibility (there is no profiler service)",
    "shutdown_grace_period_seconds": "on SIGTERM/SIGINT: requests already received, and "
    "those arriving until arrivals stop (at most 1 s), are answered, later ones get "
    "UNAVAILABLE, and the server exits 0 within this many seconds, "
    "cancelling what is still running then (default 30, Kubernetes' default grace period)",
    "version": "print the version and exit",
}


def build_parser(prog: str = "tfsp-model-server") -> argparse.ArgumentParser:
    """An argparse parser for tensorflow_model_server's flags (errors raise FlagError)."""
    parser = _Parser(
        prog=prog,
        usage=tf_flags.USAGE,
        formatter_class=tf_flags.FlagHelpFormatter,
        description="A TensorFlow-Serving-compatible model server (gRPC and REST). Flags "
        "take their values as --flag=value, as TensorFlow's flag parser reads them.",
        allow_abbrev=False,
    )
    add_flags(parser)
    return parser


# main.cc's int64 flags (server.h); its other integer flags, and ours, are int32.
_INT64_FLAGS = frozenset(
    {
        "load_retry_interval_micros",
        "tensorflow_session_parallelism",
        "tensorflow_intra_op_parallelism",
        "tensorflow_inter_op_parallelism",
    }
)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add every server flag (TF Serving's names) to `parser`, read in TensorFlow's flag
    syntax (tfsp.serving.tf_flags): `--flag=value` only, values as TensorFlow reads them."""
    defaults = Options()
    value_flags, bool_flags = [], []
    for field in dataclasses.fields(Options):
        name, default = field.name, getattr(defaults, field.name)
        flag = f"--{name}"
        if isinstance(default, bool):
            bool_flags.append(name)
            parser.add_argument(
                flag,
                nargs="?",
                const=True,
                default=default,
                type=tf_flags.boolean,
                help=_HELP[name],
            )
            continue
        value_flags.append(name)
        # The type names TensorFlow's own usage text gives each flag.
        metavar = "int64" if name in _INT64_FLAGS else "int32"
        if name in ("port", "rest_api_port"):
            kind = tf_flags.integer(32, convert=argtypes.port)
        elif isinstance(default, int):
            # A negative inter-op count means something to TensorFlow (run every op in the
            # caller's thread); a negative intra-op pool aborts it, so that one is refused.
            # A negative file-system poll makes TF Serving never look for versions (it then
            # waits for ever at startup): refused. The config file poll is off below 1. The
            # REST thread count matters only with REST on (options_from_namespace).
            signed = name in (
                "model_config_file_poll_wait_seconds",
                "tensorflow_inter_op_parallelism",
                "rest_api_num_threads",
            )
            low = None if signed else 0
            low = -1 if name == "load_retry_interval_micros" else low
            # gRPC's thread manager aborts the process when its quota cannot hold even the
            # one thread that waits for calls (TF Serving dies at startup with 0).
            low = 1 if name == "grpc_max_threads" else low
            kind = tf_flags.integer(64 if name in _INT64_FLAGS else 32, low)
        elif isinstance(default, float):
            kind, metavar = tf_flags.floating, "float"
        else:
            kind, metavar = str, "string"
        parser.add_argument(flag, type=kind, default=default, metavar=metavar, help=_HELP[name])
    for name, reason in UNSUPPORTED_FLAGS.items():
        parser.add_argument(
            f"--{name}", nargs="?", action=_Unsupported, reason=reason, help=argparse.SUPPRESS
        )
    parse_known_args = parser.parse_known_args

    def parse_known_args_in_tf_form(
        args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        words = sys.argv[1:] if args is None else args
        problem = tf_flags.separate_value_error(words, value_flags, bool_flags)
        if problem:
            parser.error(problem)
        return parse_known_args(args, namespace)

    # argparse reads `--port 9000` as `--port=9000` before any converter sees the words,
    # so they are checked first; on this parser itself, as `tfsp serve` is a subcommand's.
    parser.parse_known_args = parse_known_args_in_tf_form  # type: ignore[method-assign]


# TF Serving's other flags (main.cc): refused by name, with the reason, rather than as
# unknown flags.
UNSUPPORTED_FLAGS = {
    "platform_config_file": "platform configs other than TensorFlow SavedModels",
    "thread_pool_factory_config_file": "custom thread pool factories",
    "prefer_tflite_model": "TensorFlow Lite models",
    "num_tflite_pools": "TensorFlow Lite models",
    "num_tflite_interpreters_per_pool": "TensorFlow Lite models",
    "xla_cpu_compilation_enabled": "XLA:CPU JIT compilation",
    "xla_gpu_compilation_enabled": "XLA:GPU JIT compilation",
    "mixed_precision": "mixed precision rewrites",
    "skip_initialize_tpu": "TPUs",
    "use_alts_credentials": "ALTS credentials",
}


class _Unsupported(argparse.Action):
    """A TF Serving flag this server does not implement: the parser's error (a FlagError from
    the server's own parser, usage and exit 2 from `tfsp serve`'s) naming what it is for."""

    def __init__(self, *args: object, reason: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.reason = reason

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: object,
        values: object,
        option: str | None = None,
    ) -> None:
        parser.error(
            f"{option} is a TF Serving flag that tfsp serve does not support ({self.reason})"
        )


def options_from_namespace(args: argparse.Namespace) -> Options:
    """Options from parsed flags, with TF Serving's cross-flag checks."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Options)}
    options = Options(**values)
    if options.version:
        return options
    if not options.model_config_file and not options.model_base_path:
        raise FlagError("one of --model_base_path or --model_config_file is required")
    if options.port == 0 and not options.grpc_socket_path:
        raise FlagError(  # server.cc's words: REST alone is not served there
            "At least one of server_options.grpc_port or "
            "server_options.grpc_socket_path must be set."
        )
    if options.rest_api_port and options.rest_api_num_threads < 1:
        raise FlagError(  # tensorflow ThreadPool: CHECK_GE(num_threads, 1) aborts there
            f"--rest_api_num_threads={options.rest_api_num_threads}: TF Serving's REST "
            "thread pool needs at least 1 thread (it aborts at startup with fewer)"
        )
    if options.rest_api_port and options.rest_api_port == options.port:
        raise FlagError("--rest_api_port cannot be the same as --port")
    if (
        options.tensorflow_session_parallelism > 0
        and options.tensorflow_intra_op_parallelism > 0
        and options.tensorflow_inter_op_parallelism > 0
    ):
        raise FlagError(
            "configure either --tensorflow_session_parallelism or "
            "--tensorflow_intra_op_parallelism and --tensorflow_inter_op_parallelism, not all three"
        )
    if options.batching_parameters_file and not options.enable_batching:
        raise FlagError(  # server.cc's words
            "server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true."
        )
    files = [
        "model_config_file",
        "batching_parameters_file",
        "ssl_config_file",
        "tensorflow_session_config_file",
    ]
    # server.cc opens the monitoring file only to start the HTTP server: with REST off a
    # missing one stops nothing there (tfsp.serving.server says it is not read).
    if options.rest_api_port:
        files.append("monitoring_config_file")
    for flag in files:
        path = getattr(options, flag)
        if path and not os.path.isfile(path):
            raise FlagError(f"--{flag}: no such file: {path}")
    # Read (and kept) now: a piece that is not key=value is a flag error before any load.
    _ = options.channel_arguments
    return options


def parse_flags(argv: list[str], prog: str = "tfsp-model-server") -> Options:
    """Parse tensorflow_model_server-style flags; raises FlagError on any problem."""
    return options_from_namespace(build_parser(prog).parse_args(argv))
