"""The REST adapter (aiohttp): TF Serving's /v1/models URLs over the data plane.

Paths are matched with TF Serving's own patterns (case-insensitive, version or label,
`:predict|:classify|:regress`, `/metadata`); errors are `{"error": "..."}` with the HTTP
status TF Serving maps each gRPC code to.
"""

import asyncio
import json
import logging
import re
import time
import urllib.parse

from aiohttp import web
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from serving import rest_json
from serving.dataplane import DataPlane, SpecRef
from serving.errors import ServingError, invalid
from serving.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("serving")

_PREDICTION = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}


def _spec(name: str, version: str | None, label: str | None) -> SpecRef:
    name = urllib.parse.unquote(name or "")
    if not name:
        raise invalid("Missing model name in request.")
    return SpecRef(
        name=name,
        version=int(version) if version else None,
        label=urllib.parse.unquote(label) if label else None,
    )


class RestApi:
    """Request handlers for one data plane."""

    def __init__(
        self,
        dataplane: DataPlane,
        metrics: Metrics | None,
        timeout_seconds: float | None,
        cors: bool = False,
    ) -> None:
        self._dp = dataplane
        self._metrics = metrics
        self._timeout = timeout_seconds
        self._headers = dict(_CORS) if cors else {}

    def _json(self, payload: object, status: int = 200) -> web.Response:
        return web.Response(
            text=json.dumps(payload),
            status=status,
            content_type="application/json",
            headers=self._headers,
        )

    async def handle(self, request: web.Request) -> web.Response:
        """Dispatch any /v1/... request."""
        started = time.perf_counter()
        api, model, code = "unknown", "", "OK"
        try:
            path = request.raw_path.split("?", 1)[0]
            if request.method == "POST" and (match := _PREDICTION.fullmatch(path)):
                api = match.group(4).lower()
                spec = _spec(*match.group(1, 2, 3))
                model = spec.name
                body = await request.read()
                work = self._verb(api, spec, body)
            elif request.method == "GET" and (match := _STATUS.fullmatch(path)):
                spec = _spec(*match.group(1, 2, 3))
                model = spec.name
                api = "get_model_metadata" if match.group(4) else "get_model_status"
                work = self._get(api, spec)
            else:
                raise invalid(f"Malformed request: {request.method} {path}")
            payload = await asyncio.wait_for(work, self._timeout)
            return self._json(payload)
        except ServingError as exc:
            code = exc.code.name
            return self._json({"error": exc.message}, exc.http_status)
        except web.HTTPRequestEntityTooLarge as exc:
            code = "RESOURCE_EXHAUSTED"
            return self._json({"error": f"request too large: {exc.text}"}, 429)
        except TimeoutError:
            code = "DEADLINE_EXCEEDED"
            return self._json({"error": "Deadline exceeded"}, 504)
        except Exception:
            code = "INTERNAL"
            log.exception("REST %s %s failed", request.method, request.path)
            return self._json({"error": "internal error"}, 500)
        finally:
            if self._metrics is not None:
                name = model if self._dp.manager.knows(model) else ""
                seconds = time.perf_counter() - started
                self._metrics.observe_request(name, api, "REST", code, seconds)

    async def _verb(self, verb: str, spec: SpecRef, raw: bytes) -> dict:
        body = rest_json.parse_body(raw)
        signature = rest_json.signature_name(body)
        if verb == "predict":
            infos = self._dp.input_infos(spec, signature)
            inputs, fmt = rest_json.predict_inputs(body, infos)
            prediction = await self._dp.predict(spec, signature, inputs)
            return rest_json.predict_response(prediction.outputs, fmt)
        inp = rest_json.examples_input(body)
        if verb == "classify":
            _, result = await self._dp.classify(spec, signature, inp)
            return rest_json.classify_response(result)
        _, result = await self._dp.regress(spec, signature, inp)
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
    max_body_bytes: int,
    cors: bool = False,
    prometheus_path: str | None = None,
) -> web.Application:
    """The aiohttp application: /v1/... and, if configured, the Prometheus endpoint."""
    api = RestApi(dataplane, metrics, timeout_ms / 1000 if timeout_ms > 0 else None, cors)
    app = web.Application(client_max_size=max_body_bytes)
    if prometheus_path and metrics is not None:

        async def prometheus(request: web.Request) -> web.Response:
            return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

        app.router.add_get(prometheus_path, prometheus)
    app.router.add_route("*", "/{tail:[vV]1(/.*)?}", api.handle)
    return app
