"""How `tfsp` reports an error it did not anticipate (tfsp/cli/__init__.py), in-process."""

from tfsp import cli
from tfsp.cli import deploy, pipeline


def _boom() -> int:
    raise RuntimeError("boom")


def test_a_command_without_verbose_prints_the_traceback(monkeypatch, capsys):
    # `tfsp deploy models-config` has no --verbose: telling the user to add one would fail
    monkeypatch.setattr(deploy, "models_config", lambda root: _boom())
    assert cli.main(["deploy", "models-config"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1] == "error: RuntimeError: boom"
    assert "--verbose" not in err


def test_a_command_with_verbose_points_at_it_or_prints_the_traceback(monkeypatch, capsys):
    monkeypatch.setattr(pipeline, "run_pipelines", lambda family: _boom())
    assert cli.main(["pipeline", "run", "--family", "cnn"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: RuntimeError: boom",
        "(run again with --verbose for the full log and traceback)",
    ]
    assert cli.main(["pipeline", "run", "--family", "cnn", "--verbose"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1] == "error: RuntimeError: boom"
