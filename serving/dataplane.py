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
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import any_pb2, text_format
from tensorflow.core.protobuf.meta_graph_pb2 import SignatureDef, TensorInfo
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

from tfsp.serving import tensors
from tfsp.serving.config import ConfigError, model_settings
from tfsp.serving.errors import (
    ServingError,
    failed_precondition,
    invalid,
    status_code,
    tensorflow_message,
)
from tfsp.serving.manager import Loaded, ModelManager
from tfsp.serving.servable import Servable

log = logging.getLogger("serving")

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
_METHOD_OF_KIND = {"classification": CLASSIFY_METHOD, "regression": REGRESS_METHOD}
SIGNATURE_DEF_FIELD = "signature_def"
# The input Classify and Regress feed serialized tf.Examples to (kClassifyInputs, kRegressInputs).
EXAMPLES_INPUT = "inputs"


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


def _model_spec(name: str, version: int, signature: str = "") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature)
    spec.version.value = version
    return spec


def execution_error(exc: BaseException) -> ServingError:
    """Map whatever a signature call raised to a client-safe ServingError."""
    if isinstance(exc, ServingError):
        return exc
    if isinstance(exc, tf.errors.OpError):
        return ServingError(status_code(exc.error_code), tensorflow_message(exc.message))
    if isinstance(exc, UnicodeDecodeError) and isinstance(exc.object, bytes):
        # TensorFlow could not turn a failed status into an OpError because its message
        # quotes bytes that are not UTF-8; the code is lost with it. Only an op that
        # refused its input quotes it (a garbled serialized tf.Example): a client error.
        return invalid(tensorflow_message(exc.object))
    log.error("model call failed", exc_info=exc)
    return ServingError(grpc.StatusCode.INTERNAL, "internal error while running the model")


def predict_signature(servable: Servable, signature_name: str) -> tuple[str, SignatureDef]:
    """A signature by name (default serving_default), as Predict looks it up."""
    name = signature_name or DEFAULT_SIGNATURE
    if name not in servable.signature_defs:
        raise failed_precondition(f'Serving signature key "{name}" not found.')
    return name, servable.signature_defs[name]


def _names(keys: object) -> str:
    return ",".join(sorted(keys))  # TF Serving joins std::set keys with "," (sorted)


Decode = Callable[[str, object], np.ndarray]


def _decoded(alias: str, value: object, decode: Decode) -> np.ndarray:
    try:
        return decode(alias, value)
    except ServingError as exc:
        # TF's GetInputValues says only which input; what is wrong follows in parentheses.
        reason = exc.message.removeprefix(f"input '{alias}': ")
        raise invalid(f"tensor parsing error: {alias} ({reason})") from None


def prepare_predict(
    signature: SignatureDef,
    inputs: dict[str, Any],
    output_filter: list[str] | None,
    decode: Decode | None = None,
    *,
    method_name_check: bool = False,
) -> list[str] | None:
    """Check a Predict request against its signature, in TF Serving's order and words
    (predict_util.cc PreProcessPrediction, TF's saved_model GetInputValues, Session::Run).

    `inputs` maps each request alias to an array, or to a TensorProto that `decode` turns
    into one. After the input count, each signature alias in turn is found (or its default
    taken) and its tensor parsed, as GetInputValues does; a request name the signature
    lacks is refused after them. On return `inputs` holds arrays, defaults filled in from
    the signature. Shapes are not compared with the signature (the graph's ops decide); a
    dtype that is not the signature's is refused with Session::Run's text. Returns the
    output keys to fetch (None: all). With `method_name_check`
    (--enable_signature_method_name_check), a signature of another method is refused first
    (VerifySignature).
    """
    if method_name_check and signature.method_name not in (
        PREDICT_METHOD,
        CLASSIFY_METHOD,
        REGRESS_METHOD,
    ):
        raise ServingError(
            grpc.StatusCode.INTERNAL,
            f"Expected prediction signature method_name to be one of {{{PREDICT_METHOD}, "
            f"{CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: {signature.method_name}",
        )
    expected = signature.inputs
    requested = sorted(inputs)
    if len(inputs) > len(expected) or (len(inputs) < len(expected) and not signature.defaults):
        raise invalid(
            f"input size does not match signature: {len(inputs)}!={len(expected)} "
            f"len({{{_names(inputs)}}}) != len({{{_names(expected)}}}). "
            f"Sent extra: {{{_names(set(inputs) - set(expected))}}}. "
            f"Missing but required: {{{_names(set(expected) - set(inputs))}}}."
        )
    used = []
    for alias in sorted(expected):
        if alias in inputs:
            used.append(alias)
            if decode is not None:
                inputs[alias] = _decoded(alias, inputs[alias], decode)
        elif alias in signature.defaults:
            inputs[alias] = _decoded(alias, signature.defaults[alias], tensors.to_numpy)
        else:
            raise invalid(
                f"Signature input alias: {alias}(feed name: {expected[alias].name}) not found "
                f"in request and no default value provided. Inputs expected to be in the "
                f"request {{{','.join(requested)}}}, or default input alias set: "
                f"{_names(signature.defaults)}"
            )
    if requested and len(used) != len(requested):
        raise invalid(
            f"Inputs contains invalid name. Used request inputs: {','.join(used)}, "
            f"request input: {','.join(requested)}"
        )
    keys = _output_keys(signature, output_filter)
    _check_feed_dtypes(signature, inputs)
    return keys


def _output_keys(signature: SignatureDef, output_filter: list[str] | None) -> list[str] | None:
    if not output_filter:
        return None
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise invalid(
                f"output tensor alias not found in signature: {alias} "
                f"Outputs expected to be in the set {{{_names(signature.outputs)}}}."
            )
        if alias in seen:
            raise invalid(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return list(output_filter)


def _check_feed_dtypes(signature: SignatureDef, inputs: dict[str, np.ndarray]) -> None:
    # Session::Run's own check of each feed ("arg[i]": its place among the feeds, here the
    # signature's aliases in sorted order; TF Serving feeds them in its map's order).
    for index, alias in enumerate(sorted(signature.inputs)):
        wanted = signature.inputs[alias].dtype
        given = tensors.dtype_enum(inputs[alias])
        if given != wanted and tensors.numpy_dtype(wanted) is not None:
            raise invalid(
                f"Expects arg[{index}] to be {tensors.type_string(wanted)} but "
                f"{tensors.type_string(given)} is provided"
            )


def examples_array(inp: input_pb2.Input) -> np.ndarray:
    """The serialized tf.Examples of a Classify/Regress `Input`, as a string array."""
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


def _debug_string(signature: SignatureDef) -> str:
    return text_format.MessageToString(signature, as_one_line=True)


def example_signature(
    servable: Servable, signature_name: str, kind: str, *, method_name_check: bool = False
) -> tuple[str, SignatureDef]:
    """A classification- or regression-shaped signature, checked as TF Serving checks it.

    classifier.cc / regressor.cc: with `method_name_check`, the API's method_name; then one
    input, keyed `inputs` (what Classify feeds the serialized tf.Examples to); one or two
    outputs among `classes` and `scores`, or one output `outputs`. The input's dtype is left
    to the session, as there.
    """
    name = signature_name or DEFAULT_SIGNATURE
    if name not in servable.signature_defs:
        raise invalid(f"No signature was found with the name: {name}")
    signature = servable.signature_defs[name]
    if method_name_check and signature.method_name != _METHOD_OF_KIND[kind]:
        raise invalid(
            f"Expected {kind} signature method_name to be {_METHOD_OF_KIND[kind]}. "
            f"Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise invalid("Expected one input Tensor.")
    if kind == "classification":
        if len(signature.outputs) not in (1, 2):
            raise invalid(f"Expected one or two output Tensors, found {len(signature.outputs)}")
        if EXAMPLES_INPUT not in signature.inputs:
            raise invalid(
                f"No classification inputs found in SignatureDef: {_debug_string(signature)}"
            )
        if not set(signature.outputs) & {"classes", "scores"}:
            raise invalid(
                'Expected classification signature outputs to contain at least one of "classes" '
                f'or "scores". Signature was: {_debug_string(signature)}'
            )
    else:
        if len(signature.outputs) != 1:
            raise invalid("Expected one output Tensor.")
        if EXAMPLES_INPUT not in signature.inputs:
            raise invalid(f"No regression inputs found in SignatureDef: {_debug_string(signature)}")
        if "outputs" not in signature.outputs:
            raise invalid(
                f"No regression outputs found in SignatureDef: {_debug_string(signature)}"
            )
    return name, signature


def classification_result(
    outputs: dict[str, np.ndarray], count: int
) -> classification_pb2.ClassificationResult:
    """Classify's result from `scores` and/or `classes` (classifier.cc PostProcess...)."""
    scores, classes = outputs.get("scores"), outputs.get("classes")
    width = None
    for key, value, dtype in (("classes", classes, "DT_STRING"), ("scores", scores, "DT_FLOAT")):
        if value is None:
            continue
        if value.ndim != 2:
            raise invalid(
                "Expected Tensor shape: [batch_size num_classes] but got "
                f"{tensors.shape_text(value.shape)}"
            )
        got = tensors.dtype_name(tensors.dtype_enum(value))
        if got != dtype:
            raise invalid(f"Expected {key} Tensor of {dtype}. Got: {got}")
        if value.shape[0] != count:
            raise invalid(f"Expected {key} output batch size of {count}. Got: {value.shape[0]}")
        if width is not None and value.shape[1] != width:
            raise invalid(
                f"Tensors class and score should match in dim_size(1). "
                f"Got {width} vs. {value.shape[1]}"
            )
        width = value.shape[1]
    result = classification_pb2.ClassificationResult()
    for row in range(count):
        classifications = result.classifications.add()
        for col in range(width or 0):
            cls = classifications.classes.add()
            if classes is not None:
                label = classes[row, col]
                cls.label = label.decode(errors="replace") if isinstance(label, bytes) else label
            if scores is not None:
                cls.score = float(scores[row, col])
    return result


def regression_result(
    outputs: dict[str, np.ndarray], count: int
) -> regression_pb2.RegressionResult:
    """Regress's result from `outputs`, [count] or [count, 1] floats (regressor.cc)."""
    values = outputs["outputs"]
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise invalid(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{tensors.shape_text(values.shape)}"
        )
    if values.shape[0] != count:
        raise invalid(
            f"Input batch size did not match output batch size: {count} vs. {values.shape[0]}"
        )
    got = tensors.dtype_name(tensors.dtype_enum(values))
    if got != "DT_FLOAT":
        raise invalid(f"Expected output Tensor of DT_FLOAT.  Got: {got}")
    result = regression_pb2.RegressionResult()
    for value in values.reshape(-1).tolist():
        result.regressions.add(value=float(value))
    return result


def result_keys(signature: SignatureDef, kind: str) -> list[str]:
    """The outputs a Classify (`kind` "classification") or Regress result is made of: TF
    Serving's classifier and regressor fetch only these. A `scores` output on the same
    tensor as `classes` is read as classes alone, as PostProcessClassificationResult does."""
    if kind != "classification":
        return ["outputs"]
    keys = [key for key in ("classes", "scores") if key in signature.outputs]
    if len(keys) == 2 and signature.outputs["classes"].name == signature.outputs["scores"].name:
        return ["classes"]
    return keys


@dataclasses.dataclass(frozen=True)
class InferenceTask:
    """One checked task of a MultiInference request."""

    kind: str  # "classification" or "regression"
    name: str  # the signature's
    signature: SignatureDef


def inference_tasks(
    servable: Servable,
    request: inference_pb2.MultiInferenceRequest,
    *,
    method_name_check: bool = False,
) -> list[InferenceTask]:
    """The request's tasks, each checked in turn as multi_inference.cc checks them (model
    name, duplicate, signature, method, signature shape); nothing has run yet."""
    model_name = ""
    seen: set[str] = set()
    tasks = []
    for task in request.tasks:
        if not task.model_spec.name:
            raise invalid("Found ModelSpec with an empty model name.")
        if model_name and task.model_spec.name != model_name:
            raise invalid(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
        model_name = task.model_spec.name
        signature = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if signature in seen:
            raise invalid(f"Duplicate evaluation of signature: {signature}")
        seen.add(signature)
        if signature not in servable.signature_defs:
            raise invalid(f"Requested signature not found in model graph: {signature}")
        if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
            raise ServingError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"Unsupported signature method_name: {task.method_name}",
            )
        kind = "classification" if task.method_name == CLASSIFY_METHOD else "regression"
        checked = example_signature(servable, signature, kind, method_name_check=method_name_check)
        tasks.append(InferenceTask(kind, *checked))
    return tasks


def inference_session_names(
    tasks: list[InferenceTask], examples: np.ndarray
) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """The one session run of a MultiInference: every task's input tensor fed the examples,
    every output its result needs fetched once, in tensor-name order (multi_inference.cc
    gathers both in std::sets)."""
    feeds = {task.signature.inputs[EXAMPLES_INPUT].name: examples for task in tasks}
    fetches = {
        task.signature.outputs[key].name
        for task in tasks
        for key in result_keys(task.signature, task.kind)
    }
    return feeds, tuple(sorted(fetches))


def inference_response(
    servable: Servable,
    tasks: list[InferenceTask],
    fetches: tuple[str, ...],
    values: list[np.ndarray],
    count: int,
) -> inference_pb2.MultiInferenceResponse:
    """Each task's result, in task order, from the run's `values` of `fetches`."""
    by_name = dict(zip(fetches, values, strict=True))
    response = inference_pb2.MultiInferenceResponse()
    for task in tasks:
        keys = result_keys(task.signature, task.kind)
        outputs = {key: by_name[task.signature.outputs[key].name] for key in keys}
        result = response.results.add()
        if task.kind == "classification":
            result.classification_result.CopyFrom(classification_result(outputs, count))
        else:
            result.regression_result.CopyFrom(regression_result(outputs, count))
        result.model_spec.CopyFrom(_model_spec(servable.name, servable.version, task.name))
    return response


class DataPlane:
    """Predict, Classify, Regress, MultiInference, metadata, status and config reload."""

    def __init__(
        self,
        manager: ModelManager,
        reload: Callable[[model_server_config_pb2.ModelServerConfig], None] | None = None,
        *,
        method_name_check: bool = False,
    ) -> None:
        """`method_name_check`: --enable_signature_method_name_check."""
        self.manager = manager
        self._reload = reload
        self._method_name_check = method_name_check

    # ---- lookups ----

    def resolve(self, spec: SpecRef) -> Loaded:
        """The loaded version for a spec (NOT_FOUND otherwise)."""
        if not spec.name:
            raise invalid("ModelSpec has no name specified.")
        return self.manager.resolve(spec.name, spec.version, spec.label)

    def input_infos(self, spec: SpecRef, signature_name: str) -> dict[str, TensorInfo]:
        """The signature's inputs, which REST needs to decode JSON, looked up as TF Serving's
        REST handler does (http_rest_api_handler.cc GetInfoMap, then json_tensor.cc)."""
        name = signature_name or DEFAULT_SIGNATURE
        signature = self.resolve(spec).servable.signature_defs.get(name)
        if signature is None:
            raise invalid(f'Serving signature name: "{name}" not found in signature def')
        if not signature.inputs:
            raise invalid(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
        return dict(signature.inputs)

    # ---- execution ----

    @staticmethod
    async def _run(
        loaded: Loaded, feeds: dict[str, np.ndarray], fetches: tuple[str, ...], timeout_ms: int
    ) -> list[np.ndarray]:
        """One session run by tensor names (batched if the version batches)."""
        try:
            return await loaded.runner.submit_async(feeds, fetches, timeout_ms)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise execution_error(exc) from None

    async def _call(
        self,
        loaded: Loaded,
        signature: str,
        inputs: dict[str, np.ndarray],
        keys: tuple[str, ...],
        timeout_ms: int,
    ) -> dict[str, np.ndarray]:
        """A signature's outputs `keys` for `inputs` (by alias)."""
        feed_names, fetches = loaded.servable.tensor_names(signature, tuple(inputs), keys)
        feeds = dict(zip(feed_names, inputs.values(), strict=True))
        values = await self._run(loaded, feeds, fetches, timeout_ms)
        return dict(zip(keys, values, strict=True))

    async def predict(
        self,
        spec: SpecRef,
        signature_name: str,
        inputs: dict[str, Any],
        output_filter: list[str] | None = None,
        decode: Decode | None = None,
        timeout_ms: int = 0,
    ) -> Prediction:
        """Validate inputs against the signature, run it, keep the filtered outputs.

        `decode` turns request tensors (e.g. TensorProtos) into arrays once the request's
        names have been checked (`prepare_predict`). `timeout_ms` > 0 is the session run's
        timeout, as TF Serving sets it from the client's deadline (every API here takes it).
        """
        loaded = self.resolve(spec)
        name, signature = predict_signature(loaded.servable, signature_name)
        keys = prepare_predict(
            signature, inputs, output_filter, decode, method_name_check=self._method_name_check
        )
        keys = tuple(keys or signature.outputs)
        outputs = await self._call(loaded, name, inputs, keys, timeout_ms)
        return Prediction(loaded.servable.name, loaded.servable.version, name, outputs)

    # ---- classify / regress ----

    async def _on_examples(
        self, spec: SpecRef, signature_name: str, inp: input_pb2.Input, kind: str, timeout_ms: int
    ) -> tuple[model_pb2.ModelSpec, dict[str, np.ndarray], int]:
        """Run a `kind`-shaped signature on tf.Examples: (answering spec, outputs, examples)."""
        loaded = self.resolve(spec)
        name, signature = example_signature(
            loaded.servable, signature_name, kind, method_name_check=self._method_name_check
        )
        examples = examples_array(inp)
        inputs = {EXAMPLES_INPUT: examples}
        keys = tuple(result_keys(signature, kind))
        outputs = await self._call(loaded, name, inputs, keys, timeout_ms)
        servable = loaded.servable
        return _model_spec(servable.name, servable.version, name), outputs, len(examples)

    async def classify(
        self, spec: SpecRef, signature_name: str, inp: input_pb2.Input, timeout_ms: int = 0
    ) -> tuple[model_pb2.ModelSpec, classification_pb2.ClassificationResult]:
        """Classify tf.Examples through a classification-shaped signature."""
        answered, outputs, count = await self._on_examples(
            spec, signature_name, inp, "classification", timeout_ms
        )
        return answered, classification_result(outputs, count)

    async def regress(
        self, spec: SpecRef, signature_name: str, inp: input_pb2.Input, timeout_ms: int = 0
    ) -> tuple[model_pb2.ModelSpec, regression_pb2.RegressionResult]:
        """Regress tf.Examples through a regression-shaped signature."""
        answered, outputs, count = await self._on_examples(
            spec, signature_name, inp, "regression", timeout_ms
        )
        return answered, regression_result(outputs, count)

    async def multi_inference(
        self, request: inference_pb2.MultiInferenceRequest, timeout_ms: int = 0
    ) -> inference_pb2.MultiInferenceResponse:
        """Several classify/regress signatures of one model version on the same input, in
        one session run, as multi_inference.cc does it: the first task's model is resolved,
        then every task checked (`inference_tasks`), then the input read."""
        first = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
        loaded = self.resolve(SpecRef.from_proto(first))
        tasks = inference_tasks(loaded.servable, request, method_name_check=self._method_name_check)
        examples = examples_array(request.input)
        feeds, fetches = inference_session_names(tasks, examples)
        values = await self._run(loaded, feeds, fetches, timeout_ms)
        return inference_response(loaded.servable, tasks, fetches, values, len(examples))

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
        """GetModelStatus for all versions or one version (a label is ignored, as in TF
        Serving; an empty name finds no versions)."""
        response = get_model_status_pb2.GetModelStatusResponse()
        for record in self.manager.status(spec.name, spec.version):
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
        try:
            # Refused before anything changes, as ServerCore::ReloadConfig validates first.
            model_settings(config)
        except ConfigError as exc:
            raise invalid(str(exc)) from None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._reload, config)
