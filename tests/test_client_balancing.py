"""The client spreads calls over every server a target resolves to (round robin)."""

import numpy as np
import pytest

from tests.serving_harness import build_toy_model, running_server
from tfsp.serving.client import ServingClient

pytestmark = pytest.mark.integration  # starts model servers


def test_calls_alternate_between_the_servers_of_one_target(tmp_path):
    # Two replicas serving different weights, so each answer tells which replica gave it.
    for scale in (1, 2):
        build_toy_model(tmp_path / f"m{scale}" / "toy" / "1", float(scale))
    with (
        running_server(
            "--model_name=toy", f"--model_base_path={tmp_path / 'm1' / 'toy'}", rest=False
        ) as one,
        running_server(
            "--model_name=toy", f"--model_base_path={tmp_path / 'm2' / 'toy'}", rest=False
        ) as two,
    ):
        target = f"ipv4:127.0.0.1:{one.port},127.0.0.1:{two.port}"
        with ServingClient(target) as client:
            answers = [
                float(client.predict("toy", {"x": np.ones((1, 3), np.float32)})[1]["y"][0, 0])
                for _ in range(20)
            ]
    assert set(answers) == {1.0, 2.0}
    assert min(answers.count(1.0), answers.count(2.0)) >= 5


def test_dns_targets_are_accepted(tmp_path):
    build_toy_model(tmp_path / "toy" / "1", 3.0)
    with running_server(
        "--model_name=toy", f"--model_base_path={tmp_path / 'toy'}", rest=False
    ) as server:
        with ServingClient(f"dns:///localhost:{server.port}") as client:
            _, outputs = client.predict("toy", {"x": np.ones((2, 3), np.float32)})
    np.testing.assert_allclose(outputs["y"], 3.0)
