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

        ModelNotServable as soon as a model's every version failed to load (warmup included).
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
                    raise UserError(
                        f"the model server exited ({self._process.returncode}); see {self.log_file}"
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
                failed = [v for v in versions if v.state == v.END and v.status.error_code]
                if versions and len(failed) == len(versions):
                    self.stop()
                    newest = failed[0]
                    raise ModelNotServable(
                        f"{waiting[0]} version {newest.version} did not become AVAILABLE: "
                        f"{newest.status.error_message}"
                    )
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
