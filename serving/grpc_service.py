"""The gRPC adapter (grpc.aio): PredictionService and ModelService over the data plane.

Each method only translates protos to data-plane calls and back; `_Calls.run` turns
ServingError into the status code, hides anything unexpected behind INTERNAL (the traceback
goes to the server log) and records the request metrics.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    input_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tfsp.serving import tensors
from tfsp.serving.dataplane import DataPlane, SpecRef
from tfsp.serving.drain import SHUTTING_DOWN, Gate
from tfsp.serving.errors import ServingError, grpc_status_message, invalid
from tfsp.serving.metrics import RUNTIME_API, Metrics
from tfsp.serving.options import THREADPOOL_EXHAUSTED
from tfsp.serving.predict_wire import predict_response_bytes

log = logging.getLogger("serving")
T = TypeVar("T")


class _Calls:
    """The one place where a gRPC call's outcome becomes a status code and metrics."""

    def __init__(self, metrics: Metrics | None) -> None:
        self._metrics = metrics

    async def run(
        self,
        api: str,
        model: str,
        context: grpc.aio.ServicerContext,
        work: Callable[[], Awaitable[T]],
        *,
        measured: bool = False,
    ) -> T:
        """`work`'s answer, or the call aborted with its status. A `measured` call (TF
        Serving's Predict, Classify and Regress, prediction_service_impl.cc) is counted in
        request_count under the model name the client sent, its latency recorded when it
        succeeded, with `api` as TF Serving spells it ("Predict"), and its session run
        times runtime_latency; TF Serving records none of these for the other methods."""
        started = time.perf_counter()
        status = grpc.StatusCode.OK
        token = RUNTIME_API.set((model, api)) if measured else None
        try:
            return await work()
        except ServingError as exc:
            status = exc.code
            await context.abort(exc.code, grpc_status_message(exc.message))
        except grpc.aio.AbortError:
            raise
        except asyncio.CancelledError:
            # gRPC ended the call before its run ended. With a deadline, TF Serving's run
            # ends at that deadline and the call counts as DEADLINE_EXCEEDED (the client's
            # deadline and the run's timeout fire together: which is seen first here is a
            # race). Without one, the client cancelled it.
            if context.time_remaining() is None:
                status = grpc.StatusCode.CANCELLED
            else:
                status = grpc.StatusCode.DEADLINE_EXCEEDED
            raise
        except Exception:
            status = grpc.StatusCode.INTERNAL
            log.exception("%s failed", api)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        finally:
            if token is not None:
                RUNTIME_API.reset(token)
            if measured and self._metrics is not None:
                if status == grpc.StatusCode.OK:
                    seconds = time.perf_counter() - started
                    self._metrics.observe_request_latency(model, api, "GRPC", seconds)
                self._metrics.count_request(model, status.name)
        raise AssertionError("unreachable")  # abort() always raises


def _run_timeout_ms(context: grpc.aio.ServicerContext) -> int:
    """The session run's timeout for this call, as TF Serving's PredictionServiceImpl sets
    it (DeadlineToTimeoutMillis): what is left of the client's deadline; 0 (none) without
    one, or when nothing is left."""
    left = context.time_remaining()
    return 0 if left is None else max(int(left * 1000), 0)


def _spec_of(request: Message) -> SpecRef:
    """The request's model spec; TF Serving's services refuse a request without one first."""
    if not request.HasField("model_spec"):
        raise invalid("Missing ModelSpec")
    return SpecRef.from_proto(request.model_spec)  # type: ignore[attr-defined]


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService."""

    def __init__(
        self,
        dataplane: DataPlane,
        metrics: Metrics | None = None,
        *,
        outputs_as_tensor_content: bool = False,
    ) -> None:
        self._dp = dataplane
        self._metrics = metrics
        self._calls = _Calls(metrics)
        self._as_content = outputs_as_tensor_content

    async def Predict(  # noqa: N802 (gRPC method names)
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        """Run a signature on tensors; answers a serialized PredictResponse."""

        async def work() -> bytes:
            # Tensors are decoded once the names are checked, as TF Serving parses them.
            prediction = await self._dp.predict(
                _spec_of(request),
                request.model_spec.signature_name,
                dict(request.inputs),
                list(request.output_filter),
                decode=tensors.to_numpy,
                timeout_ms=_run_timeout_ms(context),
            )
            return predict_response_bytes(
                prediction.name,
                prediction.version,
                prediction.signature,
                prediction.outputs,
                as_content=self._as_content,
            )

        return await self._calls.run(
            "Predict", request.model_spec.name, context, work, measured=True
        )

    async def Classify(  # noqa: N802
        self, request: classification_pb2.ClassificationRequest, context: grpc.aio.ServicerContext
    ) -> classification_pb2.ClassificationResponse:
        """Classify tf.Examples."""
        response = classification_pb2.ClassificationResponse
        return await self._on_examples("Classify", self._dp.classify, request, context, response)

    async def Regress(  # noqa: N802
        self, request: regression_pb2.RegressionRequest, context: grpc.aio.ServicerContext
    ) -> regression_pb2.RegressionResponse:
        """Regress tf.Examples."""
        response = regression_pb2.RegressionResponse
        return await self._on_examples("Regress", self._dp.regress, request, context, response)

    async def _on_examples(
        self,
        method: str,
        run: Callable[..., Awaitable[tuple]],
        request: classification_pb2.ClassificationRequest | regression_pb2.RegressionRequest,
        context: grpc.aio.ServicerContext,
        response_type: type,
    ) -> object:
        """Classify or Regress (`run`, the data plane's; `method` names it in the metrics), whose
        requests and responses share their fields."""
        spec = request.model_spec

        async def work() -> object:
            answered, result = await run(
                _spec_of(request), spec.signature_name, request.input, _run_timeout_ms(context)
            )
            return response_type(model_spec=answered, result=result)

        return await self._calls.run(method, spec.name, context, work, measured=True)

    async def MultiInference(  # noqa: N802
        self, request: inference_pb2.MultiInferenceRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.MultiInferenceResponse:
        """Several classify/regress tasks on one input."""
        model = request.tasks[0].model_spec.name if request.tasks else ""

        async def work() -> inference_pb2.MultiInferenceResponse:
            response = await self._dp.multi_inference(request, _run_timeout_ms(context))
            if self._metrics is not None:
                # multi_inference.cc records the examples once its run succeeded.
                self._metrics.observe_examples(model, _example_count(request.input))
            return response

        return await self._calls.run("multi_inference", model, context, work)

    async def GetModelMetadata(  # noqa: N802
        self,
        request: get_model_metadata_pb2.GetModelMetadataRequest,
        context: grpc.aio.ServicerContext,
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """Signature metadata of a version."""

        async def work() -> get_model_metadata_pb2.GetModelMetadataResponse:
            return self._dp.metadata(_spec_of(request), list(request.metadata_field))

        return await self._calls.run("get_model_metadata", request.model_spec.name, context, work)


def _example_count(inp: input_pb2.Input) -> int:
    """The tf.Examples of an Input, as util.cc's NumInputExamples counts them (a list's
    examples, or those sharing a context; 0 for neither)."""
    kind = inp.WhichOneof("kind")
    if kind == "example_list":
        return len(inp.example_list.examples)
    if kind == "example_list_with_context":
        return len(inp.example_list_with_context.examples)
    return 0


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService."""

    def __init__(self, dataplane: DataPlane, metrics: Metrics | None = None) -> None:
        self._dp = dataplane
        self._metrics = metrics
        self._calls = _Calls(metrics)

    async def GetModelStatus(  # noqa: N802
        self,
        request: get_model_status_pb2.GetModelStatusRequest,
        context: grpc.aio.ServicerContext,
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """Version states of a model."""

        async def work() -> get_model_status_pb2.GetModelStatusResponse:
            return self._dp.model_status(_spec_of(request))

        return await self._calls.run("get_model_status", request.model_spec.name, context, work)

    async def HandleReloadConfigRequest(  # noqa: N802
        self,
        request: model_management_pb2.ReloadConfigRequest,
        context: grpc.aio.ServicerContext,
    ) -> model_management_pb2.ReloadConfigResponse:
        """Apply a new ModelServerConfig."""

        # model_service_impl.cc: each requested metric's first point is read before and
        # after the reload, and the increase answered, one entry per name (0 for a name
        # that is not exported).
        names = list(dict.fromkeys(request.metric_names))
        before = self._metric_values(names)

        async def work() -> model_management_pb2.ReloadConfigResponse:
            await self._dp.reload_config(request.config)
            after = self._metric_values(names)
            response = model_management_pb2.ReloadConfigResponse()
            response.status.SetInParent()  # an OK StatusProto, set as ToStatusProto sets it
            for name in names:
                response.metric.add(name=name, int64_value_increase=after[name] - before[name])
            return response

        return await self._calls.run("reload_config", "", context, work)

    def _metric_values(self, names: list[str]) -> dict[str, int]:
        metrics = self._metrics
        return {name: metrics.first_int64(name) if metrics else 0 for name in names}


class _Undecodable:
    """What a request that is not a valid protobuf of its type deserializes to."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name


def _lenient(request_class: type) -> Callable[[bytes], object]:
    def deserialize(data: bytes) -> object:
        try:
            return request_class.FromString(data)
        except Exception:  # protobuf raises DecodeError, and others on some runtimes
            return _Undecodable(request_class.DESCRIPTOR.full_name)

    return deserialize


class ThreadQuota:
    """The gRPC server's thread quota as TF Serving sets it (--grpc_max_threads): gRPC's
    synchronous server keeps one thread waiting for calls, so `max_threads` threads run at
    most `max_threads - 1` calls; a call that finds none free is answered RESOURCE_EXHAUSTED
    "Server Threadpool Exhausted" at once, before its request is read, and never queued
    (grpc thread_manager.cc, server_cc.cc)."""

    def __init__(self, max_threads: int) -> None:
        self._free = max_threads - 1

    def take(self) -> bool:
        """Whether a call may run now (then `give` when it ends)."""
        if self._free <= 0:
            return False
        self._free -= 1
        return True

    def give(self) -> None:
        """A call that `take` let run has ended."""
        self._free += 1


def _guarded(method: Callable, quota: ThreadQuota) -> Callable:
    async def handler(request: object, context: grpc.aio.ServicerContext) -> object:
        if not quota.take():
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, THREADPOOL_EXHAUSTED)
        try:
            # gRPC would answer a deserializer failure with UNKNOWN and Python exception names.
            if isinstance(request, _Undecodable):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"cannot parse the request as {request.type_name}",
                )
            return await method(request, context)
        finally:
            quota.give()

    return handler


# The generated *_pb2 service modules do not import under protobuf 6, so the method
# tables are spelled out (the *_pb2_grpc modules do the same): request class, response
# class, or None where the method answers bytes it serialized itself (predict_wire).
_PREDICTION_METHODS = {
    "Classify": (
        classification_pb2.ClassificationRequest,
        classification_pb2.ClassificationResponse,
    ),
    "Regress": (regression_pb2.RegressionRequest, regression_pb2.RegressionResponse),
    "Predict": (predict_pb2.PredictRequest, None),
    "MultiInference": (inference_pb2.MultiInferenceRequest, inference_pb2.MultiInferenceResponse),
    "GetModelMetadata": (
        get_model_metadata_pb2.GetModelMetadataRequest,
        get_model_metadata_pb2.GetModelMetadataResponse,
    ),
}
_MODEL_METHODS = {
    "GetModelStatus": (
        get_model_status_pb2.GetModelStatusRequest,
        get_model_status_pb2.GetModelStatusResponse,
    ),
    "HandleReloadConfigRequest": (
        model_management_pb2.ReloadConfigRequest,
        model_management_pb2.ReloadConfigResponse,
    ),
}


def _refusing(gate: Gate) -> grpc.RpcMethodHandler:
    async def refuse(request: object, context: grpc.aio.ServicerContext) -> object:
        await gate.refusal()
        await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)

    return grpc.unary_unary_rpc_method_handler(refuse, request_deserializer=lambda _: None)


class _GatedHandlers(grpc.GenericRpcHandler):
    """The method table, asked when a call's headers arrive (before its message is read):
    every known call is recorded at the gate, and refused once the gate is closed."""

    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler], gate: Gate | None) -> None:
        self._handlers = handlers
        self._gate = gate
        self._refused = _refusing(gate) if gate is not None else None

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> object:
        handler = self._handlers.get(handler_call_details.method)
        if handler is None or self._gate is None or self._gate.admit():
            return handler
        return self._refused


def _register(
    server: grpc.aio.Server,
    servicer: object,
    service: str,
    methods: dict,
    quota: ThreadQuota,
    gate: Gate | None,
) -> None:
    handlers = {
        f"/{service}/{name}": grpc.unary_unary_rpc_method_handler(
            _guarded(getattr(servicer, name), quota),
            request_deserializer=_lenient(request_class),
            response_serializer=None
            if response_class is None
            else response_class.SerializeToString,
        )
        for name, (request_class, response_class) in methods.items()
    }
    server.add_generic_rpc_handlers((_GatedHandlers(handlers, gate),))


def add_services(
    server: grpc.aio.Server,
    dataplane: DataPlane,
    metrics: Metrics | None,
    max_threads: int,
    *,
    outputs_as_tensor_content: bool = False,
    gate: Gate | None = None,
) -> None:
    """Register PredictionService and ModelService, sharing a ThreadQuota of `max_threads`.

    Predict outputs go in the typed value fields, as TF Serving writes them, unless
    `outputs_as_tensor_content` (its --enable_serialization_as_tensor_content). Calls pass
    `gate` (tfsp.serving.drain) as they arrive: refused with UNAVAILABLE once it closes.
    """
    quota = ThreadQuota(max_threads)
    _register(
        server,
        PredictionService(dataplane, metrics, outputs_as_tensor_content=outputs_as_tensor_content),
        "tensorflow.serving.PredictionService",
        _PREDICTION_METHODS,
        quota,
        gate,
    )
    _register(
        server,
        ModelService(dataplane, metrics),
        "tensorflow.serving.ModelService",
        _MODEL_METHODS,
        quota,
        gate,
    )


# The names TF Serving's server.cc marks SERVING in gRPC's health service (not the services'
# full names); the empty name, the whole server, is SERVING from the start.
HEALTH_SERVICE_NAMES = ("ModelService", "PredictionService")


async def add_health_service(server: grpc.aio.Server) -> "HealthService":
    """Register grpc.health.v1.Health (--enable_grpc_healthcheck_service) with TF Serving's
    services SERVING. Outside the gate: a probe during a drain hears NOT_SERVING."""
    servicer = HealthService()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in HEALTH_SERVICE_NAMES:
        await servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return servicer


class _WatchedStream:
    """A Watch call's context that knows whether a write is in flight, and the last status
    written."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context
        self.writing = False
        self.last_status: int | None = None

    async def write(self, message: health_pb2.HealthCheckResponse) -> None:
        self.writing = True
        try:
            await self._context.write(message)
            self.last_status = message.status
        finally:
            self.writing = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._context, name)


class HealthService(health.aio.HealthServicer):
    """gRPC's asyncio health servicer, whose Watch streams end once the server shuts down:
    an open stream would otherwise hold the drain until its grace period ends."""

    def __init__(self) -> None:
        super().__init__()
        self._stopping = asyncio.Event()

    async def Watch(self, request: object, context: grpc.aio.ServicerContext) -> None:  # noqa: N802
        """The library's Watch, ended with a last NOT_SERVING when shutting down."""
        stream = _WatchedStream(context)
        watching = asyncio.ensure_future(super().Watch(request, stream))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({watching, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            watching.cancel()  # the client went away
            raise
        finally:
            stopping.cancel()
        if watching.done():
            return watching.result()  # the library's stream ended on its own (or failed)
        # A write cancelled in flight leaves the call unable to take another (the stream then
        # hangs until the server stops), so the library's loop is stopped between writes.
        while stream.writing:
            await asyncio.sleep(0.001)
        watching.cancel()
        try:
            await watching
        except asyncio.CancelledError:
            pass
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        if stream.last_status != not_serving:
            await context.write(health_pb2.HealthCheckResponse(status=not_serving))

    async def shut_down(self) -> None:
        """Every status NOT_SERVING, and every Watch stream ended."""
        await self.enter_graceful_shutdown()
        self._stopping.set()
