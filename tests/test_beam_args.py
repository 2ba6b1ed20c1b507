"""The Beam options our runners give the Beam steps when the user gives none."""

import logging

import apache_beam as beam
import apache_beam.testing.util

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
