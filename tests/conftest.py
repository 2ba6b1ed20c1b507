"""Shared fixtures: the prepared digits data, and running the real `tfsp` CLI; the tiers.

Three tiers, by what a test starts (README, Development):
  unit         no mark: in this process only, fast;
  integration  starts a process: the model server, the tfsp CLI, a Beam job's workers,
               docker/kubectl/hadolint; or runs a Beam pipeline;
  e2e          runs real TFX pipelines.
An unmarked test that starts a process fails (`_processes_only_where_marked`), so
`-m "not e2e and not integration"` stays in-process.
"""

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_TIERS_THAT_START_PROCESSES = ("integration", "e2e")


@contextlib.contextmanager
def _processes_only_where_marked(item: pytest.Item) -> Iterator[None]:
    """While an unmarked test (or a fixture set up for it) runs, starting a process fails."""
    if any(item.get_closest_marker(name) for name in _TIERS_THAT_START_PROCESSES):
        yield
        return
    original = subprocess.Popen.__init__

    def refuse(self: subprocess.Popen, args: object, *rest: object, **kwargs: object) -> None:
        raise AssertionError(
            f"{item.nodeid} starts a process ({args!r:.80}): unit tests run in-process; "
            "mark it integration (or e2e for a pipeline run)"
        )

    subprocess.Popen.__init__ = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original  # type: ignore[method-assign]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with _processes_only_where_marked(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _processes_only_where_marked(item):
        yield


def user_env() -> dict[str, str]:
    """This process's environment as a user's shell has it, for the processes tests start.

    Importing tensorflow_transform sets TF_USE_LEGACY_KERAS=1 in os.environ (its keras_lib),
    and a child would inherit it where a user's shell has none. Our models no longer depend on
    it (the trainers build with the `keras` package); a test that wants it set says so.
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
