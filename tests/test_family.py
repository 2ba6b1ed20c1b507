"""The family contract (tfsp/family.py) and the registry, for every registered family.

In-process and without TensorFlow: each family's options dataclass is where its CLI flags,
its defaults and its refusals come from, and the Trainer reads the same dataclass back.
"""

import argparse
import dataclasses
import subprocess
import sys

import pytest

from tests.conftest import REPO, user_env
from tfsp import cli
from tfsp.cli.common import custom_config
from tfsp.core.errors import UserError
from tfsp.core.family import Family, Options, flag_fields, flag_name, option, options_from_config
from tfsp.trainers.registry import FAMILIES, get_family, register, run_order, served_model_names

FAMILIES_WITH_OPTIONS = [f for f in FAMILIES.values() if f.options is not None]


def _pipeline_run_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    (pipeline,) = [
        a
        for a in commands.choices["pipeline"]._actions
        if isinstance(a, argparse._SubParsersAction)
    ]
    return pipeline.choices["run"]


def _bad_value(options_field: dataclasses.Field) -> str:
    """A value the option's declaration refuses, as a user would type it."""
    meta = options_field.metadata
    if meta["choices"] is not None:
        return "no-such-choice"
    if meta["minimum"] is not None:
        return str(meta["minimum"] - 1)
    if meta["maximum"] is not None:
        return str(meta["maximum"] + 1)
    pytest.fail(f"option {options_field.name} declares no choices or bounds to test")


@pytest.mark.integration
def test_listing_the_families_and_building_their_flags_imports_no_tensorflow():
    probe = (
        "import sys; from tfsp import cli; cli.build_parser(); "
        "print(sorted(m for m in sys.modules if m == 'tensorflow' or m.endswith('.model')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
    assert all(f.run_fn.rsplit(".", 1)[0].endswith(".model") for f in FAMILIES.values())


@pytest.mark.integration
def test_the_model_modules_and_the_rnn_experiments_import_no_tfx():
    # TFX's Trainer hands run_fn its arguments; the models themselves need only TensorFlow,
    # and `tfsp experiment rnn-claims` would otherwise wait ~4.5 s for TFX to import.
    modules = sorted({f.run_fn.rsplit(".", 1)[0] for f in FAMILIES.values()})
    probe = (
        "import importlib, sys; "
        f"[importlib.import_module(m) for m in {[*modules, 'tfsp.trainers.rnn.experiments']!r}]; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tfx'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert len(modules) == len(FAMILIES)  # one model module a family
    assert done.stdout.strip().splitlines()[-1] == "[]"


_BUILD_EVERY_FAMILY = """
import tensorflow_transform  # sets TF_USE_LEGACY_KERAS=1: tf.keras is Keras 2 from here on
import tensorflow as tf
from tfsp.trainers.autoencoder.model import build_autoencoder
from tfsp.trainers.batchnorm.family import MLPConfig
from tfsp.trainers.batchnorm.model import build_mlp
from tfsp.trainers.cnn.model import build_lenet5
from tfsp.trainers.rnn.model import build_rnn_classifier
from tfsp.trainers.transfer.model import build_transfer_model
print("tf.keras", tf.keras.Model.__module__)
models = {
    "autoencoder": build_autoencoder()[0],
    "batchnorm": build_mlp(MLPConfig(), batch_norm=True),
    "cnn": build_lenet5(),
    "rnn": build_rnn_classifier(),
    "transfer": build_transfer_model(None),
}
for name, model in models.items():
    print(name, type(model).__module__)
"""


@pytest.mark.integration
def test_every_familys_model_is_keras_3_even_where_tf_keras_is_keras_2():
    # TFT sets TF_USE_LEGACY_KERAS=1 as it imports and asks users to set it: a model built
    # through tf.keras would then be Keras 2, and export and train differently.
    done = subprocess.run(
        [sys.executable, "-c", _BUILD_EVERY_FAMILY],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={**user_env(), "TF_USE_LEGACY_KERAS": "1"},
    )
    built = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    assert built.pop("tf.keras").startswith("tf_keras.")  # the hostile condition holds
    assert sorted(built) == sorted(FAMILIES)
    assert all(module.startswith("keras.src.") for module in built.values()), built


@pytest.mark.parametrize("family", FAMILIES_WITH_OPTIONS, ids=lambda f: f.name)
def test_options_defaults_build_and_every_option_is_a_flag_with_its_choices(family):
    assert issubclass(family.options, Options)
    assert options_from_config(family, {}) == family.options()
    actions = {a.dest: a for a in _pipeline_run_parser()._actions}
    for options_field in flag_fields(family.options):
        action = actions[f"option__{family.name}__{options_field.name}"]
        assert flag_name(options_field) in action.option_strings
        choices = options_field.metadata["choices"]
        assert (tuple(action.choices) if action.choices else None) == choices


@pytest.mark.parametrize(
    "family, options_field",
    [
        (f, o)
        for f in FAMILIES_WITH_OPTIONS
        for o in flag_fields(f.options)
        if not isinstance(o.default, bool)
    ],
    ids=lambda x: getattr(x, "name", None),
)
def test_a_value_the_flag_refuses_the_trainer_refuses_too(family, options_field, capsys):
    bad = _bad_value(options_field)
    with pytest.raises(SystemExit) as exited:
        _pipeline_run_parser().parse_args(["--family", family.name, flag_name(options_field), bad])
    assert exited.value.code == 2
    assert flag_name(options_field) in capsys.readouterr().err
    typed = type(options_field.default)(bad) if options_field.metadata["choices"] is None else bad
    with pytest.raises(UserError, match=f"{family.name}: option {options_field.name} must be"):
        options_from_config(family, {family.name: {options_field.name: typed}})


def test_flags_given_reach_each_family_under_its_own_key():
    args = _pipeline_run_parser().parse_args(
        ["--family", "all", "--pooling", "average", "--cell", "gru", "--bidirectional",
         "--code-size", "16", "--ae-kind", "dense"]
    )  # fmt: skip
    config = custom_config(args)
    assert config == {
        "cnn": {"pooling": "average"},
        "rnn": {"cell": "gru", "bidirectional": True},
        "autoencoder": {"code_size": 16, "kind": "dense"},
    }
    assert options_from_config(get_family("rnn"), config).cell == "gru"
    assert options_from_config(get_family("autoencoder"), config).code_size == 16


def test_unknown_options_wrong_types_and_lists_from_json():
    with pytest.raises(UserError, match="unknown cnn option"):
        options_from_config(get_family("cnn"), {"cnn": {"kernel": 3}})
    # A hand-written custom_config gets the same one-line error as a bad flag value.
    with pytest.raises(UserError, match="cnn: option conv_stride must be a number, got '2'"):
        options_from_config(get_family("cnn"), {"cnn": {"conv_stride": "2"}})
    # custom_config travels as JSON on Kubeflow: tuples come back as lists.
    options = options_from_config(get_family("cnn"), {"cnn": {"filters": [4, 8]}})
    assert options.filters == (4, 8)


def test_registry_lines_and_rules_read_from_the_entries():
    assert served_model_names() == [
        "cnn", "rnn", "batchnorm", "transfer", "autoencoder", "autoencoder_encoder",
    ]  # fmt: skip
    assert run_order(["transfer", "cnn"]) == ["cnn", "transfer"]
    assert get_family("autoencoder").features_model() == "autoencoder_encoder"
    assert get_family("cnn").features_model() is None
    with pytest.raises(UserError, match="unknown family 'gan'; known: autoencoder, batchnorm"):
        get_family("gan")
    with pytest.raises(ValueError, match="already registered"):
        register(get_family("cnn"))


def test_a_registered_family_gets_its_flags(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class TinyOptions(Options):
        width: int = option(4, "hidden width", minimum=1)

    tiny = Family(
        name="tiny",
        run_fn="nowhere.model.run_fn",
        options=TinyOptions,
        gate_lower_bound=0.5,
        default_epochs=1,
        default_learning_rate=1e-3,
        default_batch_size=8,
    )
    monkeypatch.setitem(FAMILIES, "tiny", tiny)
    args = _pipeline_run_parser().parse_args(["--family", "tiny", "--width", "9"])
    assert custom_config(args) == {"tiny": {"width": 9}}
    with pytest.raises(UserError, match="tiny: option width must be at least 1"):
        options_from_config(tiny, {"tiny": {"width": 0}})
