"""The packages import in one direction (README, Development): checked on the source.

    tfsp.cli                                    the command line and the main job
    tfsp.pipelines   tfsp.trainers   tfsp.serving
    tfsp.data                                   data preparation and image framing
    tfsp.core                                   light: no TensorFlow

Every import counts, including the ones inside functions (the CLI imports lazily).
"""

import ast

import pytest

from tests.conftest import REPO

FOLDERS = {"tfsp": "tfsp", "pipelines": "tfsp.pipelines", "trainers": "tfsp.trainers",
           "serving": "tfsp.serving"}  # fmt: skip
# What each package may import besides itself.
ALLOWED = {
    "tfsp.core": set(),
    "tfsp.data": {"tfsp.core"},
    "tfsp.trainers": {"tfsp.core", "tfsp.data"},
    "tfsp.serving": {"tfsp.core"},
    # The ServingCheck runs the model server; FeatureGen runs the features Beam job.
    "tfsp.pipelines": {"tfsp.core", "tfsp.data", "tfsp.serving"},
    "tfsp.cli": {"tfsp.core", "tfsp.data", "tfsp.trainers", "tfsp.serving", "tfsp.pipelines"},
}
LIGHT = ("tensorflow", "tfx", "keras", "tensorflow_transform", "tensorflow_serving")


def _modules() -> dict[str, ast.Module]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found[".".join((package, *parts))] = ast.parse(path.read_text())
    return found


def _package(module: str) -> str:
    for package in sorted(ALLOWED, key=len, reverse=True):
        if module == package or module.startswith(package + "."):
            return package
    return "tfsp"


def _imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from tfsp.core import errors` imports the module tfsp.core.errors.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


MODULES = _modules()


def test_every_module_belongs_to_a_layer():
    assert {m for m in MODULES if _package(m) == "tfsp"} == {"tfsp"}


def _tfsp_modules_imported(tree: ast.Module) -> set[str]:
    """Our modules an import reaches (`from a.b import c` reaches a.b.c if it is a module)."""
    reached = set()
    for name in _imports(tree):
        if name in MODULES:
            reached.add(name)
        elif name.rsplit(".", 1)[0] in MODULES and name.startswith("tfsp."):
            reached.add(name.rsplit(".", 1)[0])
    return reached


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package):
    wrong = sorted(
        f"{module} imports {target}"
        for module, tree in MODULES.items()
        if _package(module) == package
        for target in _tfsp_modules_imported(tree)
        if _package(target) not in ALLOWED[package] | {package}
    )
    assert wrong == []


def test_the_check_sees_lazy_imports():
    # tfsp.cli imports the pipelines inside its handlers only; the walk must still see it.
    assert "tfsp.pipelines.local_runner" in _tfsp_modules_imported(MODULES["tfsp.cli.pipeline"])


def test_the_core_imports_no_tensorflow():
    heavy = sorted(
        f"{module} imports {name}"
        for module, tree in MODULES.items()
        if _package(module) == "tfsp.core"
        for name in _imports(tree)
        if name.split(".")[0] in LIGHT
    )
    assert heavy == []
