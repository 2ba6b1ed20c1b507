"""The REST adapter (aiohttp): TF Serving's /v1/models URLs over the data plane.

Paths are matched with TF Serving's own patterns (case-insensitive, version or label,
`:predict|:classify|:regress`, `/metadata`) against the request target as TF Serving's HTTP
server gives it, query string included, and what they capture is dispatched on as there
(case-sensitively: `:PREDICT` is a malformed request); errors are `{"error": "..."}` with
the HTTP status TF Serving maps each gRPC code to. Requests reach the REST handler, or the
metrics endpoint, through one dispatch modelled on that server's (`build_app`).
"""

import asyncio
import dataclasses
import json
import logging
import math
import re
import time
import urllib.parse
import zlib
from collections.abc import Callable

import grpc
from aiohttp import HttpVersion11, StreamReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from tfsp.serving import http_target, rest_json
from tfsp.serving.dataplane import DataPlane, SpecRef
from tfsp.serving.drain import SHUTTING_DOWN, Gate
from tfsp.serving.errors import ServingError, invalid
from tfsp.serving.metrics import CONTENT_TYPE, RUNTIME_API, Metrics
from tfsp.serving.options import INT32_MAX

log = logging.getLogger("serving")

_PREDICTION = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
# http_rest_api_util.h (kHTTPRestApiHandlerPathRegex): the request targets TF Serving's
# REST dispatcher takes, and counts; "/v1" alone, or "/v1?x=1", is not one of them.
_DISPATCHED = re.compile(r"/v1/.*", re.IGNORECASE)
# http_server.cc: the Origin a CORS preflight (OPTIONS) must carry, searched anywhere in it.
_PREFLIGHT_ORIGIN = re.compile(r"https?://")
# The verbs and the subresource http_rest_api_handler.cc dispatches on. Its patterns ignore
# case, but it compares what they capture with these as they are spelled here.
_VERBS = frozenset({"predict", "classify", "regress"})
_METADATA = "metadata"
# ZLib::kMaxUncompressedBytes (util/net_http/compression/gzip_zlib.h): the most a gzip body
# may inflate to. TF Serving's evhttp_request.cc (UncompressGzipBody) drops a body over it,
# which then fails as an empty JSON document: 400.
MAX_UNCOMPRESSED_BYTES = 100 * 1024 * 1024
# libevent, as TF Serving sets it up, reads a body of any size (max_body_size is never set),
# and gRPC's --grpc_channel_arguments do not reach its HTTP server. We stop a body at 2 GiB,
# the largest message TF Serving's gRPC takes, so one request cannot take all memory.
MAX_BODY_BYTES = INT32_MAX
_INFLATE_STEP = 1 << 20  # inflate at most this much per zlib call: memory stays bounded
# libevent's HTTP_READ_TIMEOUT (50 s): TF Serving's HTTP server never sets its own.
DEFAULT_READ_TIMEOUT_MS = 50_000
# libevent reads a request line and headers of any length and number (TF Serving never
# sets max_headers_size). aiohttp's defaults, 8,190 bytes a line and 128 headers, would
# refuse what TF Serving takes, such as a 10 KB token in a header; these bounds sit far
# past what clients send and still cap a connection's headers (64 MiB at the most).
MAX_HEADER_LINE_BYTES = 1 << 16
MAX_HEADERS = 1024
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}


class _ReadTimeout(Exception):
    """The client sent nothing for the read timeout in the middle of a request body."""


@dataclasses.dataclass
class _Call:
    """What http_server.cc records of a REST request: the model name as the path gives it
    (URL-decoded, "" if the path does not parse), the verb as the URL spells it ("" for a
    GET), the status, and when its handler started."""

    model: str = ""
    method: str = ""
    code: str = "OK"
    started: float = 0.0


class HandlerThreads:
    """TF Serving's REST executor (http_server.cc RequestExecutor): a pool of
    --rest_api_num_threads threads that runs every handler, the REST API's and the metrics
    endpoint's. libevent's event loop runs on one of those threads for as long as the server
    runs (evhttp_server.cc StartAcceptingRequests), so at most N - 1 handlers run at once and
    the requests past them wait in the pool's queue; with one thread, none ever runs."""

    def __init__(self, threads: int) -> None:
        self._free = asyncio.Semaphore(max(threads - 1, 0))

    def thread(self) -> asyncio.Semaphore:
        """Hold one thread for a handler (`async with`), waiting for it if none is free."""
        return self._free


def _spec(name: str, version: str | None, label: str | None) -> SpecRef:
    name = urllib.parse.unquote(name or "")
    if not name:
        raise invalid("Missing model name in request.")
    digits = (version or "").lstrip("0") or "0"
    if version and (len(digits) > 19 or int(digits) > 2**63 - 1):  # absl::SimpleAtoi: int64
        raise invalid(f"Failed to convert version: {version} to numeric.")
    return SpecRef(
        name=name,
        version=int(digits) if version else None,
        label=urllib.parse.unquote(label) if label else None,
    )


class RestApi:
    """Request handlers for one data plane."""

    def __init__(
        self,
        dataplane: DataPlane,
        metrics: Metrics | None,
        run_timeout_ms: int,
        cors: bool = False,
        *,
        executor: HandlerThreads,
        max_body_bytes: int,
        read_timeout_seconds: float | None = None,
        gate: Gate | None = None,
    ) -> None:
        self._dp = dataplane
        self._executor = executor
        self._gate = gate
        self._metrics = metrics
        # Every session run's timeout (0: none), as TF Serving's HttpRestApiHandler sets
        # --rest_api_timeout_in_ms in its RunOptions; nothing else bounds a REST call.
        self._run_timeout_ms = run_timeout_ms
        self._headers = dict(_CORS) if cors else {}
        self._max_body = max_body_bytes
        self._read_timeout = read_timeout_seconds

    def _json(self, payload: object, status: int = 200) -> web.Response:
        # http_rest_api_util.cc AddHeaders: "application/json" as it is, no charset.
        return web.Response(
            body=json.dumps(payload).encode(),
            status=status,
            headers={hdrs.CONTENT_TYPE: "application/json", **self._headers},
        )

    async def handle(self, request: web.Request, path: str) -> web.Response:
        """Answer a request the REST dispatcher took; `path` is its target as TF Serving's
        handler matches it (see `http_target.Target`)."""
        call = _Call()
        try:
            if self._gate is not None and not self._gate.admit():
                await self._gate.refusal()
                raise ServingError(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
            # libevent reads the whole body before TF Serving's dispatcher schedules the
            # handler on its executor: a slow upload holds no handler thread.
            received = await self._receive(request)
            async with self._executor.thread():
                # http_server.cc times a request from its handler's start, on its thread.
                call.started = time.perf_counter()
                return await self._answer(request, path, received, call)
        except ServingError as exc:
            call.code = exc.code.name
            return self._json({"error": exc.message}, exc.http_status)
        except web.RequestPayloadError as exc:
            # A broken chunked encoding, a body shorter than its Content-Length, ...
            call.code = "INVALID_ARGUMENT"
            return self._json({"error": f"cannot read the request body: {exc}"}, 400)
        except RecursionError:
            # Values nested almost as deep as the JSON parser allows, walked recursively.
            call.code = "INVALID_ARGUMENT"
            return self._json({"error": "the request JSON is nested too deeply"}, 400)
        except _ReadTimeout:
            call.code = "DEADLINE_EXCEEDED"
            return await self._read_timed_out(request)
        except asyncio.CancelledError:
            call.code = "CANCELLED"  # ended by the server's shutdown
            raise
        except Exception:
            call.code = "INTERNAL"
            log.exception("REST %s %s failed", request.method, request.path)
            return self._json({"error": "internal error"}, 500)
        finally:
            if self._metrics is not None:
                # http_server.cc: the latency of a request answered 200 only; every
                # request under /v1/ counted by its status.
                if call.code == "OK":
                    seconds = time.perf_counter() - call.started
                    self._metrics.observe_request_latency(call.model, call.method, "REST", seconds)
                self._metrics.count_request(call.model, call.code)

    async def _answer(
        self, request: web.Request, path: str, received: bytearray, call: _Call
    ) -> web.Response:
        """What TF Serving's REST handler answers, run on one of its executor's threads;
        records the model and verb the path names, and a status other than OK, in `call`."""
        if request.method == "OPTIONS":
            # http_server.cc: a CORS preflight never reaches the REST handler. It is OK
            # with an http(s) Origin, else FAILED_PRECONDITION; either way no body.
            if _PREFLIGHT_ORIGIN.search(request.headers.get(hdrs.ORIGIN, "")) is None:
                call.code = "FAILED_PRECONDITION"
                return web.Response(status=400, headers=self._headers)
            return web.Response(headers=self._headers)
        if request.method == "POST" and (match := _PREDICTION.fullmatch(path)):
            call.method = match.group(4)
            call.model = urllib.parse.unquote(match.group(1))
            spec = _spec(*match.group(1, 2, 3))
            if call.method not in _VERBS:  # ":PREDICT": parsed, then no verb takes it
                raise invalid(f"Malformed request: {request.method} {path}")
            body = self._decoded(request, received)
            # The session run is timed as its API (predict_util.cc, classifier.cc,
            # regressor.cc), REST or not.
            token = RUNTIME_API.set((call.model, call.method.capitalize()))
            try:
                return self._json(await self._verb(call.method, spec, body))
            finally:
                RUNTIME_API.reset(token)
        if request.method == "GET" and (match := _STATUS.fullmatch(path)):
            call.model = urllib.parse.unquote(match.group(1) or "")
            spec = _spec(*match.group(1, 2, 3))
            # "/METADATA" matches too, and is then a status request, as there.
            metadata = match.group(4) == _METADATA
            api = "get_model_metadata" if metadata else "get_model_status"
            return self._json(await self._get(api, spec))
        raise invalid(f"Malformed request: {request.method} {path}")

    async def _read_timed_out(self, request: web.Request) -> web.Response:
        # 408, then close at once: aiohttp would otherwise linger reading the rest of a
        # body that is not coming.
        seconds = self._read_timeout
        response = self._json(
            {"error": f"timed out reading the request body (nothing received for {seconds:g} s)"},
            408,
        )
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        request.protocol.force_close()
        return response

    async def _next_chunk(self, stream: StreamReader) -> bytes:
        if self._read_timeout is None:
            return await stream.readany()
        try:
            async with asyncio.timeout(self._read_timeout):
                return await stream.readany()
        except TimeoutError:
            raise _ReadTimeout from None

    async def _receive(self, request: web.Request) -> bytearray:
        """The body as sent, read chunk by chunk within the read timeout, and refused as
        soon as it crosses the size bound."""
        body = bytearray()
        while chunk := await self._next_chunk(request.content):
            if len(body) + len(chunk) > self._max_body:
                raise ServingError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"request too large: the body is over the {self._max_body}-byte limit",
                )
            body += chunk
        return body

    def _decoded(self, request: web.Request, received: bytearray) -> bytearray:
        """The body, inflated if gzip-encoded. Like TF Serving (evhttp_request.cc), any
        Content-Encoding holding "gzip", as spelled (`GZIP` is not), is inflated, a step at
        a time so that a small "gzip bomb" never inflates past the limit, and other
        encodings are taken as they are."""
        if "gzip" not in request.headers.get(hdrs.CONTENT_ENCODING, ""):
            return received
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        body = bytearray()
        self._inflate(inflater, received, body)  # bytes after the stream are ignored
        if received and not inflater.eof:
            raise invalid("the body is Content-Encoding gzip but its gzip stream is truncated")
        return body

    @staticmethod
    def _inflate(inflater: "zlib._Decompress", data: bytes, body: bytearray) -> None:
        while data:
            try:
                out = inflater.decompress(
                    data, min(_INFLATE_STEP, MAX_UNCOMPRESSED_BYTES - len(body) + 1)
                )
            except zlib.error as exc:
                raise invalid(
                    f"the body is Content-Encoding gzip but is not valid gzip data ({exc})"
                ) from None
            body += out
            if len(body) > MAX_UNCOMPRESSED_BYTES:
                raise invalid(
                    "the gzip-encoded body inflates to more than "
                    f"{MAX_UNCOMPRESSED_BYTES} bytes (TF Serving's limit)"
                )
            if inflater.eof or (not out and inflater.unconsumed_tail == data):
                return
            data = inflater.unconsumed_tail

    async def _verb(self, verb: str, spec: SpecRef, raw: bytearray) -> dict:
        body = rest_json.parse_body(raw)
        signature = rest_json.signature_name(body)
        if verb == "predict":
            infos = self._dp.input_infos(spec, signature)
            inputs, fmt = rest_json.predict_inputs(
                body, infos, may_hold_booleans=rest_json.may_hold_booleans(raw)
            )
            prediction = await self._dp.predict(
                spec, signature, inputs, timeout_ms=self._run_timeout_ms
            )
            return rest_json.predict_response(prediction.outputs, fmt)
        inp = rest_json.examples_input(body)
        if verb == "classify":
            _, result = await self._dp.classify(spec, signature, inp, self._run_timeout_ms)
            return rest_json.classify_response(result)
        _, result = await self._dp.regress(spec, signature, inp, self._run_timeout_ms)
        return rest_json.regress_response(result)

    async def _get(self, api: str, spec: SpecRef) -> dict:
        options = {
            "preserving_proto_field_name": True,
            "always_print_fields_with_no_presence": True,
        }
        if api == "get_model_status":
            return json_format.MessageToDict(self._dp.model_status(spec), **options)
        response = self._dp.metadata(spec, ["signature_def"])
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return {
            "model_spec": json_format.MessageToDict(response.model_spec, **options),
            "metadata": {"signature_def": json_format.MessageToDict(signature_map, **options)},
        }


def build_app(
    dataplane: DataPlane,
    metrics: Metrics | None,
    *,
    timeout_ms: int,
    threads: int,
    max_body_bytes: int = MAX_BODY_BYTES,
    read_timeout_ms: int = DEFAULT_READ_TIMEOUT_MS,
    cors: bool = False,
    prometheus_path: str | None = None,
    gate: Gate | None = None,
) -> web.Application:
    """The aiohttp application: /v1/... and, if configured, the Prometheus endpoint.

    Serve it with `app_runner`, which sets the matching connection options. Requests pass
    `gate` (tfsp.serving.drain) as they arrive: refused with 503 once it closes. A body
    over `max_body_bytes` as received is RESOURCE_EXHAUSTED (429). Handlers run on
    `threads` threads as TF Serving's run (`HandlerThreads`: at most `threads` - 1 at once).
    """
    executor = HandlerThreads(threads)
    api = RestApi(
        dataplane,
        metrics,
        timeout_ms,
        cors,
        executor=executor,
        max_body_bytes=max_body_bytes,
        read_timeout_seconds=read_timeout_ms / 1000 if read_timeout_ms > 0 else None,
        gate=gate,
    )
    app = web.Application(client_max_size=max_body_bytes)
    if metrics is None:
        prometheus_path = None

    @web.middleware
    async def dispatch(request: web.Request, handler: object) -> web.StreamResponse:
        # evhttp_server.cc (DispatchEvRequest): a request refused before any handler gets
        # libevent's page (http_target); a handler registered for the path itself (the
        # metrics endpoint) comes first, then the REST dispatcher, which takes /v1/...
        # targets; anything else is not found. A middleware, not a route: routes match the
        # URL aiohttp makes of the target, and a CONNECT's authority-form target has no
        # path for any route to match; `handler` (what the empty router found) is unused.
        parsed = http_target.parse(request.method, request.raw_path)
        if isinstance(parsed, int):
            return _libevent_error(parsed)
        path, target = parsed
        if path == prometheus_path:
            # http_server.cc (ProcessPrometheusRequest): any method; the path it compares
            # with the configured one still holds the query string, so a query is refused.
            async with executor.thread():
                if target != prometheus_path:
                    text = f"Unexpected path: {target}. Should be {prometheus_path}"
                    return web.Response(
                        status=400, body=text.encode(), headers={"Content-Type": CONTENT_TYPE}
                    )
                return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})
        if _DISPATCHED.fullmatch(target):
            return await api.handle(request, target)
        return _libevent_error(404)

    app[_RUNNING] = set()
    app.middlewares.extend([_tracked, dispatch])
    app.on_response_prepare.append(_headers_as_libevent_sends)
    return app


# The tasks running a request's handler, from its dispatch to its answer.
_RUNNING = web.AppKey("running_handlers", set)


@web.middleware
async def _tracked(request: web.Request, handler: Callable) -> web.StreamResponse:
    running = request.app[_RUNNING]
    task = asyncio.current_task()
    running.add(task)
    try:
        return await handler(request)
    finally:
        running.discard(task)


def cancel_running_handlers(app: web.Application) -> int:
    """Cancel every request of `build_app`'s app still being handled (when a shutdown's grace
    period is over); how many there were. aiohttp's own shutdown only cancels a handler that
    reads its body, and waits twice its timeout for one that does not (a session run, a wait
    for a REST thread)."""
    running = list(app[_RUNNING])
    for task in running:
        task.cancel()
    return len(running)


# libevent's own Content-Type for an answer that sets none (evhttp_start: the server's
# default_content_type), which TF Serving never changes.
_LIBEVENT_CONTENT_TYPE = "text/html; charset=ISO-8859-1"


async def _headers_as_libevent_sends(request: web.Request, response: web.StreamResponse) -> None:
    """The headers libevent adds or not to every answer (evhttp_make_header_response): no
    Server header; a Date on HTTP/1.1 answers only; a Content-Length only on an answer that
    has a body to send, to an HTTP/1.1 request or one that asked to keep the connection
    alive (else the closing connection ends the body); and its default Content-Type on one
    that has a body to send and set none (a CORS preflight's empty answer)."""
    response.headers.popall(hdrs.SERVER, None)
    if request.version < HttpVersion11:
        response.headers.popall(hdrs.DATE, None)
    # evhttp_response_needs_body: not HEAD, not 1xx, 204 or 304
    needs_body = request.method != "HEAD" and response.status >= 200
    needs_body = needs_body and response.status not in (204, 304)
    # evhttp_is_connection_keepalive: the request's Connection starts "keep-alive", any case
    keep_alive = request.headers.get(hdrs.CONNECTION, "").lower().startswith("keep-alive")
    if not needs_body or (request.version < HttpVersion11 and not keep_alive):
        response.headers.popall(hdrs.CONTENT_LENGTH, None)
    if needs_body and hdrs.CONTENT_TYPE not in response.headers:
        response.headers[hdrs.CONTENT_TYPE] = _LIBEVENT_CONTENT_TYPE


def _libevent_error(status: int) -> web.Response:
    """An answer libevent sends itself (evhttp_send_error): its HTML page, no CORS headers,
    and the connection closed after it."""
    response = web.Response(
        status=status, body=http_target.error_page(status), headers={"Content-Type": "text/html"}
    )
    response.force_close()
    return response


class _ParserRefusalsInOneLine(logging.Filter):
    """aiohttp logs each request its HTTP parser refuses (a bad header line, a target it
    cannot read, TLS sent to the plain port) as an error with a traceback, which anyone who
    can reach the port can fill the log with; TF Serving's libevent logs none. Such a
    refusal (answered 400) is one debug line here; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            lines = str(exc.message).strip().splitlines()
            reason = lines[0] if lines else type(exc).__name__
            log.debug("REST: refused a request HTTP cannot parse: %s", reason)
            return False
        return True


_AIOHTTP_SERVER_LOG = logging.getLogger("aiohttp.server")


def app_runner(
    app: web.Application, *, read_timeout_ms: int, shutdown_timeout: float
) -> web.AppRunner:
    """An AppRunner for `build_app`'s app: no slow client holds a connection for ever.

    `read_timeout_ms` (0: no limit) bounds the wait for a request's headers, counted from the
    connection's opening or the previous response (aiohttp's keep-alive timer, which also
    runs while headers are partly received), and the lingering read of an unread body after
    an early answer; `build_app` bounds each pause inside a body. Bodies reach the handler
    as sent (auto_decompress off): `RestApi` inflates gzip itself, with a size limit. A
    request aiohttp's HTTP parser refuses is logged in one debug line, not a traceback.
    """
    seconds = read_timeout_ms / 1000 if read_timeout_ms > 0 else math.inf
    if not any(isinstance(f, _ParserRefusalsInOneLine) for f in _AIOHTTP_SERVER_LOG.filters):
        _AIOHTTP_SERVER_LOG.addFilter(_ParserRefusalsInOneLine())
    return web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=seconds,
        lingering_time=min(10.0, seconds),
        auto_decompress=False,
        max_line_size=MAX_HEADER_LINE_BYTES,
        max_field_size=MAX_HEADER_LINE_BYTES,
        max_headers=MAX_HEADERS,
    )
