"""Hostile REST requests against a real server process: each gets the status TF Serving
gives it, with the REST handler's one-line JSON error or, for what TF Serving's HTTP server
refuses before any handler, libevent's own page; memory stays bounded, slow clients are
cut off, and the server answers a good request afterwards.
"""

import asyncio
import contextlib
import http.client
import json
import socket
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.serving_harness import (
    BatchRecorder,
    build_toy_model,
    in_process_dataplane,
    post_json,
    running_server,
)
from tfsp.serving import http_target, rest
from tfsp.serving.config import BatchingSettings
from tfsp.serving.metrics import Metrics

pytestmark = pytest.mark.integration  # starts a model server

READ_TIMEOUT_S = 1.5
RSS_GROWTH_BOUND_MIB = 64
GOOD = b'{"instances": [[1, 2, 3]]}'
PREDICT = "/v1/models/toy:predict"
STATUS_1 = {
    "version": "1",
    "state": "AVAILABLE",
    "status": {"error_code": "OK", "error_message": ""},
}


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _gzip(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def _bomb(inflated_mib: int) -> bytes:
    """A gzip stream of `inflated_mib` MiB of zeros, built without holding them."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(inflated_mib)) + packer.flush()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("rest-hardening") / "toy"
    build_toy_model(root / "1", 1.0)
    with running_server(
        "--model_name=toy",
        f"--model_base_path={root}",
        f"--rest_api_read_timeout_in_ms={int(READ_TIMEOUT_S * 1000)}",
        log_path=root.parent / "server.log",
    ) as proc:
        _wait_for_rest(proc)
        yield proc


def _wait_for_rest(proc: object) -> None:
    # REST opens just after gRPC, which is what running_server waits for.
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", proc.rest_port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, proc.log()
            time.sleep(0.1)


def _post(server: object, body: bytes, headers: dict | None = None) -> tuple[int, object]:
    return post_json(server, PREDICT, body, headers)


def _answers_good_request(server: object) -> None:
    assert server.alive(), server.log()
    assert _post(server, GOOD) == (200, {"predictions": [[1.0, 2.0, 3.0]]})


GZIP = {"Content-Encoding": "gzip"}
CASES = [
    # (id, body, headers, status, words the error must contain)
    ("10,000 levels of [", b'{"instances": ' + b"[" * 10_000, {}, 400, "nested too deeply"),
    ("lone high surrogate", b'{"instances": [["\\ud800"]]}', {}, 400, "surrogate"),
    ("lone low surrogate key", b'{"inputs": {"\\udc00": [1]}}', {}, 400, "surrogate"),
    (
        "5,000-digit integer",
        b'{"instances": [[' + b"7" * 5000 + b", 1, 2]]}",
        {},
        400,
        "Number too big",
    ),
    ("1e400 overflows a double", b'{"instances": [[1e400, 1, 2]]}', {}, 400, "Number too big"),
    ("gzip header, not gzip", GOOD, GZIP, 400, "not valid gzip"),
    ("truncated gzip", _gzip(GOOD)[:-12], GZIP, 400, "truncated"),
    # evhttp_request.cc looks for "gzip" in the header's value case-sensitively: the gzip
    # bytes reach the JSON parser as they are.
    ("GZIP is not gzip", _gzip(GOOD), {"Content-Encoding": "GZIP"}, 400, "JSON Parse error"),
    ("true in a float tensor", b'{"instances": [[1, true, 3]]}', {}, 400, "Type: True is not"),
    ("all booleans, float tensor", b'{"instances": [[true, false, true]]}', {}, 400, "float"),
    (
        "true in an int64 tensor",
        b'{"signature_name": "types", "inputs": {"a": [1, true], "s": ["x", "y"], '
        b'"h": [[1, 2], [3, 4]]}}',
        {},
        400,
        "JSON Value: true Type: True is not of expected type: int64",
    ),
    ("invalid UTF-8", b'{"instances": [["\xff"]]}', {}, 400, "UTF-8"),
]


@pytest.mark.parametrize(
    "body, headers, status, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_bodies_get_a_json_error(server, body, headers, status, words):
    got, reply = _post(server, body, headers)
    assert got == status, reply
    assert isinstance(reply, dict) and set(reply) == {"error"}, reply
    assert words in reply["error"] and "\n" not in reply["error"], reply
    _answers_good_request(server)


ACCEPTED = [
    # TF Serving's RapidJSON stops after the first JSON value (kParseStopWhenDoneFlag).
    ("trailing bytes are ignored", GOOD + b" }garbage", {}),
    ("a real gzip body", _gzip(GOOD), GZIP),
    ("any encoding holding gzip", _gzip(GOOD), {"Content-Encoding": "x-gzip"}),
    ("a valid surrogate pair", b'{"instances": [[1, 2, 3]], "note": "\\ud83d\\ude00"}', {}),
]


@pytest.mark.parametrize("body, headers", [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_bodies_tf_serving_accepts(server, body, headers):
    assert _post(server, body, headers) == (200, {"predictions": [[1.0, 2.0, 3.0]]})


def _exchange(
    server: object,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, http.client.HTTPMessage]:
    """One request with `path` sent as the request target, byte for byte: (status, body,
    response headers)."""
    host, port = server.rest_address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), response.headers
    finally:
        connection.close()


def _request(server: object, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
    """(status, body) of one request with `path` sent as the request target."""
    return _exchange(server, method, path, body)[:2]


MALFORMED = "Malformed request: {method} {path}"
TARGETS = [
    # (id, method, target, status, the JSON reply: a dict, or the error's text)
    # evhttp_request.cc: uri_path() is the path with "?query" (and "#fragment") appended,
    # and http_rest_api_util.cc matches its patterns against all of it.
    ("a query after :predict", "POST", "/v1/models/toy:predict?x=1", 400, MALFORMED),
    ("an empty query after :predict", "POST", "/v1/models/toy:predict?", 400, MALFORMED),
    ("a query after a version", "POST", "/v1/models/toy/versions/1:predict?x=1", 400, MALFORMED),
    ("a query after /metadata", "GET", "/v1/models/toy/metadata?x=1", 400, MALFORMED),
    ("a query after a version's status", "GET", "/v1/models/toy/versions/1?x=1", 400, MALFORMED),
    ("a query after /v1/models", "GET", "/v1/models?x=1", 400, MALFORMED),
    # [^/:]+ takes "?" and "=": the query becomes part of the model's name
    (
        "a query after a model's status",
        "GET",
        "/v1/models/toy?x=1",
        404,
        "Could not find any versions of model toy?x=1",
    ),
    # ... or of the label, which a status request ignores (get_model_status_impl.cc)
    (
        "a query after a label's status",
        "GET",
        "/v1/models/toy/labels/stable?x=1",
        200,
        {"model_version_status": [STATUS_1]},
    ),
    # The patterns ignore case (?i), but http_rest_api_handler.cc dispatches on the
    # captured verb and subresource compared case-sensitively.
    ("an upper-case verb", "POST", "/v1/models/toy:PREDICT", 400, MALFORMED),
    ("a capitalised verb", "POST", "/v1/models/toy:Classify", 400, MALFORMED),
    (
        "an upper-case path",
        "POST",
        "/V1/MODELS/toy:predict",
        200,
        {"predictions": [[1.0, 2.0, 3.0]]},
    ),
    # an absolute target counts by its path (libevent's URI parse)
    (
        "an absolute target",
        "GET",
        "http://tfsp:1/v1/models/toy",
        200,
        {"model_version_status": [STATUS_1]},
    ),
    # ... and so does one with an authority but no scheme
    (
        "an authority without a scheme",
        "GET",
        "//tfsp:1/v1/models/toy",
        200,
        {"model_version_status": [STATUS_1]},
    ),
    (
        "an upper-case /METADATA is a status request",
        "GET",
        "/v1/models/toy/METADATA",
        200,
        {"model_version_status": [STATUS_1]},
    ),
]


@pytest.mark.parametrize(
    "method, target, status, reply", [c[1:] for c in TARGETS], ids=[c[0] for c in TARGETS]
)
def test_targets_are_parsed_and_dispatched_as_in_tf_serving(server, method, target, status, reply):
    got, raw = _request(server, method, target, GOOD if method == "POST" else None)
    if isinstance(reply, str):
        reply = {"error": reply.format(method=method, path=target)}
    assert (got, json.loads(raw)) == (status, reply)


@pytest.mark.parametrize("target", ["/v1", "/v1?x=1", "/V1?/models/toy"])
def test_what_tf_servings_dispatcher_does_not_take_is_not_found(server, target):
    # http_server.cc: the dispatcher takes a target only if (?i)/v1/.* matches all of it,
    # query included; evhttp_server.cc answers any other with libevent's 404 page.
    for method in ("GET", "POST"):
        _refused_by_the_http_server(server, method, target, 404)
    _answers_good_request(server)


@pytest.mark.parametrize(
    "method, target",
    [
        ("GET", "/v1/models/{toy}"),
        ("GET", "/v1/models/toy|x"),
        ("GET", '/v1/models/"toy"'),
        ("GET", "/v1/models/toy^"),
        ("GET", "/v1/models/toy%zz"),
        ("POST", "/v1/models/toy:predict?x=<1>"),
        ("GET", "//tfsp:x/v1/models/toy"),
        ("PROPFIND", "//tfsp:x/v1/models/toy"),
    ],
)
def test_what_tf_servings_http_server_cannot_parse_is_a_bad_request(server, method, target):
    # A target libevent's URI parse refuses (a character RFC 3986 does not allow, "%"
    # without two hex digits, a port that is not a number) is answered 400 before any
    # handler (http_target: ParsedEvRequest::decode, or libevent itself first).
    _refused_by_the_http_server(server, method, target, 400)
    _answers_good_request(server)


@pytest.mark.parametrize(
    "method, target",
    [("PROPFIND", "/v1/models/toy"), ("TRACE", PREDICT), ("CONNECT", "tfsp:8501")],
)
def test_methods_tf_serving_does_not_allow_are_not_implemented(server, method, target):
    # evhttp_server.cc allows GET, POST, HEAD, PUT, DELETE, OPTIONS and PATCH; libevent
    # answers any other method 501 before TF Serving's dispatcher sees the request.
    _refused_by_the_http_server(server, method, target, 501)
    _answers_good_request(server)


def _refused_by_the_http_server(server: object, method: str, target: str, status: int) -> None:
    """The request gets libevent's own answer (evhttp_send_error): its HTML page for
    `status`, and the connection closed after it."""
    request = f"{method} {target} HTTP/1.1\r\nHost: tfsp\r\nContent-Length: 2\r\n\r\n{{}}"
    received = _until_closed(server, request.encode())
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)
    }
    assert status_line.split(" ", 2)[1] == str(status), received
    assert (headers["content-type"], headers["connection"]) == ("text/html", "close")
    assert body == http_target.error_page(status)


def _until_closed(server: object, data: bytes) -> bytes:
    """Send `data` on a new connection; what the server sends back until it closes it."""
    host, port = server.rest_address.split(":")
    received = b""
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(data)
        while chunk := connection.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /v1/models/toy HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET http:/v1/models/toy HTTP/1.1\r\nHost: tfsp\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(40),  # TLS to the plain port
    ],
    ids=["a header without a colon", "a target the HTTP parser cannot read", "TLS"],
)
def test_what_the_http_parser_refuses_is_a_bad_request_without_a_traceback(server, raw):
    # aiohttp's parser answers these 400 itself; it would log each with a traceback, which
    # anyone reaching the port could fill the log with (TF Serving's libevent logs none).
    received = _until_closed(server, raw)
    assert received.split(b"\r\n", 1)[0].split(b" ")[1] == b"400", received
    assert "Traceback" not in server.log()
    _answers_good_request(server)


def test_long_headers_and_targets_are_read_as_libevent_reads_them(server):
    # TF Serving sets no header size limit in libevent, so a 20 KB header (a large token),
    # many headers, or a 20 KB target reach its handlers; aiohttp's defaults refuse them.
    many = {f"X-Header-{i}": "v" for i in range(300)}
    for headers in ({"Authorization": "Bearer " + "t" * 20_000}, many):
        assert _post(server, GOOD, headers) == (200, {"predictions": [[1.0, 2.0, 3.0]]})
    name = "m" * 20_000
    status, body = _request(server, "GET", f"/v1/models/{name}", None)
    assert (status, json.loads(body)) == (
        404,
        {"error": f"Could not find any versions of model {name}"},
    )


def test_a_client_expecting_100_continue_gets_it_before_sending_its_body(server):
    # curl sends "Expect: 100-continue" with bodies over 1 KiB and waits for the interim
    # answer (a second, if none comes); libevent sends it as soon as the headers are read.
    body = GOOD + b" " * 2_000
    host, port = server.rest_address.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        head = (
            f"POST {PREDICT} HTTP/1.1\r\nHost: tfsp\r\nExpect: 100-continue\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        connection.sendall(head.encode())
        assert connection.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        connection.sendall(body)
        answer = b""
        while not answer.endswith(b"}") and (chunk := connection.recv(65536)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert answer.endswith(b'{"predictions": [[1.0, 2.0, 3.0]]}'), answer


def test_a_rest_error_keeps_the_connection_open(server):
    # The REST handler's own errors (JSON) are ordinary replies: the client's connection
    # stays usable, as with evhttp_send_reply.
    host, port = server.rest_address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        for _ in range(2):
            connection.request("GET", "/v1/models/nope")
            response = connection.getresponse()
            assert (response.status, response.will_close) == (404, False)
            response.read()
            assert connection.sock is not None
    finally:
        connection.close()


def test_a_cors_preflight_is_answered_without_the_rest_handler(server):
    # http_server.cc answers OPTIONS itself: OK with an http(s) Origin, FAILED_PRECONDITION
    # (400) without one, and no body either way (the handler's JSON error is never written),
    # so no Content-Type of TF Serving's: libevent adds its default.
    for origin, status in (("https://app.example", 200), ("", 400), ("app.example", 400)):
        headers = {"Origin": origin} if origin else {}
        got, body, sent = _exchange(server, "OPTIONS", PREDICT, headers=headers)
        assert (got, body) == (status, b"")
        assert sent["Content-Type"] == "text/html; charset=ISO-8859-1"
    _answers_good_request(server)


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_answers_carry_the_headers_tf_serving_and_libevent_send(server, version):
    # http_rest_api_util.cc sets "Content-Type: application/json" on every handler answer,
    # errors included; libevent (evhttp_make_header_response) adds a Date to HTTP/1.1
    # answers only and never a Server header.
    for method, path, body, status in (
        ("POST", PREDICT, GOOD, 200),
        ("GET", "/v1/models/toy", None, 200),
        ("GET", "/v1/models/nope", None, 404),
    ):
        head = f"{method} {path} HTTP/{version}\r\nHost: tfsp\r\n"
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        answer = _until_closed(
            server, (head + "Connection: close\r\n\r\n").encode() + (body or b"")
        )
        lines = answer.split(b"\r\n\r\n")[0].decode().split("\r\n")
        sent = {
            name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])
        }
        assert lines[0].startswith(f"HTTP/{version} {status} "), answer
        assert sent["content-type"] == "application/json", answer
        assert "server" not in sent, answer
        assert ("date" in sent) is (version == "1.1"), answer
        # Over HTTP/1.0 without keep-alive the closing connection ends the body.
        length = str(len(answer.split(b"\r\n\r\n", 1)[1]))
        assert sent.get("content-length") == (length if version == "1.1" else None), answer


@pytest.mark.parametrize("connection", ["keep-alive", "Keep-Alive", "keep-alive, te"])
def test_an_http_1_0_keep_alive_answer_has_its_length(server, connection):
    # libevent (evhttp_is_connection_keepalive) keeps an HTTP/1.0 connection whose request's
    # Connection starts with "keep-alive", in any case, and then sends a Content-Length: the
    # client needs it to find the end of the answer and send its next request.
    host, port = server.rest_address.split(":")
    request = f"GET /v1/models/toy HTTP/1.0\r\nConnection: {connection}\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        reader = sock.makefile("rb")
        for _ in range(2):  # the second request on the same connection
            sock.sendall(request)
            assert reader.readline().startswith(b"HTTP/1.0 200 ")
            headers = {}
            while (line := reader.readline()) != b"\r\n":
                name, _, value = line.decode().partition(": ")
                headers[name.lower()] = value.strip()
            body = reader.read(int(headers["content-length"]))
            assert json.loads(body) == {"model_version_status": [STATUS_1]}


def test_a_head_answer_has_no_length_and_the_connection_goes_on(server):
    # evhttp_response_needs_body is false for HEAD: libevent sends the handler's headers (a
    # HEAD is a malformed request to TF Serving's REST handler) without a Content-Length.
    host, port = server.rest_address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("HEAD", "/v1/models/toy")
        response = connection.getresponse()
        assert (response.status, response.read()) == (400, b"")
        assert response.getheader("Content-Length") is None
        assert response.getheader("Content-Type") == "application/json"
        connection.request("GET", "/v1/models/toy")
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())) == (
            200,
            {"model_version_status": [STATUS_1]},
        )
    finally:
        connection.close()


def test_cors_headers_are_sent_on_every_answer_with_cors_support(tmp_path):
    # http_server.cc adds http_rest_api_util.cc's three headers to every REST answer,
    # preflights and errors included, when --rest_api_enable_cors_support is set.
    root = tmp_path / "toy"
    build_toy_model(root / "1", 1.0)
    cors = {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "POST, GET",
        "Access-Control-Allow-Headers": "Content-Type",
    }
    flags = ("--model_name=toy", f"--model_base_path={root}", "--rest_api_enable_cors_support")
    with running_server(*flags, log_path=tmp_path / "server.log") as proc:
        _wait_for_rest(proc)
        for method, path, headers, status in (
            ("OPTIONS", PREDICT, {"Origin": "http://app.example"}, 200),
            ("POST", PREDICT, {}, 200),
            ("GET", "/v1/models/nope", {}, 404),
        ):
            body = GOOD if method == "POST" else None
            got, _, sent = _exchange(proc, method, path, body, headers)
            assert (got, {name: sent[name] for name in cors}) == (status, cors)


def test_gzip_bomb_is_refused_with_bounded_memory(server):
    bomb = _bomb(256)
    assert len(bomb) < 300_000
    _answers_good_request(server)
    before = _rss_mib(server.process.pid)
    got, reply = _post(server, bomb, GZIP)
    assert got == 400, reply
    assert "inflates to more than 104857600 bytes" in reply["error"], reply
    growth = _rss_mib(server.process.pid) - before
    assert growth < RSS_GROWTH_BOUND_MIB, f"server RSS grew by {growth:.0f} MiB"
    _answers_good_request(server)


def test_a_body_over_the_bound_is_refused_as_it_arrives(tmp_path):
    # rest.MAX_BODY_BYTES (2 GiB) is too large to send here: the same check, with the
    # bound at 1 KiB, on the REST app served in this process from a real port.
    root = tmp_path / "toy"
    build_toy_model(root / "1", 1.0)
    fits = GOOD + b" " * (1024 - len(GOOD))
    # The client stops sending when the server answers early; most of this is never read.
    over = GOOD + b" " * (1 << 20)

    async def exchanges(dataplane: object) -> list[tuple[int, dict]]:
        app = rest.build_app(dataplane, None, timeout_ms=30_000, threads=8, max_body_bytes=1024)
        runner = rest.app_runner(app, read_timeout_ms=5_000, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as session:
                answers = []
                for body in (fits, over, fits):
                    url = f"http://127.0.0.1:{port}{PREDICT}"
                    async with session.post(url, data=body) as response:
                        answers.append((response.status, await response.json()))
                return answers
        finally:
            await runner.cleanup()

    with in_process_dataplane(root) as dataplane:
        answers = asyncio.run(exchanges(dataplane))
    good = (200, {"predictions": [[1.0, 2.0, 3.0]]})
    refused = (429, {"error": "request too large: the body is over the 1024-byte limit"})
    assert answers == [good, refused, good]


def test_rest_handlers_run_on_all_but_one_executor_thread_and_the_rest_wait(tmp_path):
    """TF Serving runs REST handlers on --rest_api_num_threads threads, one of which runs
    libevent's event loop (evhttp_server.cc StartAcceptingRequests): with 3 threads two
    Predicts run at once and make a batch, the next two wait for them and make the next;
    none is refused. Measured by the batches the calls make (a 1 s batch timeout)."""
    root = tmp_path / "toy"
    build_toy_model(root / "1", 1.0)
    recorder = BatchRecorder()
    settings = BatchingSettings(
        max_batch_size=8, batch_timeout_micros=1_000_000, num_batch_threads=1
    )

    async def four_predicts(dataplane: object) -> list[tuple[int, dict]]:
        async with _served_app(dataplane, threads=3) as url, aiohttp.ClientSession() as session:

            async def one() -> tuple[int, dict]:
                async with session.post(url + PREDICT, data=GOOD) as response:
                    return response.status, await response.json()

            return await asyncio.gather(*(one() for _ in range(4)))

    with in_process_dataplane(root, batching=settings, batch_observer=recorder) as dataplane:
        answers = asyncio.run(four_predicts(dataplane))
    assert answers == [(200, {"predictions": [[1.0, 2.0, 3.0]]})] * 4
    assert recorder.batches == [(2, 0), (2, 0)]


def test_with_one_rest_thread_no_handler_ever_runs(tmp_path):
    """With --rest_api_num_threads=1 the event loop has the only thread: a REST request, or
    a metrics scrape, is never answered; what libevent answers itself (a path no handler
    takes) still is."""
    root = tmp_path / "toy"
    build_toy_model(root / "1", 1.0)

    async def exchanges(dataplane: object) -> list[object]:
        async with _served_app(dataplane, threads=1) as url, aiohttp.ClientSession() as session:

            async def status_within(method: str, path: str, seconds: float) -> object:
                try:
                    async with asyncio.timeout(seconds):
                        async with session.request(method, url + path, data=GOOD) as response:
                            return response.status
                except TimeoutError:
                    return "no answer"

            return [
                await status_within("POST", PREDICT, 1.0),
                await status_within("GET", "/v1/models/toy", 1.0),
                await status_within("GET", "/metrics", 1.0),
                await status_within("GET", "/elsewhere", 5.0),
            ]

    with in_process_dataplane(root) as dataplane:
        answers = asyncio.run(exchanges(dataplane))
    assert answers == ["no answer", "no answer", "no answer", 404]


@contextlib.asynccontextmanager
async def _served_app(dataplane: object, *, threads: int) -> AsyncIterator[str]:
    """`rest.build_app` on a real port in this process, with metrics at /metrics; its URL."""
    app = rest.build_app(
        dataplane, Metrics(), timeout_ms=30_000, threads=threads, prometheus_path="/metrics"
    )
    runner = rest.app_runner(app, read_timeout_ms=5_000, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def _closed_after(server: object, data: bytes) -> tuple[float, bytes]:
    """Send `data` on a raw socket, then read until the server closes it."""
    host, port = server.rest_address.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        started = time.monotonic()
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return time.monotonic() - started, received


SLOW = [
    ("nothing sent", b""),
    ("half the headers", f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n".encode()),
    (
        "headers, part of the body",
        f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n".encode()
        + b'{"instances": ',
    ),
]


@pytest.mark.parametrize("data", [c[1] for c in SLOW], ids=[c[0] for c in SLOW])
def test_slow_clients_are_cut_off(server, data):
    elapsed, received = _closed_after(server, data)
    assert READ_TIMEOUT_S * 0.8 <= elapsed < READ_TIMEOUT_S + 2.0, elapsed
    if b"Content-Length" in data:  # stalled in the body: told why before the close
        head, _, payload = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), received
        assert "timed out reading the request body" in json.loads(payload)["error"]
    _answers_good_request(server)


def test_server_log_has_no_traceback(server):
    assert "Traceback" not in server.log()
