"""Start the local model server as a child process and wait until its models are available.

What `make run` uses to serve what the pipelines pushed for the duration of its checks; the
same `tfsp-model-server` a user starts by hand (`make serve`).
"""

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tfsp.core.errors import UserError


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ModelNotServable(UserError):
    """A model's versions all ended without becoming AVAILABLE; the message says why."""


# What the server logs, on one line, when it cannot start (tfsp.serving.server), and what
# that line says when a model did not load (tfsp.serving.manager, TF Serving's words).
_STARTUP_FAILURE = "Failed to start server: "
_NOT_AVAILABLE = "model(s) did not become available"


def _startup_failure(log_file: Path) -> str:
    """The reason the server gave for not starting (the last such log line), or ""."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    reasons = [line.split(_STARTUP_FAILURE, 1)[1] for line in lines if _STARTUP_FAILURE in line]
    return reasons[-1] if reasons else ""


class LocalServer:
    """`tfsp-model-server --model_config_file=CONFIG` on free loopback ports."""

    def __init__(self, config_file: Path, log_file: Path) -> None:
        self.port, self.rest_port = free_port(), free_port()
        self.config_file = config_file
        self.log_file = log_file
        self._process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        """host:port of its gRPC API."""
        return f"127.0.0.1:{self.port}"

    def start(self, models: list[str], timeout: float = 180.0) -> "LocalServer":
        """Start, then wait until every model in `models` has an AVAILABLE version.

        The server opens its ports only once every model has loaded, as TF Serving does; one
        that cannot load (warmup included) ends it, and ModelNotServable carries its reason.
        """
        from tfsp.serving.client import ClientError, ServingClient

        with open(self.log_file, "wb") as log:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tfsp.serving.server",
                    f"--port={self.port}",
                    f"--rest_api_port={self.rest_port}",
                    f"--model_config_file={self.config_file}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        with ServingClient(self.address, timeout=2.0) as client:
            waiting = list(models)
            while waiting:
                if self._process.poll() is not None:
                    reason = _startup_failure(self.log_file)
                    if _NOT_AVAILABLE in reason:
                        raise ModelNotServable(reason)
                    raise UserError(
                        f"the model server exited ({self._process.returncode}): "
                        f"{reason or 'no reason given'}; see {self.log_file}"
                    )
                if time.monotonic() > deadline:
                    self.stop()
                    raise UserError(
                        f"models {waiting} not available after {timeout:.0f}s; see {self.log_file}"
                    )
                try:
                    versions = list(client.status(waiting[0]).model_version_status)
                except ClientError:
                    versions = []  # not listening yet, or no version seen yet
                if any(v.state == v.AVAILABLE for v in versions):
                    waiting.pop(0)
                    continue
                time.sleep(0.3)
        return self

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (the server drains in-flight requests), then wait; returns the exit code."""
        if self._process is None:
            return 0
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        return self._process.returncode

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
