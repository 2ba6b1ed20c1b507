"""The one client of the model server (and of TF Serving): gRPC stubs, and REST over HTTP.

Addresses default to localhost:8500 (gRPC) and localhost:8501 (REST), overridable with
`TFSP_SERVER` / `TFSP_REST_SERVER` or explicitly. Failures raise ClientError carrying the
status name and the server's message.
"""

import http.client
import json
import os
import urllib.parse

import grpc
import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from serving import tensors
from serving.predict_wire import predict_request_bytes

DEFAULT_SERVER = "localhost:8500"
DEFAULT_REST_SERVER = "localhost:8501"


def server_address(explicit: str | None = None) -> str:
    """gRPC address: explicit, else $TFSP_SERVER, else localhost:8500."""
    return explicit or os.environ.get("TFSP_SERVER") or DEFAULT_SERVER


def rest_address(explicit: str | None = None) -> str:
    """REST address: explicit, else $TFSP_REST_SERVER, else localhost:8501."""
    return explicit or os.environ.get("TFSP_REST_SERVER") or DEFAULT_REST_SERVER


class ClientError(Exception):
    """A failed call: `code` is the gRPC status name (e.g. NOT_FOUND), or HTTP status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def model_spec(
    name: str, version: int | None = None, label: str | None = None, signature: str = ""
) -> model_pb2.ModelSpec:
    """A ModelSpec addressing a version by number, by label, or the latest."""
    if version is not None and label:
        raise ValueError("give a version or a label, not both")
    spec = model_pb2.ModelSpec(name=name, signature_name=signature)
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
        self.address = server_address(address)
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
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        # Predict with a request already serialized by predict_wire (no serializer: bytes).
        self._predict_bytes = self._channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict",
            request_serializer=None,
            response_deserializer=predict_pb2.PredictResponse.FromString,
        )
        self.models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> "ServingClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: object, request: object) -> object:
        try:
            return method(request, timeout=self.timeout)  # type: ignore[operator]
        except grpc.RpcError as exc:
            raise ClientError(exc.code().name, exc.details() or "") from None

    def predict(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        *,
        signature: str = "",
        version: int | None = None,
        label: str | None = None,
        output_filter: list[str] | None = None,
    ) -> tuple[model_pb2.ModelSpec, dict[str, np.ndarray]]:
        """Predict; returns (the ModelSpec that answered, outputs as arrays)."""
        request = predict_pb2.PredictRequest(
            model_spec=model_spec(model, version, label, signature),
            output_filter=output_filter or [],
        )
        response = self._call(self._predict_bytes, predict_request_bytes(request, inputs))
        outputs = {
            key: tensors.to_numpy(key, proto)
            for key, proto in response.outputs.items()  # type: ignore[attr-defined]
        }
        return response.model_spec, outputs  # type: ignore[attr-defined]

    def classify(
        self,
        model: str,
        examples: list[example_pb2.Example],
        *,
        signature: str = "",
        version: int | None = None,
        label: str | None = None,
    ) -> classification_pb2.ClassificationResponse:
        """Classify tf.Examples."""
        request = classification_pb2.ClassificationRequest()
        self._fill_example_request(request, model, examples, signature, version, label)
        return self._call(self.prediction.Classify, request)  # type: ignore[return-value]

    def regress(
        self,
        model: str,
        examples: list[example_pb2.Example],
        *,
        signature: str = "",
        version: int | None = None,
        label: str | None = None,
    ) -> regression_pb2.RegressionResponse:
        """Regress tf.Examples."""
        request = regression_pb2.RegressionRequest()
        self._fill_example_request(request, model, examples, signature, version, label)
        return self._call(self.prediction.Regress, request)  # type: ignore[return-value]

    @staticmethod
    def _fill_example_request(
        request: classification_pb2.ClassificationRequest | regression_pb2.RegressionRequest,
        model: str,
        examples: list[example_pb2.Example],
        signature: str,
        version: int | None,
        label: str | None,
    ) -> None:
        # Classify and Regress requests have the same two fields.
        request.model_spec.CopyFrom(model_spec(model, version, label, signature))
        request.input.example_list.examples.extend(examples)

    def metadata(
        self, model: str, *, version: int | None = None, label: str | None = None
    ) -> tuple[model_pb2.ModelSpec, dict]:
        """(ModelSpec, {signature name: SignatureDef}) of a version."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model_spec(model, version, label), metadata_field=["signature_def"]
        )
        response = self._call(self.prediction.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)  # type: ignore[attr-defined]
        return response.model_spec, dict(signatures.signature_def)  # type: ignore[attr-defined]

    def status(
        self, model: str, *, version: int | None = None, label: str | None = None
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatus."""
        request = get_model_status_pb2.GetModelStatusRequest(
            model_spec=model_spec(model, version, label)
        )
        return self._call(self.models.GetModelStatus, request)  # type: ignore[return-value]

    def reload_config(
        self, config: model_server_config_pb2.ModelServerConfig
    ) -> model_management_pb2.ReloadConfigResponse:
        """HandleReloadConfigRequest."""
        request = model_management_pb2.ReloadConfigRequest(config=config)
        return self._call(self.models.HandleReloadConfigRequest, request)  # type: ignore[return-value]


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
        self.address = rest_address(address)
        self.timeout = timeout

    def request(self, method: str, path: str, body: bytes | str | None = None) -> tuple[int, dict]:
        """One request; returns (HTTP status, decoded JSON body)."""
        host, _, port = self.address.rpartition(":")
        connection = http.client.HTTPConnection(
            host or "localhost", int(port), timeout=self.timeout
        )
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
