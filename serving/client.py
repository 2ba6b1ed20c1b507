"""The one client of the model server (and of TF Serving): gRPC stubs, and REST over HTTP.

It needs neither TensorFlow nor `tensorflow-serving-api`: messages are tfsp.serving.protos'
rebuilt classes, wire-compatible with TF Serving's (tests/test_protos.py), so `pip install
tfsp` without the [full] extra is enough to call a server.

Addresses default to localhost:8500 (gRPC) and localhost:8501 (REST), overridable with
`TFSP_SERVER` / `TFSP_REST_SERVER` or explicitly. Failures raise ClientError carrying the
status name and the server's message.
"""

import http.client
import json
import os
import urllib.parse
from typing import TypeVar

import grpc
import numpy as np
from google.protobuf.message import Message

from tfsp.serving import protos, tensors
from tfsp.serving.predict_wire import predict_request_bytes

M = TypeVar("M", bound=Message)
_PREDICTION = "/tensorflow.serving.PredictionService/"
_MODELS = "/tensorflow.serving.ModelService/"
# Every method of the two services: (path prefix, response class).
_METHODS = {
    "Predict": (_PREDICTION, protos.PredictResponse),
    "Classify": (_PREDICTION, protos.ClassificationResponse),
    "Regress": (_PREDICTION, protos.RegressionResponse),
    "MultiInference": (_PREDICTION, protos.MultiInferenceResponse),
    "GetModelMetadata": (_PREDICTION, protos.GetModelMetadataResponse),
    "GetModelStatus": (_MODELS, protos.GetModelStatusResponse),
    "HandleReloadConfigRequest": (_MODELS, protos.ReloadConfigResponse),
}


def _serialize(request: Message | bytes) -> bytes:
    # Bytes pass through: Predict requests come already serialized from predict_wire.
    return request if isinstance(request, bytes) else request.SerializeToString()


DEFAULT_SERVER = "localhost:8500"
DEFAULT_REST_SERVER = "localhost:8501"


def server_address(explicit: str | None = None) -> str:
    """gRPC address: explicit, else $TFSP_SERVER, else localhost:8500."""
    return explicit or os.environ.get("TFSP_SERVER") or DEFAULT_SERVER


def rest_address(explicit: str | None = None) -> str:
    """REST address: explicit, else $TFSP_REST_SERVER, else localhost:8501."""
    return explicit or os.environ.get("TFSP_REST_SERVER") or DEFAULT_REST_SERVER


def split_host_port(address: str) -> tuple[str, int]:
    """(host, port) of `host:port` (an IPv6 host in brackets; the host may be empty);
    ValueError if the port is missing or outside 1-65535, or an IPv6 host is not bracketed
    (gRPC would read `fe80::1:8500` as a host without a port)."""
    host, _, port = address.rpartition(":")
    if not port.isdecimal() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1], int(port)
    if ":" in host or "[" in host or "]" in host:
        raise ValueError(
            f"{address!r} is not host:port (an IPv6 host goes in brackets: [::1]:8500)"
        )
    return host, int(port)


# gRPC's resolvers (naming's URI schemes); a target without one is host:port.
_GRPC_SCHEMES = ("dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:", "vsock:")


def check_grpc_target(target: str) -> None:
    """ValueError for a target gRPC would misread: a bare host (gRPC dials port 443), a port
    outside 1-65535 (gRPC wraps it round), an empty host, or an http:// URL."""
    if target.startswith(_GRPC_SCHEMES):
        return
    if "://" in target:
        raise ValueError(
            f"{target!r}: gRPC takes host:port or dns:///name:port, not a "
            f"{target.split('://', 1)[0]}:// URL"
        )
    host, _ = split_host_port(target)
    if not host:
        raise ValueError(f"{target!r} names no host")


class ClientError(Exception):
    """A failed call: `code` is the gRPC status name (e.g. NOT_FOUND), or HTTP status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def model_spec(
    name: str, version: int | None = None, label: str | None = None, signature: str = ""
) -> protos.ModelSpec:
    """A ModelSpec addressing a version by number, by label, or the latest."""
    if version is not None and label:
        raise ValueError("give a version or a label, not both")
    spec = protos.ModelSpec(name=name, signature_name=signature)
    if version is not None:
        spec.version.value = version
    elif label:
        spec.version_label = label
    return spec


class ServingClient:
    """gRPC client for PredictionService and ModelService."""

    def __init__(
        self,
        address: str | None = None,
        timeout: float = 30.0,
        max_message_bytes: int = 2**31 - 1,
    ) -> None:
        """ValueError if the address is not a gRPC target (see check_grpc_target)."""
        self.address = server_address(address)
        check_grpc_target(self.address)
        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            self.address,
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                # With a target resolving to several servers (dns:///<headless service>:8500,
                # or ipv4:a:p,b:p) spread calls over all of them; gRPC's default pick_first
                # would send every call to one replica. Harmless for a single address.
                ("grpc.lb_policy_name", "round_robin"),
            ],
        )
        self._stubs = {
            name: self._channel.unary_unary(
                path + name, request_serializer=_serialize, response_deserializer=cls.FromString
            )
            for name, (path, cls) in _METHODS.items()
        }

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> "ServingClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: Message | bytes) -> Message:
        try:
            return self._stubs[method](request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise ClientError(exc.code().name, exc.details() or "") from None

    def send(self, method: str, request: Message | bytes) -> Message:
        """Call one method by name (e.g. "Predict") with a request of any class that has the
        method's request type (TensorFlow's own, a replayed warmup record's, or bytes);
        returns the rebuilt response class."""
        if method not in self._stubs:
            raise ValueError(f"unknown method {method!r}; one of {sorted(self._stubs)}")
        return self._call(method, request)

    def predict(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        *,
        signature: str = "",
        version: int | None = None,
        label: str | None = None,
        output_filter: list[str] | None = None,
    ) -> tuple[protos.ModelSpec, dict[str, np.ndarray]]:
        """Predict; returns (the ModelSpec that answered, outputs as arrays)."""
        request = protos.PredictRequest(
            model_spec=model_spec(model, version, label, signature),
            output_filter=output_filter or [],
        )
        response = self._call("Predict", predict_request_bytes(request, inputs))
        outputs = {
            key: tensors.to_numpy(key, proto)
            for key, proto in response.outputs.items()  # type: ignore[attr-defined]
        }
        return response.model_spec, outputs  # type: ignore[attr-defined]

    def classify(
        self, model: str, examples: list[Message], **which: object
    ) -> protos.ClassificationResponse:
        """Classify tf.Examples (rebuilt or TensorFlow's own `tf.train.Example`); `which`:
        signature, version or label, as `predict` takes them."""
        request = protos.ClassificationRequest()
        return self._on_examples("Classify", request, model, examples, **which)  # type: ignore[return-value]

    def regress(
        self, model: str, examples: list[Message], **which: object
    ) -> protos.RegressionResponse:
        """Regress tf.Examples, as `classify` does."""
        request = protos.RegressionRequest()
        return self._on_examples("Regress", request, model, examples, **which)  # type: ignore[return-value]

    def multi_inference(self, request: Message) -> protos.MultiInferenceResponse:
        """MultiInference: several classify/regress tasks of one model on the same input."""
        return self._call(  # type: ignore[return-value]
            "MultiInference", rebuilt(request, protos.MultiInferenceRequest)
        )

    def _on_examples(
        self,
        method: str,
        request: protos.ClassificationRequest | protos.RegressionRequest,
        model: str,
        examples: list[Message],
        *,
        signature: str = "",
        version: int | None = None,
        label: str | None = None,
    ) -> Message:
        # Classify and Regress requests have the same two fields.
        request.model_spec.CopyFrom(model_spec(model, version, label, signature))
        request.input.example_list.examples.extend(rebuilt(e, protos.Example) for e in examples)
        return self._call(method, request)

    def metadata(
        self, model: str, *, version: int | None = None, label: str | None = None
    ) -> tuple[protos.ModelSpec, dict]:
        """(ModelSpec, {signature name: SignatureDef}) of a version."""
        request = protos.GetModelMetadataRequest(
            model_spec=model_spec(model, version, label), metadata_field=["signature_def"]
        )
        response = self._call("GetModelMetadata", request)
        signatures = protos.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)  # type: ignore[attr-defined]
        return response.model_spec, dict(signatures.signature_def)  # type: ignore[attr-defined]

    def status(
        self, model: str, *, version: int | None = None, label: str | None = None
    ) -> protos.GetModelStatusResponse:
        """GetModelStatus."""
        request = protos.GetModelStatusRequest(model_spec=model_spec(model, version, label))
        return self._call("GetModelStatus", request)  # type: ignore[return-value]

    def reload_config(self, config: Message) -> protos.ReloadConfigResponse:
        """HandleReloadConfigRequest with a ModelServerConfig (rebuilt or TF Serving's)."""
        request = protos.ReloadConfigRequest(config=rebuilt(config, protos.ModelServerConfig))
        return self._call("HandleReloadConfigRequest", request)  # type: ignore[return-value]


def rebuilt(message: Message, cls: type[M]) -> M:
    """`message` as the rebuilt class `cls`: itself, or re-read from its bytes if it is
    another class of the same message (TensorFlow's, say)."""
    if isinstance(message, cls):
        return message
    name = message.DESCRIPTOR.full_name
    if name != cls.DESCRIPTOR.full_name:
        raise TypeError(f"expected a {cls.DESCRIPTOR.full_name}, got a {name}")
    return cls.FromString(message.SerializeToString())


def _model_path(model: str, version: int | None, label: str | None) -> str:
    path = f"/v1/models/{urllib.parse.quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{version}"
    elif label:
        path += f"/labels/{urllib.parse.quote(label, safe='')}"
    return path


class RestClient:
    """A plain HTTP/JSON client of the REST API (http.client, no framework)."""

    def __init__(self, address: str | None = None, timeout: float = 30.0) -> None:
        """ValueError if the address is not host:port (an IPv6 host in brackets)."""
        self.address = rest_address(address)
        self.timeout = timeout
        host, self._port = split_host_port(self.address)
        self._host = host or "localhost"

    def request(self, method: str, path: str, body: bytes | str | None = None) -> tuple[int, dict]:
        """One request; returns (HTTP status, decoded JSON body)."""
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            payload = body.encode() if isinstance(body, str) else body
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except OSError as exc:
            raise ClientError("UNAVAILABLE", f"cannot reach {self.address}: {exc}") from None
        finally:
            connection.close()
        try:
            decoded = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            decoded = {"error": raw.decode(errors="replace")}
        return response.status, decoded

    def _ok(self, method: str, path: str, body: dict | None = None) -> dict:
        status, decoded = self.request(method, path, json.dumps(body) if body is not None else None)
        if status != 200:
            raise ClientError(f"HTTP {status}", str(decoded.get("error", decoded)))
        return decoded

    def predict(
        self,
        model: str,
        *,
        instances: object = None,
        inputs: object = None,
        signature: str = "",
        version: int | None = None,
        label: str | None = None,
    ) -> dict:
        """POST :predict with row `instances` or columnar `inputs`."""
        body: dict = {"instances": instances} if inputs is None else {"inputs": inputs}
        if signature:
            body["signature_name"] = signature
        return self._ok("POST", _model_path(model, version, label) + ":predict", body)

    def status(self, model: str, *, version: int | None = None, label: str | None = None) -> dict:
        """GET the model status."""
        return self._ok("GET", _model_path(model, version, label))

    def metadata(self, model: str, *, version: int | None = None, label: str | None = None) -> dict:
        """GET the model metadata."""
        return self._ok("GET", _model_path(model, version, label) + "/metadata")
