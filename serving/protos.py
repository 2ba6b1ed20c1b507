"""TF Serving's messages, rebuilt from their public definitions so that nothing imports TensorFlow.

Two sets, described in one table format and built into one private descriptor pool:
- config messages the `tensorflow-serving-api` package lacks: BatchingParameters
  (servables/tensorflow/session_bundle_config.proto), MonitoringConfig/PrometheusConfig
  (config/monitoring_config.proto) and SSLConfig (config/ssl_config.proto), so text files
  written for `tensorflow_model_server` parse unchanged;
- the gRPC API's requests and responses (tensorflow_serving/apis/*.proto and the TensorFlow
  messages they carry: TensorProto, Example, SignatureDef, ModelServerConfig, ...), for the
  light client (serving/client.py), which must not need a 2 GB TensorFlow install.

Packages, message names, field names, numbers, types and oneofs are TF Serving's, so binary,
text and JSON encodings match; tests/test_protos.py compares every field with the official
descriptors. Fields left out, each never sent by our client nor answered by a server for the
models we serve (a message that has them still parses: protobuf keeps them as unknown fields
and writes them back unchanged):
- TensorProto.resource_handle_val (14) and variant_val (15): resource and variant tensors;
- PredictRequest.predict_streamed_options (5), client_id (6), request_options (7): fields for
  TF Serving's streamed/LLM prediction, which it ignores on plain Predict;
- TensorInfo.composite_tensor (5): signatures of ragged/sparse composite tensors, and the
  TypeSpecProto/StructuredValue tree behind it.
"""

from google.protobuf import (
    any_pb2,
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    wrappers_pb2,
)

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "double": _F.TYPE_DOUBLE,
    "float": _F.TYPE_FLOAT,
    "int64": _F.TYPE_INT64,
    "uint64": _F.TYPE_UINT64,
    "int32": _F.TYPE_INT32,
    "uint32": _F.TYPE_UINT32,
    "bool": _F.TYPE_BOOL,
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
}
REPEATED = "repeated"

# A field: (name, number, type, *flags). The type is a scalar name, a message or enum's full
# name with a leading dot, or "map<key scalar,value type>". Flags: REPEATED, "oneof:<name>",
# "json:<name>" (a json_name option; protoc's default is the name in lowerCamelCase).
Field = tuple
# A file: (file name, package, {message name: [fields]}, {enum name: [(value name, number)]}).
# Nested messages and enums are named "Outer.Inner".

_INT64_VALUE = ".google.protobuf.Int64Value"
_CONFIG_FILES = (
    (
        "tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        "tensorflow.serving",
        {
            "BatchingParameters": [
                ("max_batch_size", 1, _INT64_VALUE),
                ("batch_timeout_micros", 2, _INT64_VALUE),
                ("max_enqueued_batches", 3, _INT64_VALUE),
                ("num_batch_threads", 4, _INT64_VALUE),
                ("thread_pool_name", 5, ".google.protobuf.StringValue"),
                ("allowed_batch_sizes", 6, "int64", REPEATED),
                ("pad_variable_length_inputs", 7, "bool"),
                ("enable_large_batch_splitting", 8, ".google.protobuf.BoolValue"),
                ("max_execution_batch_size", 9, _INT64_VALUE),
            ],
        },
        {},
    ),
    (
        "tensorflow_serving/config/monitoring_config.proto",
        "tensorflow.serving",
        {
            "PrometheusConfig": [("enable", 1, "bool"), ("path", 2, "string")],
            "MonitoringConfig": [
                ("prometheus_config", 1, ".tensorflow.serving.PrometheusConfig"),
            ],
        },
        {},
    ),
    (
        "tensorflow_serving/config/ssl_config.proto",
        "tensorflow.serving",
        {
            "SSLConfig": [
                ("server_key", 1, "string"),
                ("server_cert", 2, "string"),
                ("custom_ca", 3, "string"),
                ("client_verify", 4, "bool"),
            ],
        },
        {},
    ),
)

_TENSOR = ".tensorflow.TensorProto"
_SHAPE = ".tensorflow.TensorShapeProto"
_DTYPE = ".tensorflow.DataType"
_SPEC = ".tensorflow.serving.ModelSpec"
_INPUT = ".tensorflow.serving.Input"
_VERSION_POLICY = ".tensorflow.serving.FileSystemStoragePathSourceConfig.ServableVersionPolicy"
# DataType: the base types, then each one's reference type at +100 (types.proto).
_BASE_DTYPES = (
    "FLOAT DOUBLE INT32 UINT8 INT16 INT8 STRING COMPLEX64 INT64 BOOL QINT8 QUINT8 QINT32 "
    "BFLOAT16 QINT16 QUINT16 UINT16 COMPLEX128 HALF RESOURCE VARIANT UINT32 UINT64 FLOAT8_E5M2 "
    "FLOAT8_E4M3FN FLOAT8_E4M3FNUZ FLOAT8_E4M3B11FNUZ FLOAT8_E5M2FNUZ INT4 UINT4 INT2 UINT2 "
    "FLOAT4_E2M1FN"
).split()
_DATA_TYPES = [
    ("DT_INVALID", 0),
    *((f"DT_{name}", number) for number, name in enumerate(_BASE_DTYPES, start=1)),
    *((f"DT_{name}_REF", number + 100) for number, name in enumerate(_BASE_DTYPES, start=1)),
]

_API_FILES = (
    (
        "tfsp/rebuilt/tensorflow_error_codes.proto",
        "tensorflow.error",
        {},
        {
            "Code": [
                ("OK", 0),
                ("CANCELLED", 1),
                ("UNKNOWN", 2),
                ("INVALID_ARGUMENT", 3),
                ("DEADLINE_EXCEEDED", 4),
                ("NOT_FOUND", 5),
                ("ALREADY_EXISTS", 6),
                ("PERMISSION_DENIED", 7),
                ("UNAUTHENTICATED", 16),
                ("RESOURCE_EXHAUSTED", 8),
                ("FAILED_PRECONDITION", 9),
                ("ABORTED", 10),
                ("OUT_OF_RANGE", 11),
                ("UNIMPLEMENTED", 12),
                ("INTERNAL", 13),
                ("UNAVAILABLE", 14),
                ("DATA_LOSS", 15),
                ("DO_NOT_USE_RESERVED_FOR_FUTURE_EXPANSION_USE_DEFAULT_IN_SWITCH_INSTEAD_", 20),
            ],
        },
    ),
    (
        "tfsp/rebuilt/tensorflow.proto",
        "tensorflow",
        {
            "TensorShapeProto": [
                ("dim", 2, f"{_SHAPE}.Dim", REPEATED),
                ("unknown_rank", 3, "bool"),
            ],
            "TensorShapeProto.Dim": [("size", 1, "int64"), ("name", 2, "string")],
            "TensorProto": [
                ("dtype", 1, _DTYPE),
                ("tensor_shape", 2, _SHAPE),
                ("version_number", 3, "int32"),
                ("tensor_content", 4, "bytes"),
                ("half_val", 13, "int32", REPEATED),
                ("float_val", 5, "float", REPEATED),
                ("double_val", 6, "double", REPEATED),
                ("int_val", 7, "int32", REPEATED),
                ("string_val", 8, "bytes", REPEATED),
                ("scomplex_val", 9, "float", REPEATED),
                ("int64_val", 10, "int64", REPEATED),
                ("bool_val", 11, "bool", REPEATED),
                ("dcomplex_val", 12, "double", REPEATED),
                ("uint32_val", 16, "uint32", REPEATED),
                ("uint64_val", 17, "uint64", REPEATED),
                ("float8_val", 18, "bytes"),
            ],
            "Example": [("features", 1, ".tensorflow.Features")],
            "Features": [("feature", 1, "map<string,.tensorflow.Feature>")],
            "Feature": [
                ("bytes_list", 1, ".tensorflow.BytesList", "oneof:kind"),
                ("float_list", 2, ".tensorflow.FloatList", "oneof:kind"),
                ("int64_list", 3, ".tensorflow.Int64List", "oneof:kind"),
            ],
            "BytesList": [("value", 1, "bytes", REPEATED)],
            "FloatList": [("value", 1, "float", REPEATED)],
            "Int64List": [("value", 1, "int64", REPEATED)],
            "SignatureDef": [
                ("inputs", 1, "map<string,.tensorflow.TensorInfo>"),
                ("outputs", 2, "map<string,.tensorflow.TensorInfo>"),
                ("method_name", 3, "string"),
                ("defaults", 4, f"map<string,{_TENSOR}>"),
            ],
            "TensorInfo": [
                ("name", 1, "string", "oneof:encoding"),
                ("coo_sparse", 4, ".tensorflow.TensorInfo.CooSparse", "oneof:encoding"),
                ("dtype", 2, _DTYPE),
                ("tensor_shape", 3, _SHAPE),
            ],
            "TensorInfo.CooSparse": [
                ("values_tensor_name", 1, "string"),
                ("indices_tensor_name", 2, "string"),
                ("dense_shape_tensor_name", 3, "string"),
            ],
        },
        {"DataType": _DATA_TYPES},
    ),
    (
        "tfsp/rebuilt/tensorflow_serving.proto",
        "tensorflow.serving",
        {
            "ModelSpec": [
                ("name", 1, "string"),
                ("version", 2, _INT64_VALUE, "oneof:version_choice"),
                ("version_label", 4, "string", "oneof:version_choice"),
                ("signature_name", 3, "string"),
            ],
            "PredictRequest": [
                ("model_spec", 1, _SPEC),
                ("inputs", 2, f"map<string,{_TENSOR}>"),
                ("output_filter", 3, "string", REPEATED),
            ],
            "PredictResponse": [
                ("model_spec", 2, _SPEC),
                ("outputs", 1, f"map<string,{_TENSOR}>"),
            ],
            "Input": [
                ("example_list", 1, ".tensorflow.serving.ExampleList", "oneof:kind"),
                (
                    "example_list_with_context",
                    2,
                    ".tensorflow.serving.ExampleListWithContext",
                    "oneof:kind",
                ),
            ],
            "ExampleList": [("examples", 1, ".tensorflow.Example", REPEATED)],
            "ExampleListWithContext": [
                ("examples", 1, ".tensorflow.Example", REPEATED),
                ("context", 2, ".tensorflow.Example"),
            ],
            "ClassificationRequest": [("model_spec", 1, _SPEC), ("input", 2, _INPUT)],
            "ClassificationResponse": [
                ("model_spec", 2, _SPEC),
                ("result", 1, ".tensorflow.serving.ClassificationResult"),
            ],
            "ClassificationResult": [
                ("classifications", 1, ".tensorflow.serving.Classifications", REPEATED),
            ],
            "Classifications": [("classes", 1, ".tensorflow.serving.Class", REPEATED)],
            "Class": [("label", 1, "string"), ("score", 2, "float")],
            "RegressionRequest": [("model_spec", 1, _SPEC), ("input", 2, _INPUT)],
            "RegressionResponse": [
                ("model_spec", 2, _SPEC),
                ("result", 1, ".tensorflow.serving.RegressionResult"),
            ],
            "RegressionResult": [("regressions", 1, ".tensorflow.serving.Regression", REPEATED)],
            "Regression": [("value", 1, "float")],
            "MultiInferenceRequest": [
                ("tasks", 1, ".tensorflow.serving.InferenceTask", REPEATED),
                ("input", 2, _INPUT),
            ],
            "InferenceTask": [("model_spec", 1, _SPEC), ("method_name", 2, "string")],
            "MultiInferenceResponse": [
                ("results", 1, ".tensorflow.serving.InferenceResult", REPEATED),
            ],
            "InferenceResult": [
                ("model_spec", 1, _SPEC),
                (
                    "classification_result",
                    2,
                    ".tensorflow.serving.ClassificationResult",
                    "oneof:result",
                ),
                ("regression_result", 3, ".tensorflow.serving.RegressionResult", "oneof:result"),
            ],
            "GetModelMetadataRequest": [
                ("model_spec", 1, _SPEC),
                ("metadata_field", 2, "string", REPEATED),
            ],
            "GetModelMetadataResponse": [
                ("model_spec", 1, _SPEC),
                ("metadata", 2, "map<string,.google.protobuf.Any>"),
            ],
            "SignatureDefMap": [("signature_def", 1, "map<string,.tensorflow.SignatureDef>")],
            "GetModelStatusRequest": [("model_spec", 1, _SPEC)],
            "GetModelStatusResponse": [
                (
                    "model_version_status",
                    1,
                    ".tensorflow.serving.ModelVersionStatus",
                    REPEATED,
                    "json:model_version_status",
                ),
            ],
            "ModelVersionStatus": [
                ("version", 1, "int64"),
                ("state", 2, ".tensorflow.serving.ModelVersionStatus.State"),
                ("status", 3, ".tensorflow.serving.StatusProto"),
            ],
            "StatusProto": [
                ("error_code", 1, ".tensorflow.error.Code", "json:error_code"),
                ("error_message", 2, "string", "json:error_message"),
            ],
            "ReloadConfigRequest": [
                ("config", 1, ".tensorflow.serving.ModelServerConfig"),
                ("metric_names", 2, "string", REPEATED),
            ],
            "ReloadConfigResponse": [
                ("status", 1, ".tensorflow.serving.StatusProto"),
                ("metric", 2, ".tensorflow.serving.Metric", REPEATED),
            ],
            "Metric": [
                ("name", 1, "string"),
                ("int64_value_increase", 2, "int64", "oneof:value_increase"),
            ],
            "ModelServerConfig": [
                ("model_config_list", 1, ".tensorflow.serving.ModelConfigList", "oneof:config"),
                ("custom_model_config", 2, ".google.protobuf.Any", "oneof:config"),
            ],
            "ModelConfigList": [("config", 1, ".tensorflow.serving.ModelConfig", REPEATED)],
            "ModelConfig": [
                ("name", 1, "string"),
                ("base_path", 2, "string"),
                ("model_type", 3, ".tensorflow.serving.ModelType"),
                ("model_platform", 4, "string"),
                ("model_version_policy", 7, _VERSION_POLICY),
                ("version_labels", 8, "map<string,int64>"),
                ("logging_config", 6, ".tensorflow.serving.LoggingConfig"),
            ],
            # Only a namespace here: the client never sends the source's own config.
            "FileSystemStoragePathSourceConfig": [],
            "FileSystemStoragePathSourceConfig.ServableVersionPolicy": [
                ("latest", 100, f"{_VERSION_POLICY}.Latest", "oneof:policy_choice"),
                ("all", 101, f"{_VERSION_POLICY}.All", "oneof:policy_choice"),
                ("specific", 102, f"{_VERSION_POLICY}.Specific", "oneof:policy_choice"),
            ],
            "FileSystemStoragePathSourceConfig.ServableVersionPolicy.Latest": [
                ("num_versions", 1, "uint32"),
            ],
            "FileSystemStoragePathSourceConfig.ServableVersionPolicy.All": [],
            "FileSystemStoragePathSourceConfig.ServableVersionPolicy.Specific": [
                ("versions", 1, "int64", REPEATED),
            ],
            "LoggingConfig": [
                ("log_collector_config", 1, ".tensorflow.serving.LogCollectorConfig"),
                ("sampling_config", 2, ".tensorflow.serving.SamplingConfig"),
                ("custom_logging_config", 3, ".google.protobuf.Any"),
            ],
            "LogCollectorConfig": [("type", 1, "string"), ("filename_prefix", 2, "string")],
            "SamplingConfig": [("sampling_rate", 1, "double"), ("attributes", 2, "int32")],
        },
        {
            "ModelVersionStatus.State": [
                ("UNKNOWN", 0),
                ("START", 10),
                ("LOADING", 20),
                ("AVAILABLE", 30),
                ("UNLOADING", 40),
                ("END", 50),
            ],
            "ModelType": [("MODEL_TYPE_UNSPECIFIED", 0), ("TENSORFLOW", 1), ("OTHER", 2)],
        },
    ),
)


def _json_name(name: str) -> str:
    return "".join(part if i == 0 else part.capitalize() for i, part in enumerate(name.split("_")))


def _entry_name(field: str) -> str:
    """protoc's name for a map field's entry message: `version_labels` -> VersionLabelsEntry."""
    return "".join(part.capitalize() for part in field.split("_")) + "Entry"


def _set_type(field: descriptor_pb2.FieldDescriptorProto, kind: str, enums: set[str]) -> None:
    if kind in _SCALARS:
        field.type = _SCALARS[kind]
    else:
        field.type = _F.TYPE_ENUM if kind in enums else _F.TYPE_MESSAGE
        field.type_name = kind


def _add_fields(
    message: descriptor_pb2.DescriptorProto, full_name: str, fields: list[Field], enums: set[str]
) -> None:
    oneofs: dict[str, int] = {}
    for name, number, kind, *flags in fields:
        field = message.field.add(name=name, number=number, json_name=_json_name(name))
        field.label = _F.LABEL_REPEATED if REPEATED in flags else _F.LABEL_OPTIONAL
        if kind.startswith("map<"):
            # A map is a repeated nested XxxEntry message (key = 1, value = 2, map_entry set).
            key_kind, value_kind = kind[len("map<") : -1].split(",")
            entry = message.nested_type.add(name=_entry_name(name))
            entry.options.map_entry = True
            for part, number_in_entry, part_kind in (
                ("key", 1, key_kind),
                ("value", 2, value_kind),
            ):
                entry_field = entry.field.add(
                    name=part, number=number_in_entry, json_name=part, label=_F.LABEL_OPTIONAL
                )
                _set_type(entry_field, part_kind, enums)
            field.label = _F.LABEL_REPEATED
            field.type = _F.TYPE_MESSAGE
            field.type_name = f".{full_name}.{entry.name}"
        else:
            _set_type(field, kind, enums)
        for flag in flags:
            if flag.startswith("json:"):
                field.json_name = flag[len("json:") :]
            if flag.startswith("oneof:"):
                group = flag[len("oneof:") :]
                if group not in oneofs:
                    oneofs[group] = len(message.oneof_decl)
                    message.oneof_decl.add(name=group)
                field.oneof_index = oneofs[group]


def _file_proto(
    name: str, package: str, messages: dict, enums_here: dict, deps: list[str], enums: set[str]
) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name=name, package=package, syntax="proto3", dependency=deps
    )
    made: dict[str, descriptor_pb2.DescriptorProto] = {}

    def container(dotted: str) -> object:
        outer = dotted.rpartition(".")[0]
        return made[outer].nested_type if outer else proto.message_type

    for dotted in sorted(messages, key=lambda d: d.count(".")):  # outer before inner
        made[dotted] = container(dotted).add(name=dotted.rpartition(".")[2])
    for dotted, values in enums_here.items():
        outer = dotted.rpartition(".")[0]
        enum = (made[outer].enum_type if outer else proto.enum_type).add(
            name=dotted.rpartition(".")[2]
        )
        for value_name, number in values:
            enum.value.add(name=value_name, number=number)
    for dotted, fields in messages.items():
        _add_fields(made[dotted], f"{package}.{dotted}", fields, enums)
    return proto


def _build() -> descriptor_pool.DescriptorPool:
    # A private pool: TensorFlow's and TF Serving's own files, when a process imports them
    # too (the server does), live in the default pool and never clash with these.
    pool = descriptor_pool.DescriptorPool()
    added = []
    for well_known in (wrappers_pb2, any_pb2):
        file_proto = descriptor_pb2.FileDescriptorProto()
        well_known.DESCRIPTOR.CopyToProto(file_proto)
        pool.Add(file_proto)
        added.append(file_proto.name)
    files = _API_FILES + _CONFIG_FILES  # each file may use the ones before it
    enums = {f".{package}.{name}" for _, package, _, file_enums in files for name in file_enums}
    for name, package, messages, file_enums in files:
        pool.Add(_file_proto(name, package, messages, file_enums, list(added), enums))
        added.append(name)
    return pool


POOL = _build()


def message_class(full_name: str) -> type:
    """The class of a rebuilt message, e.g. message_class("tensorflow.serving.PredictRequest")."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(full_name))


def enum_descriptor(full_name: str) -> object:
    """A rebuilt enum's descriptor (its `values_by_name` / `values_by_number`)."""
    return POOL.FindEnumTypeByName(full_name)


BatchingParameters = message_class("tensorflow.serving.BatchingParameters")
PrometheusConfig = message_class("tensorflow.serving.PrometheusConfig")
MonitoringConfig = message_class("tensorflow.serving.MonitoringConfig")
SSLConfig = message_class("tensorflow.serving.SSLConfig")

# The gRPC API, for the light client. Requests and responses are wire-compatible with
# tensorflow_serving.apis' classes but are not those classes: convert with
# `Cls.FromString(other.SerializeToString())` where one is needed.
DATA_TYPE = enum_descriptor("tensorflow.DataType")
TensorProto = message_class("tensorflow.TensorProto")
TensorShapeProto = message_class("tensorflow.TensorShapeProto")
Example = message_class("tensorflow.Example")
SignatureDef = message_class("tensorflow.SignatureDef")
ModelSpec = message_class("tensorflow.serving.ModelSpec")
PredictRequest = message_class("tensorflow.serving.PredictRequest")
PredictResponse = message_class("tensorflow.serving.PredictResponse")
ClassificationRequest = message_class("tensorflow.serving.ClassificationRequest")
ClassificationResponse = message_class("tensorflow.serving.ClassificationResponse")
RegressionRequest = message_class("tensorflow.serving.RegressionRequest")
RegressionResponse = message_class("tensorflow.serving.RegressionResponse")
MultiInferenceRequest = message_class("tensorflow.serving.MultiInferenceRequest")
MultiInferenceResponse = message_class("tensorflow.serving.MultiInferenceResponse")
GetModelMetadataRequest = message_class("tensorflow.serving.GetModelMetadataRequest")
GetModelMetadataResponse = message_class("tensorflow.serving.GetModelMetadataResponse")
SignatureDefMap = message_class("tensorflow.serving.SignatureDefMap")
GetModelStatusRequest = message_class("tensorflow.serving.GetModelStatusRequest")
GetModelStatusResponse = message_class("tensorflow.serving.GetModelStatusResponse")
ModelVersionStatus = message_class("tensorflow.serving.ModelVersionStatus")
ReloadConfigRequest = message_class("tensorflow.serving.ReloadConfigRequest")
ReloadConfigResponse = message_class("tensorflow.serving.ReloadConfigResponse")
ModelServerConfig = message_class("tensorflow.serving.ModelServerConfig")
