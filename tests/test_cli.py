"""The command line as a user meets it: help, one-line errors, exit codes, doctor."""

import pytest

from tests.conftest import run_tfsp

pytestmark = pytest.mark.integration  # runs the tfsp CLI


def test_help_lists_the_commands():
    result = run_tfsp("--help")
    assert result.returncode == 0
    for command in ("doctor", "run", "data", "pipeline"):
        assert command in result.stdout


def test_pipeline_run_help_documents_the_training_flags():
    result = run_tfsp("pipeline", "run", "--help")
    assert result.returncode == 0
    for flag in (
        "--family",
        "--epochs",
        "--learning-rate",
        "--min-accuracy",
        "--pooling",
        "--padding",
        "--conv-stride",
        "--home",
        "--no-cache",
    ):
        assert flag in result.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (("pipeline", "run", "--family", "cnn", "--epochs", "0"), "argument --epochs"),
        (
            ("pipeline", "run", "--family", "cnn", "--learning-rate", "abc"),
            "argument --learning-rate",
        ),
        (("pipeline", "run", "--family", "cnn", "--pooling", "median"), "argument --pooling"),
        (
            ("pipeline", "run", "--family", "cnn", "--min-accuracy", "1.5"),
            "argument --min-accuracy",
        ),
        (("pipeline", "compile", "--family", "cnn"), "--image"),
        # TFX would compile in its own default image instead
        (
            ("pipeline", "compile", "--family", "cnn", "--image", "", "--output", "x.yaml"),
            "argument --image: must be a container image reference, got ''",
        ),
        (("data", "prepare", "--fractions", "0.5,0.5"), "argument --fractions"),
        (("serve-everything",), "invalid choice"),
        (("data", "prepare", "--fractions", "1,0,0"), "every split needs a share above 0"),
        (("experiment", "rnn-claims", "--seq-len", "1"), "argument --seq-len"),
        (("status", "--model", "cnn", "--timeout=inf"), "expected a finite number"),
        (("status", "--model", "cnn", "--rest", "--rest-server", "http://x"), "--rest-server"),
        # gRPC would dial port 443 for a bare host
        (("status", "--model", "cnn", "--server", "localhost"), "--server: 'localhost' is not"),
        (
            ("features", "--input", "x.npy", "--output", "y.npy", "--server", "h:0"),
            "error: --server: 'h:0' is not host:port",
        ),
        # combinations argparse cannot see, refused by the command before any work
        (("data", "prepare", "--images-dir", "d", "--printed-per-font", "2"), "default source"),
        (("predict", "--model", "cnn", "--image", "x.png", "--invert"), "--invert applies"),
        (("experiment", "rnn-claims", "--cells", "transformer"), "--cells takes names"),
        (("experiment", "rnn-claims", "--tbptt", "5:2"), "--tbptt pairs need"),
        (("experiment", "rnn-claims", "--tbptt", "10:500"), "--tbptt pairs need k2 <= 200"),
        (("experiment", "rnn-claims", "--seeds", "0,x"), "--seeds takes comma-separated whole"),
        (("experiment", "rnn-claims", "--seeds", "1,1"), "--seeds needs distinct seeds >= 0"),
        # another family's options: its Trainer never runs, so they would be ignored
        (
            ("run", "--family", "cnn", "--cell", "gru"),
            "error: --cell applies to family rnn, which --family cnn does not train",
        ),
        (
            (
                "pipeline",
                "compile",
                "--family",
                "cnn",
                "--cell",
                "gru",
                "--image",
                "i",
                "--output",
                "x.yaml",
            ),
            "error: --cell applies to family rnn, which --family cnn does not train",
        ),
        (
            (
                "pipeline",
                "run",
                "--family",
                "transfer",
                "--conv-stride",
                "2",
                "--pooling",
                "average",
            ),
            "error: --conv-stride, --pooling apply to family cnn, which --family transfer does "
            "not train",
        ),  # fmt: skip
        (
            ("pipeline", "compile", "--family", "all", "--image", "i", "--output", "x.yaml"),
            "--output-dir",
        ),
        # tfsp serve reads TF Serving's flags as TensorFlow's parser does: --flag=value only
        (("serve", "--model_base_path=/m", "--port", "9000"), "--port takes its value as"),
        (
            ("serve", "--model_base_path=/m", "--enable_batching", "no"),
            "write --enable_batching=true or --enable_batching=false",
        ),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(args, expected):
    result = run_tfsp(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]


@pytest.mark.parametrize("command", [("pipeline", "run"), ("pipeline", "submit"), ("run",)])
def test_unknown_family_is_a_flag_error(tmp_path, command):
    extra = ("--host", "http://localhost:8080") if command == ("pipeline", "submit") else ()
    result = run_tfsp(*command, *extra, "--family", "transformer", home=tmp_path)
    assert result.returncode == 2
    from tfsp.trainers.registry import FAMILIES  # the registry grows; the message lists it

    known = [*FAMILIES, *(["all"] if command != ("pipeline", "submit") else [])]
    assert result.stderr.strip().splitlines() == [
        "error: argument --family: invalid choice: 'transformer' (choose from "
        f"{', '.join(repr(name) for name in known)}) (see 'tfsp {' '.join(command)} --help')"
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("deploy", "models-config", "--output", "{folder}"),
        ("pipeline", "compile", "--family", "cnn", "--image", "i:1", "--output", "{file}/c.yaml"),
        ("pipeline", "submit", "--host", "http://127.0.0.1:1", "--family", "cnn", "--spec",
         "{folder}"),
        ("experiment", "rnn-claims", "--output", "{folder}"),  # refused before any training
    ],
)  # fmt: skip
def test_paths_that_cannot_be_written_or_read_are_one_line(tmp_path, args):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("")
    argv = [a.format(folder=tmp_path / "folder", file=tmp_path / "file") for a in args]
    result = run_tfsp(*argv)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(tmp_path) in last


def test_missing_data_folder_is_one_line(tmp_path):
    missing = tmp_path / "nope"
    result = run_tfsp("pipeline", "run", "--family", "cnn", "--data-dir", str(missing))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: data folder {missing} does not exist; run 'tfsp data prepare' first"
    )


def test_prepare_from_a_corrupt_image_folder_fails_cleanly(tmp_path):
    (tmp_path / "imgs" / "0").mkdir(parents=True)
    (tmp_path / "imgs" / "0" / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "out"
    result = run_tfsp(
        "data", "prepare", "--images-dir", str(tmp_path / "imgs"), "--output", str(out)
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "broken.png" in last
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]


def test_doctor_checks_the_install():
    result = run_tfsp("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "[[19, 22], [43, 50]]" in out
    assert "tensorflow 2.21.0" in out and "tfx 1.21.0" in out
    assert "ml-metadata" in out and "KubeflowV2DagRunner available" in out
    assert "runtime" in out and "devices" in out
    assert out.strip().splitlines()[-1] == "all checks passed"
