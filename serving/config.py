"""TF Serving's text-proto config files: read, validate, and turn into plain model settings."""

import dataclasses
import logging
import re
from pathlib import Path

from google.protobuf import message, text_format
from tensorflow_serving.config import model_server_config_pb2

from tfsp.serving import protos
from tfsp.serving.options import Options, schedulable_cpus

log = logging.getLogger("serving")

TENSORFLOW_PLATFORM = "tensorflow"


class ConfigError(Exception):
    """A config file or config message that cannot be used; the message names the problem."""


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """Which numeric versions to serve: the latest N, all, or a specific set."""

    kind: str = "latest"  # "latest", "all" or "specific"
    num_versions: int = 1
    versions: frozenset[int] = frozenset()

    def select(self, available: list[int]) -> set[int]:
        """The aspired versions among those present on disk."""
        if self.kind == "all":
            return set(available)
        if self.kind == "specific":
            return self.versions & set(available)
        return set(sorted(available)[-self.num_versions :])

    def folders(self, names: dict[int, list[str]]) -> dict[int, str]:
        """The folder each version loads from, given all the base path's names for it in
        sorted (byte) order: "007", "7" and "7 " all stand for 7 (absl::SimpleAtoi).

        As TF Serving's file-system source and manager pick one: `all` aspires every name and
        the manager keeps the first (basic_manager.cc refuses the others as already managed);
        `specific` takes the folders named as the numbers themselves when every requested
        version has one (its fast path, which lists nothing); otherwise, and for `latest`,
        the last name wins (IndexChildrenByVersion). A version with one name loads from it.
        """
        if self.kind == "all":
            return {version: found[0] for version, found in names.items()}
        if self.kind == "specific" and all(str(v) in names.get(v, ()) for v in self.versions):
            exact = {version: str(version) for version in self.versions}
            return {version: exact.get(version, found[-1]) for version, found in names.items()}
        return {version: found[-1] for version, found in names.items()}

    def describe(self) -> str:
        """A short human form, for logs."""
        if self.kind == "specific":
            return f"specific {sorted(self.versions)}"
        return "all" if self.kind == "all" else f"latest {self.num_versions}"


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """One entry of the model config list, as the manager needs it."""

    name: str
    base_path: str
    policy: VersionPolicy = VersionPolicy()
    labels: tuple[tuple[str, int], ...] = ()


def read_text_proto(path: str, msg: message.Message) -> message.Message:
    """Parse a text-format proto file into `msg`; ConfigError naming the file otherwise."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return text_format.Parse(text, msg)
    except text_format.ParseError as exc:
        raise ConfigError(f"invalid {msg.DESCRIPTOR.name} in {path}: {exc}") from None


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """The config `--model_name/--model_base_path` stand for."""
    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add()
    entry.name = name
    entry.base_path = base_path
    entry.model_platform = TENSORFLOW_PLATFORM
    return config


# OSS TF Serving builds its ServerCore without a request-logger creator, so a config whose
# models name a logging_config fails once they are added (server_core.cc
# MaybeUpdateServerRequestLogger, server_request_logger.cc): INVALID_ARGUMENT, these words.
NO_REQUEST_LOGGER = "No request-logger-creator provided."


def asks_for_request_logging(config: model_server_config_pb2.ModelServerConfig) -> bool:
    """Whether any model of `config` has a logging_config, which open-source TF Serving
    refuses (NO_REQUEST_LOGGER)."""
    return any(entry.HasField("logging_config") for entry in config.model_config_list.config)


def server_config(options: Options) -> model_server_config_pb2.ModelServerConfig:
    """The ModelServerConfig named by the flags (file, or single model)."""
    if options.model_config_file:
        return read_text_proto(
            options.model_config_file, model_server_config_pb2.ModelServerConfig()
        )
    return single_model_config(options.model_name, options.model_base_path)


def _policy(config: model_server_config_pb2.ModelConfig) -> VersionPolicy:
    policy = config.model_version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return VersionPolicy("all")
    if which == "specific":
        if not policy.specific.versions:
            # TF Serving warns and serves nothing (AspireSpecificVersionsFastPath).
            log.warning("No specific versions requested for servable %s.", config.name)
        return VersionPolicy("specific", versions=frozenset(policy.specific.versions))
    # std::max(num_versions, 1U) (AspireLatestVersions): 0 and unset both mean 1.
    return VersionPolicy("latest", num_versions=max(policy.latest.num_versions, 1))


def _check_platform(config: model_server_config_pb2.ModelConfig) -> None:
    """ConfigError, in TF Serving's words (server_core.cc GetPlatform and
    CreateStoragePathRoutes), unless the model's platform is "tensorflow", the only one
    served here, as there."""
    name = config.name
    if config.model_type != model_server_config_pb2.MODEL_TYPE_UNSPECIFIED:
        if config.model_platform:
            raise ConfigError(
                "Illegal setting both ModelServerConfig::model_type (deprecated) and "
                f"ModelServerConfig::model_platform, model name is {name}"
            )
        if config.model_type != model_server_config_pb2.TENSORFLOW:
            raise ConfigError(
                f"ModelServerConfig::model_type choice {config.model_type} not supported."
            )
        return
    if not config.model_platform:
        raise ConfigError(
            "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
            f"ModelServerConfig::model_platform, model name is {name}"
        )
    if config.model_platform != TENSORFLOW_PLATFORM:
        raise ConfigError(f"Model {name} requests unsupported platform {config.model_platform}")


# A URI's scheme as TensorFlow's io::ParseURI reads one: [a-zA-Z][0-9a-zA-Z.]* then "://".
_URI_SCHEME = re.compile(r"[a-zA-Z][0-9a-zA-Z.]*://")


def is_relative_path(uri: str) -> bool:
    """TF Serving's UriIsRelativePath: no scheme://host, and a path not starting with '/'."""
    return _URI_SCHEME.match(uri) is None and not uri.startswith("/")


def model_settings(config: model_server_config_pb2.ModelServerConfig) -> list[ModelSettings]:
    """Validate a ModelServerConfig as TF Serving's ServerCore does, in its order and words
    (every model's name is unique, then every base path is absolute, then each model's
    platform), and return its models; ConfigError on the first problem."""
    which = config.WhichOneof("config")
    if which == "custom_model_config":
        raise ConfigError("custom_model_config is not supported; use model_config_list")
    entries = list(config.model_config_list.config)
    seen: set[str] = set()
    for entry in entries:  # ValidateModelConfigList
        if entry.name in seen:
            raise ConfigError(f"Illegal to list model {entry.name} multiple times in config list")
        seen.add(entry.name)
    for entry in entries:
        if is_relative_path(entry.base_path):  # an empty one included
            raise ConfigError(
                f"Expected model {entry.name} to have an absolute path or URI; "
                f"got base_path()={entry.base_path}"
            )
    settings: list[ModelSettings] = []
    for entry in entries:
        _check_platform(entry)
        labels = tuple(sorted((label, int(v)) for label, v in entry.version_labels.items()))
        settings.append(ModelSettings(entry.name, entry.base_path, _policy(entry), labels))
    return settings


# A version's own batching parameters, read with --enable_per_model_batching_parameters
# (bundle_factory_util.cc kBatchingParamsFilename).
PER_MODEL_BATCHING_FILE = "batching_params.pbtxt"


@dataclasses.dataclass(frozen=True)
class BatchingSettings:
    """BatchingParameters with TF Serving's defaults filled in (bundle_factory_util.h,
    shared_batch_scheduler.h). Only `num_batch_threads` is checked when the file is read,
    as there; the rest is checked when a version loads (batching.queue_options)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = dataclasses.field(default_factory=schedulable_cpus)
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    # With splitting: the file's value, else max_batch_size's (0 when that is unset too).
    max_execution_batch_size: int = 0


def batching_settings(path: str) -> BatchingSettings:
    """Read a BatchingParameters file ('' means TF Serving's defaults). ConfigError for a
    file that does not parse, or a `num_batch_threads` below 1, which stops TF Serving at
    startup (SharedBatchScheduler::Create)."""
    settings = batching_parameters(path)
    if settings.num_batch_threads < 1:
        raise ConfigError(f"num_batch_threads must be positive; was {settings.num_batch_threads}")
    return settings


def batching_parameters(path: str) -> BatchingSettings:
    """A BatchingParameters file as settings, unchecked ('' means every default)."""
    if not path:
        return BatchingSettings()
    params = read_text_proto(path, protos.BatchingParameters())
    defaults = BatchingSettings()

    def value(field: str) -> int:
        return getattr(params, field).value if params.HasField(field) else getattr(defaults, field)

    splitting = params.HasField("enable_large_batch_splitting") and (
        params.enable_large_batch_splitting.value
    )
    execution = 0
    if splitting:  # GetQueueOptions: else max_batch_size's value, 0 when that is unset too
        own = params.HasField("max_execution_batch_size")
        execution = (params.max_execution_batch_size if own else params.max_batch_size).value
    return BatchingSettings(
        max_batch_size=value("max_batch_size"),
        batch_timeout_micros=value("batch_timeout_micros"),
        max_enqueued_batches=value("max_enqueued_batches"),
        num_batch_threads=value("num_batch_threads"),
        allowed_batch_sizes=tuple(params.allowed_batch_sizes),
        pad_variable_length_inputs=params.pad_variable_length_inputs,
        enable_large_batch_splitting=splitting,
        max_execution_batch_size=execution,
    )


def session_config(path: str) -> bytes:
    """The serialized ConfigProto of a `--tensorflow_session_config_file` (b"" for none)."""
    if not path:
        return b""
    # TensorFlow's own message (too large to rebuild in protos.py); imported only when the
    # flag is given, since it loads TensorFlow.
    from tensorflow.core.protobuf import config_pb2

    return read_text_proto(path, config_pb2.ConfigProto()).SerializeToString()


def monitoring_path(path: str) -> str | None:
    """The Prometheus endpoint path from a MonitoringConfig file, or None if disabled."""
    if not path:
        return None
    config = read_text_proto(path, protos.MonitoringConfig())
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    # TF Serving's PrometheusExporter default path.
    endpoint = prometheus.path or "/monitoring/prometheus/metrics"
    if not endpoint.startswith("/"):
        raise ConfigError(f"{path}: prometheus_config.path must start with '/'")
    return endpoint


@dataclasses.dataclass(frozen=True)
class TlsSettings:
    """PEM contents from an SSLConfig."""

    server_key: bytes
    server_cert: bytes
    custom_ca: bytes | None
    client_verify: bool


def tls_settings(path: str) -> TlsSettings | None:
    """Read an SSLConfig file (PEM text inline, as TF Serving expects)."""
    if not path:
        return None
    config = read_text_proto(path, protos.SSLConfig())
    if not config.server_key or not config.server_cert:
        raise ConfigError(f"{path}: server_key and server_cert are required")
    if config.client_verify and not config.custom_ca:
        raise ConfigError(f"{path}: client_verify needs custom_ca")
    return TlsSettings(
        server_key=config.server_key.encode(),
        server_cert=config.server_cert.encode(),
        custom_ca=config.custom_ca.encode() if config.custom_ca else None,
        client_verify=config.client_verify,
    )
