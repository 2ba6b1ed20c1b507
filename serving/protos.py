"""TF Serving config protos that the PyPI package lacks, rebuilt wire- and text-compatible.

`tensorflow-serving-api` ships ModelServerConfig but not BatchingParameters
(servables/tensorflow/session_bundle_config.proto), MonitoringConfig/PrometheusConfig
(config/monitoring_config.proto) or SSLConfig (config/ssl_config.proto). Without protoc we
describe them here with the same package, message names, field names and numbers, so text
files written for `tensorflow_model_server` parse unchanged and binary encodings match.
"""

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "tensorflow.serving"


def _field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    kind: int,
    type_name: str = "",
    repeated: bool = False,
) -> None:
    field = message.field.add(name=name, number=number, type=kind)
    field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        field.type_name = type_name
    field.json_name = "".join(
        part if i == 0 else part.capitalize() for i, part in enumerate(name.split("_"))
    )


def _batching_file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    msg = proto.message_type.add(name="BatchingParameters")
    int64 = ".google.protobuf.Int64Value"
    _field(msg, "max_batch_size", 1, _F.TYPE_MESSAGE, int64)
    _field(msg, "batch_timeout_micros", 2, _F.TYPE_MESSAGE, int64)
    _field(msg, "max_enqueued_batches", 3, _F.TYPE_MESSAGE, int64)
    _field(msg, "num_batch_threads", 4, _F.TYPE_MESSAGE, int64)
    _field(msg, "thread_pool_name", 5, _F.TYPE_MESSAGE, ".google.protobuf.StringValue")
    _field(msg, "allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True)
    _field(msg, "pad_variable_length_inputs", 7, _F.TYPE_BOOL)
    return proto


def _monitoring_file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package=_PACKAGE,
        syntax="proto3",
    )
    prometheus = proto.message_type.add(name="PrometheusConfig")
    _field(prometheus, "enable", 1, _F.TYPE_BOOL)
    _field(prometheus, "path", 2, _F.TYPE_STRING)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    _field(monitoring, "prometheus_config", 1, _F.TYPE_MESSAGE, f".{_PACKAGE}.PrometheusConfig")
    return proto


def _ssl_file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/ssl_config.proto", package=_PACKAGE, syntax="proto3"
    )
    ssl = proto.message_type.add(name="SSLConfig")
    _field(ssl, "server_key", 1, _F.TYPE_STRING)
    _field(ssl, "server_cert", 2, _F.TYPE_STRING)
    _field(ssl, "custom_ca", 3, _F.TYPE_STRING)
    _field(ssl, "client_verify", 4, _F.TYPE_BOOL)
    return proto


def _message_class(pool: descriptor_pool.DescriptorPool, name: str) -> type:
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


def _build() -> dict[str, type]:
    # A private pool keeps us from clashing with the real files should another package
    # register them in the default pool one day.
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    for file_proto in (_batching_file(), _monitoring_file(), _ssl_file()):
        pool.Add(file_proto)
    names = ("BatchingParameters", "PrometheusConfig", "MonitoringConfig", "SSLConfig")
    return {name: _message_class(pool, name) for name in names}


_CLASSES = _build()
BatchingParameters = _CLASSES["BatchingParameters"]
PrometheusConfig = _CLASSES["PrometheusConfig"]
MonitoringConfig = _CLASSES["MonitoringConfig"]
SSLConfig = _CLASSES["SSLConfig"]
