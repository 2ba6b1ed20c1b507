"""Request lines as TF Serving's HTTP server reads them (libevent 2.1.12's URI parse, the
methods it allows), before any handler: the parsed target, or the status it refuses with."""

import pytest

from tfsp.serving.http_target import Target, error_page, parse

CASES = [
    # (id, method, raw target, expected: Target(path, path with query) or a status)
    ("origin form", "GET", "/v1/models/m", Target("/v1/models/m", "/v1/models/m")),
    (
        "query kept",
        "POST",
        "/v1/models/m:predict?x=1",
        Target("/v1/models/m:predict", "/v1/models/m:predict?x=1"),
    ),
    ("query and fragment", "GET", "/a?b?c#d", Target("/a", "/a?b?c#d")),
    ("empty query", "GET", "/a?", Target("/a", "/a?")),
    ("still percent-encoded", "GET", "/%6Detrics", Target("/%6Detrics", "/%6Detrics")),
    ("absolute", "GET", "http://h:8501/v1/models/m", Target("/v1/models/m", "/v1/models/m")),
    (
        "a scheme without an authority",
        "GET",
        "http:/v1/models/m",
        Target("/v1/models/m", "/v1/models/m"),
    ),
    (
        "an authority without a scheme",
        "GET",
        "//h/v1/models/m",
        Target("/v1/models/m", "/v1/models/m"),
    ),
    ("userinfo and an empty port", "GET", "//u:p@h:/x", Target("/x", "/x")),
    ("an IPv6 literal", "GET", "//[::1]:80/x", Target("/x", "/x")),
    ("an IPvFuture literal", "GET", "//[v1.a:b]/x", Target("/x", "/x")),
    ("an authority alone", "GET", "//h", Target("", "")),
    # the strict parse (ParsedEvRequest::decode): RFC 3986's characters only
    ("a brace", "GET", "/v1/models/{m}", 400),
    ("a bar in the query", "POST", "/v1/models/m:predict?x=|", 400),
    ("a bad escape", "GET", "/v1/models/m%zz", 400),
    ("a # in the fragment", "GET", "/a#b#c", 400),
    # the authority (parse_authority), checked by both parses
    ("a port that is not a number", "GET", "//h:x/v1/models/m", 400),
    ("a port over 65535", "GET", "//h:65536/x", 400),
    ("a host with a bracket", "GET", "//h]/x", 400),
    ("a bad IPv6 literal", "GET", "//[::g]/x", 400),
    ("an IPv6 literal too long to copy", "GET", "//[" + "0" * 70 + "::1]/x", 400),
    ("a bad userinfo", "GET", "//u[@h/x", 400),
    # no scheme: the first segment may not hold ":" (path_matches_noscheme)
    ("a colon in a scheme-less first segment", "GET", "1a:b/c", 400),
    # methods TF Serving does not allow (evhttp_set_allowed_methods): 501, once the
    # lenient parse has passed; a target even that refuses is 400 first
    ("an unknown method", "PROPFIND", "/v1/models/m", 501),
    ("TRACE", "TRACE", "/v1/models/m", 501),
    ("an unknown method, a brace", "PROPFIND", "/v1/models/{m}", 501),
    ("an unknown method, a bad port", "PROPFIND", "//h:x/v1", 400),
    ("CONNECT", "CONNECT", "h:443", 501),
    ("CONNECT, a bad port", "CONNECT", "h:443x", 400),
    ("CONNECT, the rest ignored", "CONNECT", "h:443/{", 501),
]


@pytest.mark.parametrize("method, raw, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_request_line_is_read_as_tf_servings_http_server_reads_it(method, raw, expected):
    assert parse(method, raw) == expected


@pytest.mark.parametrize("method", ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_the_methods_tf_serving_allows_reach_its_dispatcher(method):
    assert parse(method, "/x") == Target("/x", "/x")


def test_libevents_own_error_page():
    # evhttp_send_error with no reason: the status's phrase as title and heading
    assert error_page(501) == (
        b"<HTML><HEAD>\n<TITLE>501 Not Implemented</TITLE>\n</HEAD><BODY>\n"
        b"<H1>Not Implemented</H1>\n</BODY></HTML>\n"
    )
