"""The model store: `<serving root>/<model>/<version>/` SavedModels, as TF Serving reads them,
and the one lookup of a pushed model every caller uses (the pipelines' version pinning, the
BaseModelGen/BaselineModelGen steps, the benchmarks)."""

import os

import tensorflow as tf

from tfsp.core.errors import UserError
from tfsp.core.family import Family


class PushedModelNotFoundError(UserError):
    """A needed pushed model, or the pinned version of it, is not in the model store."""


def latest_pushed_version(model_root: str) -> str | None:
    """The highest numeric version folder holding a SavedModel under `model_root` (one
    served model's folder, local or gs://); None if there is none.

    TF Serving serves the highest numeric version, so this is the model clients get.
    """
    if not tf.io.gfile.isdir(model_root):
        return None
    versions = [v.rstrip("/") for v in tf.io.gfile.listdir(model_root)]
    numeric = [
        v
        for v in versions
        if v.isdigit() and tf.io.gfile.exists(os.path.join(model_root, v, "saved_model.pb"))
    ]
    return max(numeric, key=int) if numeric else None


def pushed_model(serving_root: str, model_name: str, version: str = "") -> tuple[str, str]:
    """(version, SavedModel folder) of `model_name`: `version` if given, else the latest.

    PushedModelNotFoundError if nothing is pushed (naming the command that pushes it) or the
    given version is not in the store.
    """
    root = os.path.join(serving_root, model_name)
    chosen = version or latest_pushed_version(root)
    if chosen is None:
        raise PushedModelNotFoundError(
            f"no {model_name} model has been pushed under {root}; run "
            f"'tfsp pipeline run --family {model_name}' first"
        )
    folder = os.path.join(root, chosen)
    if not tf.io.gfile.exists(os.path.join(folder, "saved_model.pb")):
        raise PushedModelNotFoundError(
            f"version {chosen} of the pushed {model_name} model is not in the model store "
            f"(no SavedModel in {folder})"
        )
    return chosen, folder


def pinned_versions(family: Family, serving_root: str) -> dict[str, str]:
    """The model store versions `family`'s pipeline reads: the latest of the family itself
    (its baseline, if it has pushed any) and of every family it builds on (UserError if one
    has none).

    Pinning them when a run starts (rather than letting the components look) makes a newly
    pushed model invalidate the cached baseline and Trainer, and a missing base fail before
    any component runs.
    """
    versions = {}
    if family.baseline == "last_blessed":
        own = latest_pushed_version(os.path.join(serving_root, family.name))
        if own is not None:
            versions[family.name] = own
    for base in family.depends_on:
        try:
            versions[base], _ = pushed_model(serving_root, base)
        except PushedModelNotFoundError as exc:
            raise PushedModelNotFoundError(
                f"the {family.name} family builds on the pushed {base} model: {exc}"
            ) from None
    return versions
