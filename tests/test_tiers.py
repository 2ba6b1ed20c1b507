"""The test tiers hold: an unmarked (unit) test cannot start a process (tests/conftest.py)."""

import subprocess
import sys

import pytest


def test_an_unmarked_test_that_starts_a_process_fails_and_names_the_mark():
    with pytest.raises(AssertionError, match="mark it integration"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)


@pytest.mark.integration
def test_a_test_marked_integration_may_start_one():
    assert subprocess.run([sys.executable, "-c", "pass"], check=True).returncode == 0
