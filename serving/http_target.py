"""What TF Serving's HTTP server does with a request line before any handler runs.

TF Serving serves REST on libevent 2.1.12 (workspace.bzl), through its own dispatcher
(util/net_http/server/internal/evhttp_server.cc, evhttp_request.cc). For each request:
1. libevent reads the target with its lenient URI parse (EVHTTP_URI_NONCONFORMANT; a
   CONNECT target as an authority); a target that fails it is a Bad Request (400);
2. a method outside those TF Serving allows (evhttp_set_allowed_methods: GET, POST, HEAD,
   PUT, DELETE, OPTIONS, PATCH) is Not Implemented (501): TRACE, CONNECT, and any method
   libevent does not know;
3. the dispatcher parses the target again, strictly (evhttp_uri_parse, RFC 3986's
   characters): 400 if that fails, else it looks the handlers up by the path.
libevent answers each of these refusals, and the dispatcher's 404, with the same small HTML
page and closes the connection (evhttp_send_error): `error_page`.
"""

import re
import socket
from typing import NamedTuple

_ALLOWED_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"})
_CONNECT = "CONNECT"  # its target is read as an authority alone

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_UNRESERVED_SUBDELIMS = r"A-Za-z0-9._~!$&'()*+,;="
_ESCAPE = r"%[0-9A-Fa-f]{2}"
_USERINFO = re.compile(rf"(?:[{_UNRESERVED_SUBDELIMS}:]|{_ESCAPE})*")
_REG_NAME = re.compile(rf"(?:[{_UNRESERVED_SUBDELIMS}]|{_ESCAPE})*")
_IP_FUTURE = re.compile(rf"v[0-9A-Fa-f]+\.[{_UNRESERVED_SUBDELIMS}:]*")
_PORT = re.compile(r":([0-9]*)\Z")
# end_of_path, strict: a path's characters; a query or fragment may also hold "?".
_PATH = re.compile(rf"(?:[{_UNRESERVED_SUBDELIMS}:@/]|{_ESCAPE})*")
_QUERY = re.compile(rf"(?:[{_UNRESERVED_SUBDELIMS}:@/?]|{_ESCAPE})*")
_END_OF_AUTHORITY = re.compile(r"[/?#]")

# libevent's response phrases for the statuses it sends itself.
_PHRASES = {400: "Bad Request", 404: "Not Found", 501: "Not Implemented"}


class Target(NamedTuple):
    """A parsed request target: the path TF Serving looks handlers up by (still
    percent-encoded), and that path with "?query" and "#fragment" put back, which its REST
    patterns match (evhttp_request.cc, uri_path())."""

    path: str
    path_and_query: str


def parse(method: str, raw_target: str) -> Target | int:
    """The request target as TF Serving's HTTP server reads it, or the status it refuses the
    request with before any handler: 400 or 501 (see the module's steps)."""
    if method not in _ALLOWED_METHODS:
        # Only here does the lenient parse decide anything: a target the strict parse
        # takes passes it too, and failing either is 400 for an allowed method.
        if method == _CONNECT:
            lenient_ok = _authority_ok(raw_target[: _authority_end(raw_target)])
        else:
            lenient_ok = _split(raw_target, strict=False) is not None
        return 501 if lenient_ok else 400
    target = _split(raw_target, strict=True)
    return 400 if target is None else target


def error_page(status: int) -> bytes:
    """The body libevent's evhttp_send_error writes for `status` with no reason given (it is
    sent as text/html, and the connection is closed after it)."""
    phrase = _PHRASES[status]
    return (
        f"<HTML><HEAD>\n<TITLE>{status} {phrase}</TITLE>\n</HEAD><BODY>\n<H1>{phrase}</H1>\n"
        "</BODY></HTML>\n"
    ).encode()


def _split(target: str, *, strict: bool) -> Target | None:
    """evhttp_uri_parse_with_flags: the path, and what follows the scheme and authority
    (the path with its query and fragment); None where it fails. Lenient (not `strict`),
    only the scheme, the authority and a scheme-less first segment are checked; strict,
    every character too."""
    rest = target
    colon = rest.find(":")
    scheme = colon > 0 and _SCHEME.fullmatch(rest[:colon]) is not None
    if scheme:
        rest = rest[colon + 1 :]
    if rest.startswith("//"):
        end = 2 + _authority_end(rest[2:])
        if not _authority_ok(rest[2:end]):
            return None
        rest = rest[end:]
    before_fragment, hash_, fragment = rest.partition("#")
    path, question, query = before_fragment.partition("?")
    if strict and not (
        _PATH.fullmatch(path)
        and (not question or _QUERY.fullmatch(query))
        and (not hash_ or _QUERY.fullmatch(fragment))
    ):
        return None
    if not scheme and ":" in path.partition("/")[0]:  # path_matches_noscheme
        return None
    return Target(path, rest)


def _authority_end(text: str) -> int:
    found = _END_OF_AUTHORITY.search(text)
    return found.start() if found else len(text)


def _authority_ok(authority: str) -> bool:
    """parse_authority: [userinfo "@"] host [":" port], the port at most 65535."""
    userinfo, at, host = authority.partition("@")
    if not at:
        host = authority
    elif not _USERINFO.fullmatch(userinfo):
        return False
    port = _PORT.search(host)
    if port is not None:
        if port.group(1) and int(port.group(1)) > 65535:
            return False
        host = host[: port.start()]
    if len(host) >= 2 and host[0] == "[" and host[-1] == "]":
        return _bracketed_ok(host[1:-1])
    return _REG_NAME.fullmatch(host) is not None


def _bracketed_ok(inside: str) -> bool:
    """bracket_addr_ok: an IPv6 address, or an IPvFuture ("v" hex "." ...)."""
    if inside.startswith("v"):
        return _IP_FUTURE.fullmatch(inside) is not None
    if len(inside) >= 64:  # longer than its 64-byte buffer holds
        return False
    try:
        socket.inet_pton(socket.AF_INET6, inside)
    except (OSError, ValueError):
        return False
    return True
