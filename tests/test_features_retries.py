"""Which failed calls a feature pull retries (serving/features.py), in-process."""

import argparse

import pytest

from tfsp.cli import build_parser
from tfsp.core.errors import UserError
from tfsp.serving.client import ClientError
from tfsp.serving.features import with_retries


def _failing(*failures: ClientError) -> object:
    """A call that raises `failures` in turn, then answers "done"."""
    left = list(failures)

    def call() -> str:
        if left:
            raise left.pop(0)
        return "done"

    return call


@pytest.mark.parametrize(
    "failure",
    [
        ClientError("UNAVAILABLE", "connection refused"),
        ClientError("DEADLINE_EXCEEDED", "Deadline Exceeded"),
        # a server whose gRPC threads are all busy (TF Serving's --grpc_max_threads)
        ClientError("RESOURCE_EXHAUSTED", "Server Threadpool Exhausted"),
    ],
    ids=["unavailable", "deadline", "threads busy"],
)
def test_transient_failures_are_retried(failure):
    assert with_retries(_failing(failure, failure), retries=2, what="pull") == "done"


def test_other_failures_are_not_retried():
    too_large = ClientError("RESOURCE_EXHAUSTED", "Received message larger than max")
    with pytest.raises(UserError) as caught:
        with_retries(_failing(too_large), retries=5, what="pull")
    assert str(caught.value) == "pull: RESOURCE_EXHAUSTED: Received message larger than max"


def test_the_last_retryable_failure_says_how_many_tries():
    busy = ClientError("RESOURCE_EXHAUSTED", "Server Threadpool Exhausted")
    with pytest.raises(UserError) as caught:
        with_retries(_failing(busy, busy), retries=1, what="pull")
    assert (
        str(caught.value) == "pull: RESOURCE_EXHAUSTED: Server Threadpool Exhausted after 2 tries"
    )


def test_the_retries_flag_names_every_failure_it_retries():
    # `tfsp features --help` is where a user learns what a pull waits out
    commands = next(
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    retries = next(a for a in commands.choices["features"]._actions if a.dest == "retries")
    for retried in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "Server Threadpool Exhausted"):
        assert retried in retries.help
