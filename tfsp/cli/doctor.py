"""`tfsp doctor`: show that the installed stack works, as the notes' "check TF works" does."""

import argparse
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from tfsp.cli.common import command

EXPECTED_MATMUL = [[19, 22], [43, 50]]
_PACKAGES = (
    "tensorflow",
    "tfx",
    "ml-metadata",
    "tensorflow-data-validation",
    "tensorflow-transform",
    "tensorflow-model-analysis",
    "apache-beam",
    "kfp",
    "tensorflow-serving-api",
)


@dataclass
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str


def check_versions() -> Check:
    """Installed versions of the stack's packages; fails if any is missing."""
    found, missing = [], []
    for package in _PACKAGES:
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            missing.append(package)
    detail = ", ".join(found) + (f"; MISSING: {', '.join(missing)}" if missing else "")
    return Check("versions", not missing, detail)


def check_matmul() -> Check:
    """The notes' smoke test: [[1,2],[3,4]]·[[5,6],[7,8]] must be [[19,22],[43,50]]."""
    import tensorflow as tf

    product = tf.matmul(tf.constant([[1, 2], [3, 4]]), tf.constant([[5, 6], [7, 8]]))
    got = product.numpy().tolist()
    return Check("matmul", got == EXPECTED_MATMUL, f"{got} (expected {EXPECTED_MATMUL})")


def check_devices() -> Check:
    """The devices TensorFlow sees, and the training strategy they imply."""
    import tensorflow as tf

    from tfsp.trainers.common import strategy_kind

    cpus = tf.config.list_physical_devices("CPU")
    gpus = tf.config.list_physical_devices("GPU")
    gpu_text = ", ".join(d.name for d in gpus) if gpus else "no GPU"
    strategy = "MirroredStrategy" if strategy_kind(gpus) == "mirrored" else "default strategy"
    return Check("devices", bool(cpus), f"{len(cpus)} CPU, {gpu_text}; training uses {strategy}")


def check_metadata_store() -> Check:
    """ML Metadata's native extension can open a store and round-trip a type."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.fake_database.SetInParent()
    store = metadata_store.MetadataStore(config)
    type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="DoctorCheck"))
    ok = store.get_artifact_type("DoctorCheck").id == type_id
    return Check("ml-metadata", ok, "in-memory store opened, artifact type stored and read back")


def check_tfx_stack() -> Check:
    """TFX and its native-code companions import (the ones Debian 12's glibc cannot load)."""
    import tensorflow_data_validation  # noqa: F401
    import tensorflow_transform  # noqa: F401
    from tfx import v1 as tfx

    has_kfp_runner = hasattr(tfx.orchestration.experimental, "KubeflowV2DagRunner")
    return Check(
        "tfx",
        has_kfp_runner,
        "tfx, TFDV, TFT import; KubeflowV2DagRunner "
        + ("available" if has_kfp_runner else "MISSING (kfp not installed)"),
    )


def check_runtime() -> Check:
    """Whether this interpreter runs on the private glibc runtime (Debian 12) or the host's."""
    libc = os.confstr("CS_GNU_LIBC_VERSION")
    loader = _loaded_dynamic_loader()
    if loader and "/.runtime/" in loader:
        return Check("runtime", True, f"private runtime in use: {libc} via {loader}")
    return Check("runtime", True, f"host runtime: {libc} (private runtime not needed)")


def _loaded_dynamic_loader() -> str | None:
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                if "ld-linux" in line:
                    return line.split()[-1]
    except OSError:
        return None
    return None


CHECKS: tuple[Callable[[], Check], ...] = (
    check_runtime,
    check_versions,
    check_matmul,
    check_devices,
    check_metadata_store,
    check_tfx_stack,
)


def run_doctor(print_line: Callable[[str], None] = print) -> bool:
    """Run every check, print one line each, and return whether all passed."""
    print_line(f"python      {platform.python_version()} ({platform.machine()})")
    all_ok = True
    for check in CHECKS:
        try:
            result = check()
        except Exception as exc:  # a broken install shows up as an import or runtime error
            result = Check(
                check.__name__.removeprefix("check_"),
                False,
                f"{type(exc).__name__}: {' '.join(str(exc).split())}",
            )
        all_ok &= result.ok
        print_line(f"{result.name:<11} {'ok  ' if result.ok else 'FAIL'} {result.detail}")
    print_line("all checks passed" if all_ok else "some checks FAILED")
    return all_ok


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add `tfsp doctor`."""
    parser = commands.add_parser(
        "doctor", help="check the installation (versions, matmul, devices, runtime)"
    )
    command(parser, doctor)


def doctor() -> int:
    """`tfsp doctor`: 0 when every check passed."""
    from tfsp.core.progress import quiet_frameworks

    quiet_frameworks()
    return 0 if run_doctor() else 1
