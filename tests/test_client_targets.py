"""Which addresses the clients take (serving/client.py), in-process: gRPC's own reading of a
malformed target would dial another port or fail later with resolver text."""

import pytest

from tfsp.serving.client import RestClient, ServingClient, check_grpc_target, split_host_port


@pytest.mark.parametrize(
    "target",
    ["localhost:8500", "127.0.0.1:1", "[::1]:8500", "dns:///tf-serving.svc:8500",
     "ipv4:10.0.0.1:8500,10.0.0.2:8500", "unix:/tmp/tfsp.sock", "unix-abstract:tfsp"],
)  # fmt: skip
def test_grpc_targets_taken(target):
    check_grpc_target(target)


@pytest.mark.parametrize(
    "target, message",
    [
        ("localhost", "'localhost' is not host:port"),  # gRPC would dial port 443
        ("localhost:99999", "'localhost:99999' is not host:port"),  # gRPC wraps it to 34463
        ("localhost:0", "'localhost:0' is not host:port"),
        (":8500", "':8500' names no host"),
        ("http://localhost:8500", "gRPC takes host:port or dns:///name:port, not a http:// URL"),
        # gRPC reads an unbracketed IPv6 address as a host without a port, and dials 443
        ("fe80::1:8500", r"is not host:port \(an IPv6 host goes in brackets: \[::1\]:8500\)"),
        ("::1", r"is not host:port \(an IPv6 host goes in brackets: \[::1\]:8500\)"),
        ("a]:1", "is not host:port"),
        ("h:²", "is not host:port"),  # a digit to str.isdigit, not to int()
    ],
)
def test_grpc_targets_gRPC_would_misread_are_refused(target, message):
    with pytest.raises(ValueError, match=message):
        check_grpc_target(target)
    with pytest.raises(ValueError, match=message):
        ServingClient(target)


def test_rest_addresses_share_the_host_port_reading():
    assert split_host_port("[::1]:8501") == ("::1", 8501)
    assert RestClient(":8501")._host == "localhost"  # an empty host is localhost over REST
    with pytest.raises(ValueError, match="is not host:port"):
        RestClient("localhost")
