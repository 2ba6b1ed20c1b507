"""Flags, TF Serving's text-proto config files, and our rebuilt config protos (no server)."""

import asyncio
import dataclasses
import os
import socket
import subprocess
import sys

import pytest
import uvloop
from google.protobuf import text_format

from tests.serving_harness import REPO, build_toy_model
from tfsp.serving import config, protos, server
from tfsp.serving.config import ConfigError, VersionPolicy
from tfsp.serving.options import (
    UNSUPPORTED_FLAGS,
    FlagError,
    Options,
    build_parser,
    parse_flags,
)
from tfsp.serving.servable import SessionOptions


def test_flag_defaults_match_tensorflow_model_server():
    options = parse_flags(["--model_base_path=/models/cnn"])
    assert options.port == 8500 and options.rest_api_port == 0
    assert options.model_name == "default"
    assert options.rest_api_timeout_in_ms == 30000
    assert options.file_system_poll_wait_seconds == 1
    assert options.model_config_file_poll_wait_seconds == 0
    assert options.enable_batching is False


def test_flags_take_tf_syntax():
    options = parse_flags(
        [
            "--port=9000",
            "--rest_api_port=9001",
            "--model_name=cnn",
            "--model_base_path=/m",
            "--enable_batching",
            "--rest_api_enable_cors_support=true",
            "--grpc_max_threads=16",
            "--grpc_channel_arguments=grpc.max_receive_message_length=1024,grpc.x=abc",
        ]
    )
    assert (options.port, options.rest_api_port, options.model_name) == (9000, 9001, "cnn")
    assert options.enable_batching and options.rest_api_enable_cors_support
    assert options.channel_arguments == (
        ("grpc.max_receive_message_length", 1024),
        ("grpc.x", "abc"),
    )
    assert parse_flags(["--model_base_path=/m", "--enable_batching=false"]).enable_batching is False


@pytest.mark.parametrize(
    "flags, threads",
    [
        ([], (0, 0)),
        (["--tensorflow_session_parallelism=3"], (3, 3)),
        # Either specific flag positive: both are used as given, the session flag ignored.
        (["--tensorflow_session_parallelism=3", "--tensorflow_intra_op_parallelism=2"], (2, 0)),
        (["--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=-1"], (1, -1)),
        # Neither positive: TF Serving falls back to the session flag, dropping the -1.
        (["--tensorflow_inter_op_parallelism=-1"], (0, 0)),
    ],
)
def test_session_threads_are_chosen_as_tf_serving_chooses_them(flags, threads):
    assert parse_flags(["--model_base_path=/m", *flags]).session_threads == threads


@pytest.mark.parametrize(
    "flag, value",
    [
        # tsl's command_line_flags.cc: sscanf("%d%c") for an integer, C whitespace before
        # it and one sign allowed; a bool is true/false in any case, 1 or 0, or bare
        ("--port= 9000", 9000),
        ("--port=+9000", 9000),
        ("--load_retry_interval_micros=3000000000", 3_000_000_000),  # an int64 flag
        ("--enable_batching=TRUE", True),
        ("--enable_batching=1", True),
        ("--enable_model_warmup=False", False),
        ("--enable_model_warmup=0", False),
        ("--enable_batching", True),
        # sscanf("%f%c"): strtod's syntax, hexadecimal included
        ("--per_process_gpu_memory_fraction=1e-1", 0.1),
        ("--per_process_gpu_memory_fraction=0x1p-2", 0.25),
    ],
)
def test_flag_values_are_read_as_tensorflows_flag_parser_reads_them(flag, value):
    name = flag.partition("=")[0].lstrip("-")
    assert getattr(parse_flags(["--model_base_path=/m", flag]), name) == value


def test_grpc_threads_default_to_tf_servings_four_per_cpu_and_need_one_to_wait_for_calls():
    # server.h: 4.0 * NumSchedulableCPUs(); gRPC's thread manager aborts the process when its
    # quota cannot hold the one thread that waits for calls
    cpus = len(os.sched_getaffinity(0))
    assert parse_flags(["--model_base_path=/m"]).grpc_max_threads == 4 * cpus
    assert parse_flags(["--model_base_path=/m", "--grpc_max_threads=1"]).grpc_max_threads == 1
    with pytest.raises(FlagError, match="--grpc_max_threads: must be at least 1, got 0"):
        parse_flags(["--model_base_path=/m", "--grpc_max_threads=0"])


def test_rest_threads_default_to_four_per_cpu_and_need_one_with_rest_on():
    # server.h's default; the REST executor's tensorflow ThreadPool aborts with fewer than
    # one thread, and is only made with REST on
    cpus = len(os.sched_getaffinity(0))
    assert parse_flags(["--model_base_path=/m"]).rest_api_num_threads == 4 * cpus
    off = ["--model_base_path=/m", "--rest_api_num_threads=0"]
    assert parse_flags(off).rest_api_num_threads == 0
    for threads in ("0", "-3"):
        flags = [*off[:1], f"--rest_api_num_threads={threads}", "--rest_api_port=8501"]
        with pytest.raises(FlagError, match="REST thread pool needs at least 1 thread"):
            parse_flags(flags)


def test_help_shows_each_flag_in_the_form_tensorflows_parser_reads():
    text = " ".join(build_parser().format_help().split())
    for shown in (
        "usage: tfsp-model-server [--flag=value ...]",
        "--port=int32",
        "--load_retry_interval_micros=int64",
        "--per_process_gpu_memory_fraction=float",
        "--model_config_file=string",
        "--enable_batching[=true|false]",
    ):
        assert shown in text
    assert "--port PORT" not in text


@pytest.mark.parametrize(
    "words, fragment",
    [
        # values TensorFlow's parser refuses (it prints usage and exits)
        (["--port=9000 "], "expected a whole number, got '9000 '"),
        (["--file_system_poll_wait_seconds=1_0"], "expected a whole number"),
        (["--grpc_max_threads=0x10"], "expected a whole number"),
        (["--enable_batching=yes"], "expected true, false, 1 or 0, got 'yes'"),
        (["--enable_batching= true"], "expected true, false, 1 or 0"),
        (["--per_process_gpu_memory_fraction=0.5 "], "expected a number"),
        (["--per_process_gpu_memory_fraction=1_0"], "expected a number"),
        # past an int32 flag's range, where TensorFlow's sscanf overflows
        (["--rest_api_timeout_in_ms=3000000000"], "must be at most 2147483647"),
        # a separate value: there the flag stays unset and the value is an unknown argument
        (["--port", "9000"], "--port takes its value as --port=VALUE"),
        (["--grpc_channel_arguments", "a=1"], "--grpc_channel_arguments takes its value as"),
        (["--port"], "--port takes its value as --port=VALUE"),
        # ...and a bool flag alone is true there, whatever word follows it
        (["--enable_batching", "false"], "write --enable_batching=false"),
    ],
)
def test_what_tensorflows_flag_parser_would_read_otherwise_is_refused(words, fragment):
    with pytest.raises(FlagError) as caught:
        parse_flags(["--model_base_path=/m", *words])
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "flag, tags",
    [
        # server.cc splits at commas and keeps the pieces as they are; an empty set is
        # {serve} (saved_model_bundle_factory.cc)
        ("--saved_model_tags=serve", ("serve",)),
        ("--saved_model_tags=", ("serve",)),
        ("--saved_model_tags=serve,gpu,serve", ("gpu", "serve")),
        ("--saved_model_tags=serve, gpu", (" gpu", "serve")),
        ("--saved_model_tags=serve,", ("", "serve")),
    ],
)
def test_meta_graph_tags_are_taken_as_tf_serving_takes_them(flag, tags):
    assert parse_flags(["--model_base_path=/m", flag]).meta_graph_tags == tags


@pytest.mark.parametrize(
    "text, pairs",
    [
        ("", ()),
        # server.cc splits on "," and "=" and passes key and value on as they are...
        (" grpc.a = 1", ((" grpc.a ", 1),)),  # ...a key with spaces reaches gRPC, unknown
        ("grpc.a=b=c", (("grpc.a", "b"),)),  # ...the text after a second "=" is dropped
        ("grpc.a=", (("grpc.a", ""),)),
        ("=5", (("", 5),)),
        # absl::SimpleAtoi into an int32: spaces around and one sign; anything else is text
        ("a=+7,b=-2147483648,c=2147483647", (("a", 7), ("b", -(2**31)), ("c", 2**31 - 1))),
        (
            "a=2147483648,b=1_000,c=0x10,d=\u0661",
            (("a", "2147483648"), ("b", "1_000"), ("c", "0x10"), ("d", "\u0661")),
        ),
    ],
)
def test_grpc_channel_arguments_are_read_as_tf_serving_reads_them(text, pairs):
    flags = ["--model_base_path=/m", f"--grpc_channel_arguments={text}"]
    assert parse_flags(flags).channel_arguments == pairs


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--model_base_path=/m", "--bogus=1"], "unrecognized arguments: --bogus=1"),
        (["--model_base_path=/m", "--port=http"], "argument --port"),
        (["--model_base_path=/m", "--port=70000"], "port number"),
        (["--model_base_path=/m", "--enable_batching=perhaps"], "true, false, 1 or 0"),
        (["--model_base_path=/m", "--rest_api_port=8500"], "cannot be the same"),
        (["--model_name=x"], "--model_base_path or --model_config_file"),
        (["--model_config_file=/no/such/file"], "no such file"),
        # server.cc needs a gRPC listener: a port or a UNIX socket; REST alone is refused
        (["--model_base_path=/m", "--port=0"], "grpc_port or server_options.grpc_socket_path"),
        (
            ["--model_base_path=/m", "--port=0", "--rest_api_port=8501"],
            "At least one of server_options.grpc_port or server_options.grpc_socket_path",
        ),
        (["--model_base_path=/m", "--batching_parameters_file=/x"], "without setting"),
        (["--model_base_path=/m", "--rest_api_timeout_in_ms=-5"], "at least 0"),
        # TF Serving never polls with a negative value, and waits for ever at startup
        (["--model_base_path=/m", "--file_system_poll_wait_seconds=-1"], "at least 0"),
        (["--model_base_path=/m", "--model_bas=/x"], "unrecognized"),  # no prefix guessing
        # server.cc reads the value of a piece without "=" (an empty one too) past the end
        # of its split: undefined behaviour there, refused here
        (["--model_base_path=/m", "--grpc_channel_arguments=grpc.a"], "'grpc.a' is not key=value"),
        (["--model_base_path=/m", "--grpc_channel_arguments=a=1,"], "'' is not key=value"),
        (["--model_base_path=/m", "--grpc_channel_arguments=a=1,,b=2"], "'' is not key=value"),
        # TensorFlow aborts the process on a negative intra-op pool: refused before loading.
        (["--model_base_path=/m", "--tensorflow_intra_op_parallelism=-1"], "at least 0"),
        (["--model_base_path=/m", "--tensorflow_session_parallelism=-1"], "at least 0"),
        (
            [
                "--model_base_path=/m",
                "--tensorflow_session_parallelism=2",
                "--tensorflow_intra_op_parallelism=1",
                "--tensorflow_inter_op_parallelism=1",
            ],
            "not all three",
        ),
    ],
)
def test_bad_flags(argv, fragment):
    with pytest.raises(FlagError) as caught:
        parse_flags(argv)
    assert fragment in str(caught.value)


# Every flag of tensorflow_model_server's main.cc (tensorflow/serving at 9d981c5, 2026-07-30).
TF_SERVING_FLAGS = (
    "allow_version_labels_for_unavailable_models",
    "batching_parameters_file",
    "enable_batching",
    "enable_grpc_healthcheck_service",
    "enable_model_warmup",
    "enable_per_model_batching_parameters",
    "enable_profiler",
    "enable_serialization_as_tensor_content",
    "enable_signature_method_name_check",
    "file_system_poll_wait_seconds",
    "flush_filesystem_caches",
    "grpc_channel_arguments",
    "grpc_max_threads",
    "grpc_socket_path",
    "load_retry_interval_micros",
    "max_num_load_retries",
    "mixed_precision",
    "model_base_path",
    "model_config_file",
    "model_config_file_poll_wait_seconds",
    "model_name",
    "monitoring_config_file",
    "num_load_threads",
    "num_request_iterations_for_warmup",
    "num_tflite_interpreters_per_pool",
    "num_tflite_pools",
    "num_unload_threads",
    "per_process_gpu_memory_fraction",
    "platform_config_file",
    "port",
    "prefer_tflite_model",
    "remove_unused_fields_from_bundle_metagraph",
    "rest_api_enable_cors_support",
    "rest_api_num_threads",
    "rest_api_port",
    "rest_api_timeout_in_ms",
    "saved_model_tags",
    "skip_initialize_tpu",
    "ssl_config_file",
    "tensorflow_inter_op_parallelism",
    "tensorflow_intra_op_parallelism",
    "tensorflow_session_config_file",
    "tensorflow_session_parallelism",
    "thread_pool_factory_config_file",
    "use_alts_credentials",
    "version",
    "xla_cpu_compilation_enabled",
    "xla_gpu_compilation_enabled",
)


def test_every_tensorflow_model_server_flag_is_taken_or_refused_by_name():
    """Each of main.cc's flags is a server option or refused saying why, never
    'unrecognized' as a typo is."""
    known = {field.name for field in dataclasses.fields(Options)} | set(UNSUPPORTED_FLAGS)
    assert set(TF_SERVING_FLAGS) - known == set()
    taken = {
        "enable_grpc_healthcheck_service=true": True,
        "enable_signature_method_name_check=true": True,
        "per_process_gpu_memory_fraction=0.5": 0.5,
        "num_load_threads=4": 4,
        "num_unload_threads=2": 2,
        "flush_filesystem_caches=false": False,
        "remove_unused_fields_from_bundle_metagraph=false": False,
        "enable_profiler=false": False,
    }
    for flag, value in taken.items():
        name = flag.partition("=")[0]
        assert getattr(parse_flags(["--model_base_path=/m", f"--{flag}"]), name) == value
    defaults = Options()
    assert defaults.enable_profiler and defaults.flush_filesystem_caches
    assert not defaults.enable_grpc_healthcheck_service
    assert not defaults.enable_signature_method_name_check
    for name in UNSUPPORTED_FLAGS:
        with pytest.raises(FlagError) as caught:
            parse_flags(["--model_base_path=/m", f"--{name}=1"])
        assert str(caught.value).startswith(f"--{name} is a TF Serving flag that tfsp serve")


def test_the_session_config_file_is_read_then_the_flags_replace_its_threads(tmp_path):
    """server.cc: the file's ConfigProto, then the GPU fraction and both thread counts from
    the flags, always (a 0 from the flags replaces the file's count)."""
    path = tmp_path / "session.config"
    path.write_text(
        "intra_op_parallelism_threads: 7\ninter_op_parallelism_threads: 5\n"
        "operation_timeout_in_ms: 1234\ngpu_options { allow_growth: true }\n"
    )
    options = parse_flags(
        [
            "--model_base_path=/m",
            f"--tensorflow_session_config_file={path}",
            "--per_process_gpu_memory_fraction=0.25",
            "--tensorflow_intra_op_parallelism=2",
        ]
    )
    intra, inter = options.session_threads
    base = config.session_config(options.tensorflow_session_config_file)
    built = SessionOptions(intra, inter, options.per_process_gpu_memory_fraction, base).config()
    assert (built.intra_op_parallelism_threads, built.inter_op_parallelism_threads) == (2, 0)
    assert built.operation_timeout_in_ms == 1234
    assert built.gpu_options.allow_growth
    assert built.gpu_options.per_process_gpu_memory_fraction == 0.25
    path.write_text("intra_op_parallelism_threads: many\n")
    with pytest.raises(config.ConfigError, match="invalid ConfigProto in .*session.config"):
        config.session_config(str(path))
    with pytest.raises(FlagError, match="no such file"):
        parse_flags(["--model_base_path=/m", "--tensorflow_session_config_file=/no/file"])


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=120
    )


@pytest.mark.integration
def test_console_script_and_tfsp_serve_fail_cleanly_on_bad_flags(tmp_path):
    script = REPO / ".venv" / "bin" / "tfsp-model-server"
    result = subprocess.run(
        [str(script), "--model_base_path=/m", "--no_such_flag"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unrecognized arguments: --no_such_flag (see 'tfsp-model-server --help')"
    ]
    result = _run("-m", "tfsp.cli", "serve", "--port=abc", "--model_base_path=/m")
    assert result.returncode == 2 and result.stderr.startswith("error: argument --port")
    # A TF Serving flag we do not implement: the same one line from both entry points.
    for argv in (["-m", "tfsp.cli", "serve"], ["-m", "tfsp.serving.server"]):
        result = _run(*argv, "--model_base_path=/m", "--use_alts_credentials")
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(
            "error: --use_alts_credentials is a TF Serving flag that tfsp serve does not "
            "support (ALTS credentials)"
        )
        assert "Traceback" not in result.stderr
    bad = tmp_path / "models.config"
    bad.write_text("model_config_list { config { name: 'x' base_path: '/m' bogus: 1 } }")
    result = _run("-m", "tfsp.serving.server", f"--model_config_file={bad}")
    assert result.returncode == 1
    assert "invalid ModelServerConfig" in result.stderr and "bogus" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_a_rest_port_in_use_stops_the_start(tmp_path):
    # TF Serving logs "Failed to start HTTP Server at localhost:N" and serves gRPC alone;
    # here the start fails, in one line (README: Known differences).
    build_toy_model(tmp_path / "toy" / "1", 1.0)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(
            "-m",
            "tfsp.serving.server",
            "--model_name=toy",
            f"--model_base_path={tmp_path / 'toy'}",
            "--port=0",
            f"--grpc_socket_path={tmp_path / 'grpc.sock'}",
            f"--rest_api_port={port}",
        )
    assert result.returncode == 1, result.stderr
    assert f"Failed to start server: cannot listen for REST on port {port}: " in result.stderr
    assert "address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_server_runs_on_uvloop(monkeypatch):
    # The loop thread is the server's bottleneck under load; asyncio's own loop costs it more
    # per call (README, "What moved the serving figures").
    loops = []

    async def probe(options: Options, files: object) -> int:
        loops.append(type(asyncio.get_running_loop()))
        return 7

    monkeypatch.setattr(server, "_serve", probe)
    assert server.run(parse_flags(["--model_base_path=/m"])) == 7
    assert loops == [uvloop.Loop]


def test_a_missing_monitoring_file_stops_the_start_only_with_rest_on(tmp_path, monkeypatch):
    """server.cc parses --monitoring_config_file only where it starts the HTTP server: with
    --rest_api_port=0 the file is never opened, so a missing one does not stop the start."""
    missing = f"--monitoring_config_file={tmp_path / 'monitoring.config'}"
    with pytest.raises(FlagError, match="--monitoring_config_file: no such file"):
        parse_flags(["--model_base_path=/m", "--rest_api_port=8501", missing])

    async def serve(options: Options, files: object) -> int:
        assert files.prometheus_path is None
        return 7

    monkeypatch.setattr(server, "_serve", serve)
    assert server.run(parse_flags(["--model_base_path=/m", missing])) == 7


TF_SERVING_MODELS_CONFIG = """
model_config_list {
  config {
    name: 'cnn'
    base_path: '/models/cnn'
    model_platform: 'tensorflow'
    model_version_policy { specific { versions: 42 versions: 43 } }
    version_labels { key: 'stable' value: 42 }
    version_labels { key: 'canary' value: 43 }
  }
  config {
    name: 'ae'
    base_path: '/models/ae'
    model_platform: 'tensorflow'
    model_version_policy { latest { num_versions: 2 } }
  }
  config {
    name: 'all' base_path: '/models/all' model_type: TENSORFLOW model_version_policy { all {} }
  }
  config {
    name: 'none' base_path: '/models/none' model_platform: 'tensorflow'
    model_version_policy { specific { } }
  }
  config {
    name: 'one' base_path: '/models/one' model_platform: 'tensorflow'
    model_version_policy { latest { num_versions: 0 } }
  }
}
"""


def test_models_config_as_written_for_tf_serving(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(TF_SERVING_MODELS_CONFIG)
    options = Options(model_config_file=str(path))
    cnn, ae, every, none, one = config.model_settings(config.server_config(options))
    assert cnn.policy == VersionPolicy("specific", versions=frozenset({42, 43}))
    assert dict(cnn.labels) == {"stable": 42, "canary": 43}
    assert ae.policy.select([1, 5, 3, 9]) == {5, 9}
    assert every.policy.select([1, 2]) == {1, 2}
    assert cnn.policy.select([41, 42]) == {42}
    # as file_system_storage_path_source.cc: no specific versions serve nothing (a warning),
    # and latest 0 is latest 1 (std::max(num_versions, 1U))
    assert none.policy.select([1, 2]) == set()
    assert one.policy.select([1, 2]) == {2}
    single = config.model_settings(config.server_config(Options(model_base_path="/m")))
    assert [(s.name, s.base_path, s.policy.kind) for s in single] == [("default", "/m", "latest")]


TF = "model_platform: 'tensorflow'"


@pytest.mark.parametrize(
    "text, message",
    [
        # server_core.cc ValidateModelConfigList: names first, over the whole list...
        (f"model_config_list {{ config {{ name: 'a' base_path: 'rel' {TF} }} "
         f"config {{ name: 'a' base_path: '/b' {TF} }} }}",
         "Illegal to list model a multiple times in config list"),
        # ... then paths (an empty one is relative) ...
        (f"model_config_list {{ config {{ name: 'a' {TF} }} }}",
         "Expected model a to have an absolute path or URI; got base_path()="),
        # ... then each model's platform (GetPlatform, CreateStoragePathRoutes)
        ("model_config_list { config { name: 'a' base_path: '/a' } }",
         "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
         "ModelServerConfig::model_platform, model name is a"),
        ("model_config_list { config { name: 'a' base_path: '/a' model_platform: 'onnx' } }",
         "Model a requests unsupported platform onnx"),
        ("model_config_list { config { name: 'a' base_path: '/a' model_type: OTHER } }",
         "ModelServerConfig::model_type choice 2 not supported."),
        (f"model_config_list {{ config {{ name: 'a' base_path: '/a' model_type: TENSORFLOW "
         f"{TF} }} }}",
         "Illegal setting both ModelServerConfig::model_type (deprecated) and "
         "ModelServerConfig::model_platform, model name is a"),
    ],
)  # fmt: skip
def test_bad_models_configs_are_refused_in_tf_servings_words(tmp_path, text, message):
    path = tmp_path / "models.config"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        config.model_settings(config.server_config(Options(model_config_file=str(path))))
    assert str(caught.value) == message


def test_an_unparsable_models_config_names_the_file(tmp_path):
    path = tmp_path / "models.config"
    path.write_text("model_config_list { config { name 'a' } }")
    with pytest.raises(ConfigError, match="invalid ModelServerConfig"):
        config.model_settings(config.server_config(Options(model_config_file=str(path))))
    # a model with no name is accepted, as there
    path.write_text(f"model_config_list {{ config {{ base_path: '/a' {TF} }} }}")
    (unnamed,) = config.model_settings(config.server_config(Options(model_config_file=str(path))))
    assert unnamed.name == ""


def test_batching_parameters_file_from_the_tf_serving_docs(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text(
        "max_batch_size { value: 128 }\n"
        "batch_timeout_micros { value: 0 }\n"
        "max_enqueued_batches { value: 1000000 }\n"
        "num_batch_threads { value: 8 }\n"
        "allowed_batch_sizes: 32\n"
        "allowed_batch_sizes: 128\n"
        "pad_variable_length_inputs: true\n"
        "enable_large_batch_splitting { value: true }\n"
    )
    settings = config.batching_settings(str(path))
    assert settings.max_batch_size == 128 and settings.num_batch_threads == 8
    assert settings.allowed_batch_sizes == (32, 128) and settings.pad_variable_length_inputs
    # splitting without max_execution_batch_size cuts to max_batch_size (GetQueueOptions)
    assert settings.enable_large_batch_splitting and settings.max_execution_batch_size == 128
    path.write_text("max_batch_size: 64\n")  # not the wrapper form
    with pytest.raises(ConfigError, match="invalid BatchingParameters"):
        config.batching_settings(str(path))
    # only the thread count stops TF Serving at startup (SharedBatchScheduler::Create)
    path.write_text("num_batch_threads { value: 0 }\n")
    with pytest.raises(ConfigError, match=r"^num_batch_threads must be positive; was 0$"):
        config.batching_settings(str(path))
    # unset, it is the machine's core count (MaxParallelism), shared by every model
    assert config.batching_settings("") == config.BatchingSettings()
    assert config.BatchingSettings().num_batch_threads == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    "text, refused",
    [
        # WrapSessionForBatching (bundle_factory_util.cc), then AddQueue
        # (shared_batch_scheduler.h), in their words; unlisted values TF accepts too
        (
            "max_batch_size { value: 64 } allowed_batch_sizes: 32",
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 32; "
            "expected 64",
        ),
        (
            "allowed_batch_sizes: 8",
            "Last entry in allowed_batch_sizes must match max_batch_size; "
            "last entry was 8; expected 1000",
        ),  # fmt: skip
        ("max_batch_size { value: 0 }", "input_batch_size_limit must be positive; was 0"),
        ("batch_timeout_micros { value: -1 }", "batch_timeout_micros must be non-negative; was -1"),
        (
            "enable_large_batch_splitting { value: true } max_enqueued_batches { value: 0 }",
            "max_enqueued_batches must be positive; was 0",
        ),
        (
            "max_batch_size { value: 64 } enable_large_batch_splitting { value: true } "
            "max_execution_batch_size { value: 128 }",
            "When enable_large_batch_splitting is true, input_batch_size_limit must be greater "
            "than or equal to max_execution_batch_size.164128",
        ),
        (
            "max_batch_size { value: 16 } allowed_batch_sizes: 8 allowed_batch_sizes: 4 "
            "allowed_batch_sizes: 16",
            None,
        ),  # fmt: skip  (TF does not check the order)
        ("max_batch_size { value: 16 } allowed_batch_sizes: 0 allowed_batch_sizes: 16", None),
        ("max_enqueued_batches { value: 0 }", None),  # rewritten to 1 without splitting
        ("max_enqueued_batches { value: -1 }", None),  # size_t there: no limit
        ("max_batch_size { value: -1 }", None),
    ],
)
def test_batching_parameters_are_checked_when_a_version_loads(tmp_path, text, refused):
    from tfsp.serving.batching import BatchingConfigError, queue_options

    path = tmp_path / "batching.config"
    path.write_text(text)
    settings = config.batching_settings(str(path))  # the file itself is fine at startup
    if refused is None:
        queue_options(settings)
        return
    with pytest.raises(BatchingConfigError) as caught:
        queue_options(settings)
    assert str(caught.value) == refused


def test_monitoring_and_ssl_configs(tmp_path):
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text(
        'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }'
    )
    assert config.monitoring_path(str(monitoring)) == "/monitoring/prometheus/metrics"
    monitoring.write_text("prometheus_config { enable: true }")
    assert config.monitoring_path(str(monitoring)) == "/monitoring/prometheus/metrics"
    monitoring.write_text("prometheus_config { enable: false }")
    assert config.monitoring_path(str(monitoring)) is None
    ssl = tmp_path / "ssl.config"
    ssl.write_text('server_key: "KEY"\nserver_cert: "CERT"\ncustom_ca: "CA"\nclient_verify: true\n')
    tls = config.tls_settings(str(ssl))
    assert (tls.server_key, tls.server_cert, tls.custom_ca, tls.client_verify) == (
        b"KEY",
        b"CERT",
        b"CA",
        True,
    )


@pytest.mark.parametrize(
    "message, fields",
    [
        (
            "BatchingParameters",
            {
                "max_batch_size": 1,
                "batch_timeout_micros": 2,
                "max_enqueued_batches": 3,
                "num_batch_threads": 4,
                "thread_pool_name": 5,
                "allowed_batch_sizes": 6,
                "pad_variable_length_inputs": 7,
                "enable_large_batch_splitting": 8,
                "max_execution_batch_size": 9,
            },
        ),
        ("MonitoringConfig", {"prometheus_config": 1}),
        ("PrometheusConfig", {"enable": 1, "path": 2}),
        ("SSLConfig", {"server_key": 1, "server_cert": 2, "custom_ca": 3, "client_verify": 4}),
    ],
)
def test_rebuilt_protos_have_tf_serving_names_and_numbers(message, fields):
    descriptor = getattr(protos, message).DESCRIPTOR
    assert descriptor.full_name == f"tensorflow.serving.{message}"
    assert {f.name: f.number for f in descriptor.fields} == fields


def test_rebuilt_protos_encode_like_tf_serving():
    params = text_format.Parse(
        "max_batch_size { value: 32 } allowed_batch_sizes: 8 allowed_batch_sizes: 32",
        protos.BatchingParameters(),
    )
    # field 1 (Int64Value {1: 32}), then packed repeated field 6 (proto3 default)
    assert params.SerializeToString() == b"\n\x02\x08 2\x02\x08 "
    decoded = protos.BatchingParameters.FromString(b"\n\x02\x08 0\x080\x20")
    assert decoded.max_batch_size.value == 32 and list(decoded.allowed_batch_sizes) == [8, 32]
