"""Shared fixtures: the prepared digits data, and running the real `tfsp` CLI."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def user_env() -> dict[str, str]:
    """This process's environment as a user's shell has it, for the processes tests start.

    Importing tensorflow_transform sets TF_USE_LEGACY_KERAS=1 in os.environ (its keras_lib),
    which would make every child's `tf.keras` Keras 2: the CLI runs under test would then
    export other models than a user's shell does (Keras 3).
    """
    env = dict(os.environ)
    env.pop("TF_USE_LEGACY_KERAS", None)
    return env


def run_tfsp(
    *args: str, home: Path | None = None, timeout: int = 900
) -> subprocess.CompletedProcess:
    """Run `tfsp ARGS` in a fresh process, as a user would, and capture its output."""
    env = user_env()
    if home is not None:
        env["TFSP_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "tfsp.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_pipeline(
    family: str, data_dir: Path, *flags: str, home: Path
) -> subprocess.CompletedProcess:
    """`tfsp pipeline run --family FAMILY --data-dir DATA_DIR FLAGS` with TFSP_HOME=home."""
    return run_tfsp(
        "pipeline", "run", "--family", family, "--data-dir", str(data_dir), *flags, home=home
    )


def run_crippled_pipeline(
    family: str, data_dir: Path, *flags: str, home: Path
) -> subprocess.CompletedProcess:
    """`run_pipeline` with a learning rate (1e-7, one epoch) that cannot learn: the gate must
    refuse it."""
    return run_pipeline(
        family, data_dir, "--epochs", "1", "--learning-rate", "1e-7", *flags, home=home
    )


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits prepared once per session by the real `tfsp data prepare`."""
    out = tmp_path_factory.mktemp("digits") / "data"
    result = run_tfsp("data", "prepare", "--output", str(out))
    assert result.returncode == 0, result.stderr
    return out
