"""The Beam options our runners give the Beam steps when the user gives none."""

import logging
import tempfile

import apache_beam as beam
import apache_beam.testing.util
import pytest
from tfx.utils import dependency_utils  # imported here: importing it starts `uname -p`

from tfsp.core.beam_defaults import IN_PROCESS_BEAM_ARGS


def _run_counting_pipeline(args: list[str], caplog) -> str:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="apache_beam"):
        with beam.Pipeline(argv=args) as pipeline:
            counted = pipeline | beam.Create([1, 2, 3]) | beam.combiners.Count.Globally()
            beam.testing.util.assert_that(counted, beam.testing.util.equal_to([3]))
    return caplog.text.lower()


def test_default_beam_options_run_in_process_without_fetching_prism(caplog):
    # Beam's own default (DirectRunner) would first try to download Prism (Beam 2.77).
    logs = _run_counting_pipeline(list(IN_PROCESS_BEAM_ARGS), caplog)
    assert "prism" not in logs


def test_tfx_beam_steps_build_no_package_of_tfx_in_process():
    # Without a dependency option, every TFX Beam step builds a 52 MB sdist of TFX into a new
    # temporary folder (for remote workers) and never deletes it.
    args = list(IN_PROCESS_BEAM_ARGS)
    assert dependency_utils.make_beam_dependency_flags(args) == args


@pytest.mark.integration  # building the package runs `python setup.py sdist`
def test_without_a_dependency_option_tfx_builds_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # so the package lands here
    built = dependency_utils.make_beam_dependency_flags(["--runner=FnApiRunner"])
    (package,) = [flag for flag in built if flag.startswith("--extra_package=")]
    assert package.removeprefix("--extra_package=").startswith(str(tmp_path))
