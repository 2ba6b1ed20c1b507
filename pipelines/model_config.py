"""TensorFlow Serving's models.config, for the models the families serve.

The registry (`trainers/registry.py`) is the one list of served models; `tfsp deploy
models-config` hands it to this module, which turns it into a `ModelServerConfig` text
proto: one `config` per served model, its base path `<root>/<model>`, which is where the
Pusher writes `<version>/` folders. Both the TF Serving Deployment (k8s/base/models.config)
and the local `tfsp serve` read this format.
"""

import posixpath
from collections.abc import Sequence
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tfsp.serving.config import is_relative_path

# Where the cluster mounts the model store; the compiled specs' --serving-root default.
DEFAULT_ROOT = "/models"

HEADER = (
    "# Generated from trainers/registry.py by:\n"
    "#   tfsp deploy models-config --root {root} --output FILE\n"
    "# Do not edit: add a family (or a servable) to the registry and regenerate.\n"
)


def model_base_path(root: str, model: str) -> str:
    """`<root>/<model>` for a local path or an object-store URI (gs://, s3://) alike."""
    if "://" in root:
        return f"{root.rstrip('/')}/{model}"
    return posixpath.join(root, model)


def check_root(root: str) -> None:
    """ValueError for a root TF Serving would refuse every model under: a relative path
    (ServerCore's ValidateModelConfigList wants an absolute path or a URI)."""
    if is_relative_path(root):
        raise ValueError(
            f"{root!r} is a relative path; TF Serving takes only an absolute path or a URI "
            "as a model's base path"
        )


def build_models_config(
    root: str, models: Sequence[str]
) -> model_server_config_pb2.ModelServerConfig:
    """A ModelServerConfig serving `models` from `root` (an absolute path or a URI)."""
    check_root(root)
    names = list(models)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        # Two families pushing under one name would overwrite each other's versions.
        raise ValueError(f"served model names are not unique: {', '.join(duplicates)}")
    config = model_server_config_pb2.ModelServerConfig()
    for name in names:
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = model_base_path(root, name)
        entry.model_platform = "tensorflow"
    return config


def render_models_config(root: str, models: Sequence[str]) -> str:
    """The text of models.config for `models` under `root`, with a header saying how it was
    generated."""
    body = text_format.MessageToString(build_models_config(root, models))
    return HEADER.format(root=root) + body


def parse_models_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    """Parse a models.config text proto (comments allowed), as TF Serving does."""
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def write_models_config(output: Path, root: str, models: Sequence[str]) -> str:
    """Write models.config for `models` under `root` to `output`; return the text written."""
    text = render_models_config(root, models)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    return text
