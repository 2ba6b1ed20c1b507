"""End-to-end: a family defined only here goes through the product with one `register` call.

The family is a logistic regression over the 1,024 pixels with one option (an L2 penalty).
Registered in a fresh process, it gets its CLI flag from its options, runs the whole local
pipeline (Transform, Trainer, Evaluator gate, ServingCheck on TF Serving's load path,
Pusher), reports its test figure, and compiles for Kubeflow: nothing outside this file names
it. This is what the README's development section promises a new family costs.
"""

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.conftest import REPO, user_env
from tfsp.core.errors import UserError
from tfsp.core.family import Family, Options, option

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class LogRegOptions(Options):
    """The family's one option, checked when built (as the CLI checks the flag)."""

    l2: float = option(0.0, "L2 penalty on the weights", minimum=0.0)


FAMILY = Family(
    name="logreg",
    title="logistic regression",
    run_fn="tests.test_new_family_e2e.run_fn",
    options=LogRegOptions,
    gate_lower_bound=0.5,
    default_epochs=3,
    default_learning_rate=1e-2,
    default_batch_size=64,
)

OPTIONS_FILE = "options.json"


def run_fn(fn_args) -> None:
    """The Trainer: softmax regression on the standardised pixels, exported as every family."""
    import os
    from dataclasses import asdict

    import keras

    from tfsp.core.family import options_from_config
    from tfsp.core.features import IMAGE_KEY, IMAGE_PIXELS, NUM_CLASSES
    from tfsp.trainers.common import compile_classifier, fit_and_export_classifier, write_json

    options = options_from_config(FAMILY, fn_args.custom_config)
    write_json(os.path.join(fn_args.model_run_dir, OPTIONS_FILE), asdict(options))

    def build(hparams) -> keras.Model:
        inputs = keras.Input(shape=(IMAGE_PIXELS,), name=IMAGE_KEY)
        penalty = keras.regularizers.L2(options.l2) if options.l2 else None
        outputs = keras.layers.Dense(
            NUM_CLASSES, activation="softmax", kernel_regularizer=penalty, name="probs"
        )(inputs)
        model = keras.Model(inputs, outputs, name="logreg")
        compile_classifier(model, hparams.learning_rate)
        return model

    fit_and_export_classifier(fn_args, build)


_MAIN = """
import sys
from tests.test_new_family_e2e import FAMILY
from tfsp.trainers.registry import register
from tfsp.cli import main

register(FAMILY)
sys.exit(main(sys.argv[1:]))
"""


def _tfsp_with_logreg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _MAIN, *args],
        cwd=REPO,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_a_family_defined_in_one_file_trains_gates_pushes_and_compiles(tmp_path, digits_dir):
    home = tmp_path / "home"
    shown = _tfsp_with_logreg("pipeline", "run", "--help")
    assert shown.returncode == 0, shown.stderr
    assert "logistic regression (family logreg)" in shown.stdout
    assert "--l2 X" in shown.stdout

    refused = _tfsp_with_logreg("pipeline", "run", "--family", "logreg", "--l2", "-1")
    assert refused.returncode == 2 and "--l2: must be at least 0" in refused.stderr

    done = _tfsp_with_logreg(
        "pipeline", "run", "--family", "logreg", "--home", str(home),
        "--data-dir", str(digits_dir), "--l2", "0.001",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    versions = list((home / "serving" / "logreg").iterdir())
    assert len(versions) == 1 and (versions[0] / "saved_model.pb").is_file()
    (accuracy_line,) = [x for x in done.stdout.splitlines() if x.startswith("test accuracy:")]
    assert float(accuracy_line.split()[-1]) > 0.5
    # The flag reached the Trainer through custom_config, as the options dataclass.
    (options_file,) = (home / "pipelines").rglob(OPTIONS_FILE)
    assert json.loads(options_file.read_text()) == {"l2": 0.001}

    package = tmp_path / "logreg.yaml"
    compiled = _tfsp_with_logreg(
        "pipeline", "compile", "--family", "logreg", "--image", "example.com/tfsp:1",
        "--output", str(package), "--l2", "0.5",
    )  # fmt: skip
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    text = package.read_text()
    assert "tests.test_new_family_e2e.run_fn" in text
    assert """constant: '{"logreg": {"l2": 0.5}}'""" in text  # the Trainer's custom_config


def test_its_options_are_checked_where_the_trainer_builds_them():
    # options_from_config in run_fn builds LogRegOptions: a value the CLI refuses fails there too
    from tfsp.core.family import options_from_config

    assert options_from_config(FAMILY, {"logreg": {"l2": 0.5}}).l2 == 0.5
    with pytest.raises(UserError, match="l2"):
        options_from_config(FAMILY, {"logreg": {"l2": -1.0}})
