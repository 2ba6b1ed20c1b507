"""What the distribution installs: one import name, `tfsp`, holding every package folder."""

import tomllib

from tests.conftest import REPO

# The repository's top-level folders and the import names they install as.
FOLDERS = {"tfsp": "tfsp", "pipelines": "tfsp.pipelines", "trainers": "tfsp.trainers",
           "serving": "tfsp.serving"}  # fmt: skip


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_installs_under_tfsp_and_nothing_else_does():
    assert _setuptools()["package-dir"] == {name: folder for folder, name in FOLDERS.items()}
    on_disk = {
        ".".join([FOLDERS[init.relative_to(REPO).parts[0]], *init.relative_to(REPO).parts[1:-1]])
        for folder in FOLDERS
        for init in (REPO / folder).rglob("__init__.py")
    }
    assert sorted(_setuptools()["packages"]) == sorted(on_disk)
    assert all(name == "tfsp" or name.startswith("tfsp.") for name in on_disk)


def test_nothing_imports_the_folders_by_their_bare_names():
    # From the repository root `import pipelines` would still find the folder, and load a
    # second copy of every module beside tfsp.pipelines.
    sources = [
        p for folder in (*FOLDERS, "tests", "benchmarks") for p in (REPO / folder).rglob("*.py")
    ]
    bare = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sources
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if line.lstrip().startswith(("from pipelines", "from trainers", "from serving",
                                     "import pipelines", "import trainers", "import serving"))
    ]  # fmt: skip
    assert bare == []


def test_every_optional_dependency_has_an_install_hint():
    # A command run on the light install that imports a [client]/[full] module must say which
    # extra to install (tfsp.cli's map), not print a bare ModuleNotFoundError.
    from importlib.metadata import packages_distributions

    from packaging.requirements import Requirement

    from tfsp.cli import _EXTRA_OF_MODULE

    def normal(name: str) -> str:
        return name.lower().replace("_", "-")

    modules_of: dict[str, set[str]] = {}
    for module, distributions in packages_distributions().items():
        for distribution in distributions:
            modules_of.setdefault(normal(distribution), set()).add(module)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for extra in ("client", "full"):
        for requirement in map(Requirement, extras[extra]):
            if requirement.name == "tfsp":
                continue
            hinted = {m for m in modules_of[normal(requirement.name)] if m in _EXTRA_OF_MODULE}
            assert hinted, f"{requirement.name} ([{extra}]) has no module in tfsp.cli's map"
            assert {_EXTRA_OF_MODULE[m] for m in hinted} == {extra}, requirement.name
