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
