"""The protocol-neutral data plane: every API's logic once, for the gRPC and REST adapters.

Inputs arrive already decoded (numpy arrays for Predict, `Input` protos for Classify and
Regress); the adapters only translate wire formats. Errors are ServingError with the gRPC
status code TF Serving uses; anything else is logged here and reported as INTERNAL without
details, so no traceback reaches a client.
"""

import asyncio
import dataclasses
import logging
from collections.abc import Callable

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    input_pb2,
    model_pb2,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from serving import tensors
from serving.errors import ServingError, failed_precondition, invalid
from serving.manager import Loaded, ModelManager

log = logging.getLogger("serving")

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
SIGNATURE_DEF_FIELD = "signature_def"


@dataclasses.dataclass(frozen=True)
class SpecRef:
    """Which model version a request addresses."""

    name: str
    version: int | None = None
    label: str | None = None

    @classmethod
    def from_proto(cls, spec: model_pb2.ModelSpec) -> "SpecRef":
        """From a request's ModelSpec (version and label are a oneof)."""
        which = spec.WhichOneof("version_choice")
        return cls(
            name=spec.name,
            version=spec.version.value if which == "version" else None,
            label=spec.version_label if which == "version_label" else None,
        )


@dataclasses.dataclass
class Prediction:
    """A Predict result: which version answered and its output arrays."""

    name: str
    version: int
    signature: str
    outputs: dict[str, np.ndarray]

    def fill_model_spec(self, spec: model_pb2.ModelSpec) -> None:
        """Write the ModelSpec TF Serving echoes in responses into a response's field."""
        spec.name = self.name
        spec.version.value = self.version
        spec.signature_name = self.signature


def _model_spec(name: str, version: int, signature: str = "") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature)
    spec.version.value = version
    return spec


def _clean_tf_message(message: str) -> str:
    """The useful line(s) of a TF error, without the Python stack TF embeds in it."""
    kept = []
    for line in message.splitlines():
        stripped = line.strip()
        if (
            not stripped
            or line[:1].isspace()
            or stripped.startswith(("Graph execution error", "Detected at node", "[["))
        ):
            continue
        kept.append(stripped)
    text = " ".join(kept) or "the model failed on this input"
    return text.split(" [Op:")[0][:1000]


def execution_error(exc: BaseException) -> ServingError:
    """Map whatever a signature call raised to a client-safe ServingError."""
    if isinstance(exc, ServingError):
        return exc
    if isinstance(exc, tf.errors.OpError):
        try:
            code = next(c for c in grpc.StatusCode if c.value[0] == exc.error_code)
        except StopIteration:
            code = grpc.StatusCode.UNKNOWN
        return ServingError(code, _clean_tf_message(exc.message))
    log.error("model call failed", exc_info=exc)
    return ServingError(grpc.StatusCode.INTERNAL, "internal error while running the model")


class DataPlane:
    """Predict, Classify, Regress, MultiInference, metadata, status and config reload."""

    def __init__(
        self,
        manager: ModelManager,
        reload: Callable[[model_server_config_pb2.ModelServerConfig], None] | None = None,
    ) -> None:
        self.manager = manager
        self._reload = reload

    # ---- lookups ----

    def resolve(self, spec: SpecRef) -> Loaded:
        """The loaded version for a spec (NOT_FOUND otherwise)."""
        if not spec.name:
            raise invalid("Missing model name in request.")
        return self.manager.resolve(spec.name, spec.version, spec.label)

    @staticmethod
    def predict_signature(
        loaded: Loaded, signature_name: str
    ) -> tuple[str, meta_graph_pb2.SignatureDef]:
        """A callable signature by name (default serving_default), as Predict looks it up."""
        name = signature_name or DEFAULT_SIGNATURE
        servable = loaded.servable
        if name not in servable.functions or name not in servable.signature_defs:
            raise failed_precondition(f'Serving signature key "{name}" not found.')
        return name, servable.signature_defs[name]

    def input_infos(
        self, spec: SpecRef, signature_name: str
    ) -> dict[str, meta_graph_pb2.TensorInfo]:
        """The signature's inputs (REST needs their dtypes to decode JSON)."""
        _, signature = self.predict_signature(self.resolve(spec), signature_name)
        return dict(signature.inputs)

    # ---- execution ----

    @staticmethod
    async def _run(
        loaded: Loaded, signature: str, inputs: dict[str, np.ndarray], keys: list[str] | None
    ) -> dict[str, np.ndarray]:
        try:
            return await loaded.runner.submit_async(signature, inputs, keys)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise execution_error(exc) from None

    async def predict(
        self,
        spec: SpecRef,
        signature_name: str,
        inputs: dict[str, np.ndarray],
        output_filter: list[str] | None = None,
    ) -> Prediction:
        """Validate inputs against the signature, run it, keep the filtered outputs."""
        loaded = self.resolve(spec)
        name, signature = self.predict_signature(loaded, signature_name)
        expected = signature.inputs
        if len(inputs) != len(expected) or any(key not in expected for key in inputs):
            sent, wanted = sorted(inputs), sorted(expected)
            extra = sorted(set(inputs) - set(expected))
            missing = sorted(set(expected) - set(inputs))
            raise invalid(
                f"input size does not match signature: {len(sent)}!={len(wanted)} "
                f"len({{{', '.join(sent)}}}) != len({{{', '.join(wanted)}}}). "
                f"Sent extra: {{{', '.join(extra)}}}. "
                f"Missing but required: {{{', '.join(missing)}}}."
            )
        for key, array in inputs.items():
            tensors.check_input(key, array, expected[key])
        keys = None
        if output_filter:
            unknown = [k for k in output_filter if k not in signature.outputs]
            if unknown:
                raise invalid(
                    f"output tensor alias not found in signature: {unknown[0]} "
                    f"Outputs expected to be in the set {{{', '.join(sorted(signature.outputs))}}}."
                )
            keys = list(dict.fromkeys(output_filter))
        outputs = await self._run(loaded, name, inputs, keys)
        return Prediction(loaded.servable.name, loaded.servable.version, name, outputs)

    # ---- classify / regress ----

    @staticmethod
    def _examples(inp: input_pb2.Input) -> np.ndarray:
        which = inp.WhichOneof("kind")
        if which == "example_list":
            serialized = [e.SerializeToString() for e in inp.example_list.examples]
        elif which == "example_list_with_context":
            # Protobuf merge semantics: concatenating context then example gives the
            # example's features precedence, as TF Serving's input util does.
            context = inp.example_list_with_context.context.SerializeToString()
            serialized = [
                context + e.SerializeToString() for e in inp.example_list_with_context.examples
            ]
        else:
            serialized = []
        if not serialized:
            raise invalid("Input is empty.")
        array = np.empty(len(serialized), dtype=object)
        array[:] = serialized
        return array

    @staticmethod
    def _example_signature(
        loaded: Loaded, signature_name: str, kind: str
    ) -> tuple[str, meta_graph_pb2.SignatureDef]:
        name = signature_name or DEFAULT_SIGNATURE
        servable = loaded.servable
        if name not in servable.functions or name not in servable.signature_defs:
            raise invalid(f"No signature was found with the name: {name}")
        signature = servable.signature_defs[name]
        if len(signature.inputs) != 1:
            raise invalid(f"Expected one input Tensor in {kind} signature {name}.")
        (info,) = signature.inputs.values()
        if info.dtype != tensors.types_pb2.DT_STRING:
            raise invalid(
                f"{kind} signature {name} must take serialized tf.Examples (DT_STRING), "
                f"its input is {tensors.dtype_name(info.dtype)}"
            )
        outputs = set(signature.outputs)
        if kind == "classification" and not outputs & {"classes", "scores"}:
            raise invalid(
                f"Expected classification signature {name} outputs to contain classes or scores"
            )
        if kind == "regression" and "outputs" not in outputs:
            raise invalid(f"Expected regression signature {name} to have an output 'outputs'")
        return name, signature

    async def _run_examples(
        self,
        loaded: Loaded,
        name: str,
        signature: meta_graph_pb2.SignatureDef,
        examples: np.ndarray,
    ) -> dict[str, np.ndarray]:
        (input_key,) = signature.inputs.keys()
        return await self._run(loaded, name, {input_key: examples}, None)

    @staticmethod
    def _classification(
        outputs: dict[str, np.ndarray], count: int
    ) -> classification_pb2.ClassificationResult:
        scores, classes = outputs.get("scores"), outputs.get("classes")
        for key, value in (("scores", scores), ("classes", classes)):
            if value is not None and (value.ndim != 2 or value.shape[0] != count):
                raise invalid(
                    f"Expected {key} output of shape [{count}, num_classes], "
                    f"got {list(value.shape)}"
                )
        if scores is not None and classes is not None and scores.shape != classes.shape:
            raise invalid(
                f"classes {list(classes.shape)} and scores {list(scores.shape)} differ in shape"
            )
        result = classification_pb2.ClassificationResult()
        width = (scores if scores is not None else classes).shape[1]
        for row in range(count):
            classifications = result.classifications.add()
            for col in range(width):
                cls = classifications.classes.add()
                if classes is not None:
                    label = classes[row, col]
                    cls.label = label.decode() if isinstance(label, bytes) else str(label)
                if scores is not None:
                    cls.score = float(scores[row, col])
        return result

    @staticmethod
    def _regression(outputs: dict[str, np.ndarray], count: int) -> regression_pb2.RegressionResult:
        values = outputs["outputs"]
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1 or values.shape[0] != count:
            raise invalid(
                f"Expected output Tensor shape to be [{count}] or [{count}, 1], "
                f"got {list(outputs['outputs'].shape)}"
            )
        result = regression_pb2.RegressionResult()
        for value in values.tolist():
            result.regressions.add(value=float(value))
        return result

    async def _on_examples(
        self, spec: SpecRef, signature_name: str, inp: input_pb2.Input, kind: str
    ) -> tuple[model_pb2.ModelSpec, dict[str, np.ndarray], int]:
        """Run a `kind`-shaped signature on tf.Examples: (answering spec, outputs, examples)."""
        loaded = self.resolve(spec)
        name, signature = self._example_signature(loaded, signature_name, kind)
        examples = self._examples(inp)
        outputs = await self._run_examples(loaded, name, signature, examples)
        servable = loaded.servable
        return _model_spec(servable.name, servable.version, name), outputs, len(examples)

    async def classify(
        self, spec: SpecRef, signature_name: str, inp: input_pb2.Input
    ) -> tuple[model_pb2.ModelSpec, classification_pb2.ClassificationResult]:
        """Classify tf.Examples through a classification-shaped signature."""
        answered, outputs, count = await self._on_examples(
            spec, signature_name, inp, "classification"
        )
        return answered, self._classification(outputs, count)

    async def regress(
        self, spec: SpecRef, signature_name: str, inp: input_pb2.Input
    ) -> tuple[model_pb2.ModelSpec, regression_pb2.RegressionResult]:
        """Regress tf.Examples through a regression-shaped signature."""
        answered, outputs, count = await self._on_examples(spec, signature_name, inp, "regression")
        return answered, self._regression(outputs, count)

    async def multi_inference(
        self, request: inference_pb2.MultiInferenceRequest
    ) -> inference_pb2.MultiInferenceResponse:
        """Several classify/regress signatures of one model version on the same input."""
        if not request.tasks:
            raise invalid("MultiInferenceRequest must contain at least one task.")
        first = request.tasks[0].model_spec
        seen: set[str] = set()
        for task in request.tasks:
            if task.model_spec.name != first.name:
                raise invalid(
                    "All ModelSpecs in a MultiInferenceRequest must access the same model name."
                )
            signature = task.model_spec.signature_name or DEFAULT_SIGNATURE
            if signature in seen:
                raise invalid(f"Duplicate evaluation of signature: {signature}")
            seen.add(signature)
            if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
                raise invalid(f"Unsupported signature method_name: {task.method_name}")
        loaded = self.resolve(SpecRef.from_proto(first))
        examples = self._examples(request.input)
        response = inference_pb2.MultiInferenceResponse()
        for task in request.tasks:
            kind = "classification" if task.method_name == CLASSIFY_METHOD else "regression"
            name, signature = self._example_signature(loaded, task.model_spec.signature_name, kind)
            outputs = await self._run_examples(loaded, name, signature, examples)
            result = response.results.add()
            result.model_spec.CopyFrom(
                _model_spec(loaded.servable.name, loaded.servable.version, name)
            )
            if kind == "classification":
                result.classification_result.CopyFrom(self._classification(outputs, len(examples)))
            else:
                result.regression_result.CopyFrom(self._regression(outputs, len(examples)))
        return response

    # ---- metadata, status, config ----

    def metadata(
        self, spec: SpecRef, fields: list[str]
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """GetModelMetadata: the version's SignatureDefMap (the one field TF Serving has)."""
        if not fields:
            raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in fields:
            if field != SIGNATURE_DEF_FIELD:
                raise invalid(f"Metadata field {field} is not supported")
        loaded = self.resolve(spec)
        servable = loaded.servable
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature)
        packed = any_pb2.Any()
        packed.Pack(signature_map)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.CopyFrom(_model_spec(servable.name, servable.version))
        response.model_spec.ClearField("signature_name")
        response.metadata[SIGNATURE_DEF_FIELD].CopyFrom(packed)
        return response

    def model_status(self, spec: SpecRef) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatus for all versions, one version, or a label's version."""
        if not spec.name:
            raise invalid("Missing model name in request.")
        response = get_model_status_pb2.GetModelStatusResponse()
        for record in self.manager.status(spec.name, spec.version, spec.label):
            status = response.model_version_status.add(version=record.version, state=record.state)
            status.status.error_code = record.error_code
            status.status.error_message = record.error_message
        return response

    async def reload_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """HandleReloadConfigRequest: apply a ModelServerConfig (off the event loop)."""
        if config.WhichOneof("config") != "model_config_list":
            raise invalid(
                "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                "Only ModelConfigList is currently supported"
            )
        if self._reload is None:
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, "config reload is not enabled")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._reload, config)
