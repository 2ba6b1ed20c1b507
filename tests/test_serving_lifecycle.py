"""Model lifecycle on a real server: polling, safe swaps, failed loads, config reloads.

One server polls its model folders and its config file every second. The tests run in file
order and build on each other (versions 1 -> 2 -> corrupt 3 -> 4).
"""

import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from tests.serving_harness import (
    ServerProcess,
    build_toy_model,
    copy_version,
    port_accepts,
    running_server,
)
from tfsp.serving.client import ClientError, ServingClient

pytestmark = pytest.mark.integration  # starts a model server

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END
X = np.ones((1, 3), dtype=np.float32)

CONFIG = """
model_config_list {
  config { name: "swap" base_path: "%(root)s/swap" model_platform: "tensorflow" }
}
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("lifecycle")
    builds = root / "builds"
    for version in (1, 2, 4):
        build_toy_model(builds / str(version), float(version))
    build_toy_model(root / "second" / "1", 10.0)
    copy_version(builds / "1", (root / "swap").joinpath("1"))
    (root / "swap" / "1").parent.mkdir(exist_ok=True)
    config = root / "models.config"
    config.write_text(CONFIG % {"root": root})
    with running_server(
        f"--model_config_file={config}",
        "--model_config_file_poll_wait_seconds=1",
        "--file_system_poll_wait_seconds=1",
        # 6 callers and the test's client at once: TF Serving's default (4 per CPU) is 8 on
        # 2 CPUs, which runs 7 calls and refuses the 8th
        "--grpc_max_threads=16",
        log_path=root / "server.log",
    ) as server:
        yield {
            "root": root,
            "builds": builds,
            "config": config,
            "paused_config": root / "models.config.paused",
            "server": server,
        }


@pytest.fixture(scope="module")
def client(world):
    with ServingClient(world["server"].address, timeout=30) as c:
        yield c


def _wait_for(condition, timeout=45.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _wait_states(client, predicate, what):
    """Poll GetModelStatus until predicate(states) holds; return the states."""

    def check():
        states = _states(client)
        return states if predicate(states) else None

    return _wait_for(check, what=what)


def _states(client, model="swap"):
    return {
        v.version: (v.state, v.status.error_code, v.status.error_message)
        for v in client.status(model).model_version_status
    }


def test_version_swap_under_concurrent_load_fails_no_request(world, client):
    seen: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer():
        with ServingClient(world["server"].address, timeout=30) as own:
            while not stop.is_set():
                try:
                    spec, outputs = own.predict("swap", {"x": X})
                    # the answer must come from the version that claims it
                    assert outputs["y"][0, 0] == spec.version.value
                    seen.append(spec.version.value)
                except Exception as exc:  # any failure at all is the bug we look for
                    failures.append(repr(exc))

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        _wait_for(lambda: len(seen) > 20, what="traffic on version 1")
        copy_version(world["builds"] / "2", world["root"] / "swap" / "2")
        _wait_for(lambda: seen and seen[-1] == 2, what="version 2 to serve")
        count = len(seen)
        _wait_for(lambda: len(seen) > count + 50, what="traffic after the swap")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert set(seen) == {1, 2}
    # once version 2 answered, version 1 is unloaded shortly after
    states = _wait_states(client, lambda s: s[1][0] == END, "version 1 to unload")
    assert states[2][0] == AVAILABLE and states[1][1] == 0


def test_corrupt_version_never_replaces_the_serving_one(world, client):
    corrupt = world["root"] / "swap" / "3"
    (corrupt / "variables").mkdir(parents=True)
    (corrupt / "saved_model.pb").write_bytes(b"\x00 this is not a SavedModel \xff" * 10)
    (world["root"] / "swap" / "not-a-version").mkdir()
    states = _wait_states(client, lambda s: 3 in s and s[3][0] == END, "the failed load")
    assert states[3][1] == grpc.StatusCode.DATA_LOSS.value[0]
    assert "saved_model.pb" in states[3][2]
    assert states[2][0] == AVAILABLE
    spec, outputs = client.predict("swap", {"x": X})
    assert spec.version.value == 2 and outputs["y"][0, 0] == 2.0
    with pytest.raises(ClientError) as caught:
        client.predict("swap", {"x": X}, version=3)
    assert caught.value.code == "NOT_FOUND"
    assert "failed to load" in world["server"].log()


def test_a_good_newer_version_then_replaces_it(world, client):
    copy_version(world["builds"] / "4", world["root"] / "swap" / "4")
    _wait_for(lambda: client.predict("swap", {"x": X})[0].version.value == 4, what="version 4")
    states = _wait_states(client, lambda s: s[2][0] == END, "version 2 to unload")
    assert states[4][0] == AVAILABLE and states[3][0] == END


def _config(root, labels=None, second=False):
    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add(
        name="swap", base_path=str(root / "swap"), model_platform="tensorflow"
    )
    entry.model_version_policy.all.SetInParent()
    for label, version in (labels or {}).items():
        entry.version_labels[label] = version
    if second:
        config.model_config_list.config.add(
            name="second", base_path=str(root / "second"), model_platform="tensorflow"
        )
    return config


def _pause_config_polling(world) -> None:
    """Move the polled config file aside until the polling test brings it back. The server
    polls it every second and applies it whether or not it changed (as server.cc does),
    which would undo a config an RPC applied; a poll that cannot read the file changes
    nothing (server.cc logs the error), so RPC reloads stay while it is away."""
    if world["config"].exists():
        world["config"].rename(world["paused_config"])


def test_reload_config_by_rpc_adds_models_policies_and_labels(world, client):
    _pause_config_polling(world)
    root = world["root"]
    # Labels are checked against what serves *before* the reload applies anything
    # (server_core.cc UpdateModelVersionLabelMap): version 2 is not loaded under latest-1,
    # so a reload that also switches to "all" is refused whole.
    with pytest.raises(ClientError) as caught:
        client.reload_config(_config(root, {"stable": 2}, second=True))
    assert caught.value.code == "FAILED_PRECONDITION"
    assert caught.value.message == (
        "Request to assign label to version 2 of model swap, which is not currently "
        "available for inference"
    )
    assert 2 not in _states(client) or _states(client)[2][0] != AVAILABLE
    with pytest.raises(ClientError):
        client.predict("second", {"x": X})  # not added either
    # policy "all" loads every good version; the reload returns once the new model loaded
    client.reload_config(_config(root, second=True))
    states = _states(client)
    assert states[2][0] == AVAILABLE and states[4][0] == AVAILABLE
    assert client.predict("second", {"x": X})[1]["y"][0, 0] == 10.0
    # then the labels, now that their versions serve
    client.reload_config(_config(root, {"stable": 2, "canary": 4}, second=True))
    assert client.predict("swap", {"x": X}, label="stable")[0].version.value == 2
    assert client.predict("swap", {"x": X}, label="canary")[0].version.value == 4


@pytest.mark.parametrize(
    "change, code, message",
    [
        (
            "duplicate",
            grpc.StatusCode.INVALID_ARGUMENT,
            "Illegal to list model second multiple times in config list",
        ),
        (
            "label on a version that is not loaded",
            grpc.StatusCode.FAILED_PRECONDITION,
            "Request to assign label to version 3 of model swap",
        ),
        (
            "custom config",
            grpc.StatusCode.INVALID_ARGUMENT,
            "Only ModelConfigList is currently supported",
        ),
    ],
)
def test_bad_reloads_are_refused(world, client, change, code, message):
    _pause_config_polling(world)
    root = world["root"]
    config = _config(root, {"stable": 2, "canary": 4}, second=True)
    if change == "duplicate":
        config.model_config_list.config.add(
            name="second", base_path=str(root / "second"), model_platform="tensorflow"
        )
    elif change == "custom config":
        config = model_server_config_pb2.ModelServerConfig()
        config.custom_model_config.Pack(model_server_config_pb2.ModelConfig())
    else:
        config.model_config_list.config[0].version_labels["broken"] = 3
    with pytest.raises(ClientError) as caught:
        client.reload_config(config)
    assert caught.value.code == code.name
    assert message in caught.value.message
    # what served before still serves
    assert client.predict("swap", {"x": X}, label="stable")[0].version.value == 2


def test_a_reload_asking_for_request_logging_applies_its_models_then_fails(world, client):
    # OSS TF Serving has no request logger: ServerCore::ReloadConfig adds the models, then
    # refuses the logging_config (server_core.cc MaybeUpdateServerRequestLogger).
    _pause_config_polling(world)
    root = world["root"]
    config = _config(root, {"stable": 2, "canary": 4}, second=True)
    third = config.model_config_list.config.add(
        name="third", base_path=str(root / "second"), model_platform="tensorflow"
    )
    third.logging_config.sampling_config.sampling_rate = 1.0
    with pytest.raises(ClientError) as caught:
        client.reload_config(config)
    assert (caught.value.code, caught.value.message) == (
        "INVALID_ARGUMENT",
        "No request-logger-creator provided.",
    )
    assert client.predict("third", {"x": X})[1]["y"][0, 0] == 10.0


def test_reload_by_polling_the_config_file(world, client):
    _pause_config_polling(world)
    text = (
        world["paused_config"]
        .read_text()
        .replace(
            'model_platform: "tensorflow" }',
            'model_platform: "tensorflow" version_labels { key: "prod" value: 4 } }',
        )
    )
    world["config"].write_text(text)
    # the file's policy is latest-1: version 2 goes, "prod" appears, "second" is removed
    _wait_for(
        lambda: _try(lambda: client.predict("swap", {"x": X}, label="prod")),
        what="the file's config to apply",
    )
    _wait_for(lambda: _states(client)[2][0] == END, what="version 2 to unload")
    with pytest.raises(ClientError) as caught:
        client.predict("second", {"x": X})
    assert caught.value.code == "NOT_FOUND"


def _try(action):
    try:
        return action()
    except ClientError:
        return None


# ---- startup and config-file polling, each on a server of its own ----


@pytest.mark.parametrize(
    "problem", ["a version that cannot load", "a label on no version", "request logging"]
)
def test_a_server_that_cannot_serve_its_first_config_does_not_start(tmp_path, problem):
    """TF Serving's startup applies the first config as a reload: labels are checked first
    (none serves yet), then every model is waited for (WaitUntilModelsAvailable), then the
    request loggers are set up, which OSS TF Serving cannot do; any failure ends the process
    before it opens a port."""
    if problem == "request logging":
        build_toy_model(tmp_path / "m" / "1", 1.0)
        labels = "logging_config { sampling_config { sampling_rate: 1 } }"
        expected = "No request-logger-creator provided."
    elif problem == "a version that cannot load":
        (tmp_path / "m" / "1").mkdir(parents=True)  # no saved_model.pb
        labels = ""
        expected = (
            "1 model(s) did not become available: {{{name: m version: 1} due to error: "
            f"NOT_FOUND: no saved_model.pb in {tmp_path / 'm' / '1'}}}, }}"
        )
    else:
        build_toy_model(tmp_path / "m" / "1", 1.0)
        labels = 'version_labels { key: "stable" value: 1 }'
        expected = (
            "Request to assign label to version 1 of model m, which is not currently "
            "available for inference"
        )
    config = tmp_path / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "m" base_path: "{tmp_path / "m"}" '
        f'model_platform: "tensorflow" {labels} }} }}'
    )
    with pytest.raises(RuntimeError, match="server exited with 1") as caught:
        with running_server(f"--model_config_file={config}", log_path=tmp_path / "log"):
            pass
    assert f"Failed to start server: {expected}" in str(caught.value)
    if problem == "request logging":  # refused after the model loaded, as there
        log = str(caught.value)
        assert log.index("model m version 1 loaded") < log.index("Failed to start server")


def test_the_config_file_is_applied_on_every_poll_until_it_takes(tmp_path):
    """server.cc reloads the polled file whether or not it changed: a label naming a version
    still to come is refused, then applied on the first poll after that version serves."""
    build_toy_model(tmp_path / "builds" / "2", 2.0)
    copy_version(build_toy_model(tmp_path / "builds" / "1", 1.0), tmp_path / "m" / "1")
    config = tmp_path / "models.config"
    entry = f'name: "m" base_path: "{tmp_path / "m"}" model_platform: "tensorflow"'
    config.write_text(f"model_config_list {{ config {{ {entry} }} }}")
    with running_server(
        f"--model_config_file={config}",
        "--model_config_file_poll_wait_seconds=1",
        "--file_system_poll_wait_seconds=1",
        log_path=tmp_path / "log",
    ) as server:
        label = 'version_labels { key: "next" value: 2 }'
        config.write_text(f"model_config_list {{ config {{ {entry} {label} }} }}")
        with ServingClient(server.address, timeout=30) as client:
            _wait_for(lambda: "version 2 of model m, which is not" in server.log(), what="refusal")
            copy_version(tmp_path / "builds" / "2", tmp_path / "m" / "2")
            _wait_for(
                lambda: _try(lambda: client.predict("m", {"x": X}, label="next")),
                what="the label to be applied",
            )
            assert client.predict("m", {"x": X}, label="next")[0].version.value == 2


def test_a_new_model_without_a_version_is_waited_for_before_the_ports_open(tmp_path):
    """TF Serving's startup waits for every model's first version (WaitUntilModelsAvailable,
    with no timeout), polling for it; the ports open only then."""
    build = build_toy_model(tmp_path / "builds" / "1", 1.0)
    (tmp_path / "m").mkdir()
    server = ServerProcess(
        "--model_name=m", f"--model_base_path={tmp_path / 'm'}", log_path=tmp_path / "log"
    )
    seen: dict[str, bool] = {}

    def publish() -> None:
        seen["listening before the version"] = port_accepts(server.port)
        seen["waiting logged"] = "waiting for model m to have a version" in server.log()
        copy_version(build, tmp_path / "m" / "1")

    timer = threading.Timer(5.0, publish)
    timer.start()
    try:
        server.start()
        with ServingClient(server.address, timeout=30) as client:
            assert client.predict("m", {"x": X})[0].version.value == 1
    finally:
        timer.join()
        server.stop()
    assert seen == {"listening before the version": False, "waiting logged": True}


def test_a_signal_ends_the_wait_for_a_first_version(tmp_path):
    (tmp_path / "m").mkdir()
    log = tmp_path / "log"
    server = ServerProcess("--model_name=m", f"--model_base_path={tmp_path / 'm'}", log_path=log)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tfsp.serving.server", *server.flags], stdout=out, stderr=out
        )
        try:
            _wait_for(lambda: "waiting for model m" in log.read_text(), what="the wait")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 1
        finally:
            if process.poll() is None:
                process.kill()
    assert "Failed to start server: stopped while waiting for model(s) m" in log.read_text()
