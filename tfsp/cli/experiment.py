"""`tfsp experiment rnn-claims`: the notes' claims that are measured, not served."""

import argparse
import json
import sys
from pathlib import Path

from tfsp.cli.common import command
from tfsp.core import argtypes
from tfsp.core.errors import UsageError, UserError
from tfsp.trainers.rnn.family import CLIPPING, EXPERIMENT_CELLS, TBPTT_SEQ_LEN


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the `experiment` group."""
    experiment = commands.add_parser(
        "experiment", help="run a study-notes experiment and print its table"
    ).add_subparsers(dest="experiment_command", required=True, metavar="COMMAND")
    parser = experiment.add_parser(
        "rnn-claims",
        help="adding problem (LSTM/GRU learn it, SimpleRNN not), gradient norms, TBPTT",
        description="Train each cell on the adding problem with clipping off and on (or one "
        "of them, --clipping), once per seed, and print the test MSE against the trivial "
        "baseline (always 1.0, MSE 0.167), the step it learned at and the largest raw "
        "gradient norm; then the sin→cos regression trained with truncated BPTT. The claims' "
        "verdicts read the clipped runs. With both lstm and lstm-bias0 it also compares the "
        "LSTM's forget-gate bias (1, the served cell's, against 0), on the clipped runs if "
        "there are any.",
    )
    parser.add_argument(
        "--seq-len",
        type=argtypes.whole_number(2),
        default=100,
        help="adding-problem sequence length T (%(default)s)",
    )
    parser.add_argument(
        "--steps",
        type=argtypes.positive_int,
        default=3000,
        help="training steps of each adding-problem run (%(default)s)",
    )
    parser.add_argument(
        "--cells",
        default="simple,lstm,gru,simple-relu",
        help=f"comma-separated: {', '.join(EXPERIMENT_CELLS)} (%(default)s)",
    )
    parser.add_argument(
        "--clip-norm",
        type=argtypes.positive_float,
        default=1.0,
        help="the 'on' threshold (%(default)s)",
    )
    parser.add_argument(
        "--clipping",
        choices=CLIPPING,
        default="both",
        help="adding-problem runs with clipping off and on, or only one of them (%(default)s)",
    )
    parser.add_argument(
        "--seeds",
        default="0",
        help="comma-separated seeds: every adding-problem run is repeated with each, and a "
        "cell counts as learning only if it learns with all of them; TBPTT uses the first "
        "(%(default)s)",
    )
    parser.add_argument(
        "--tbptt",
        default="20:20,10:40",
        help=f"k1:k2 pairs (1 <= k1 <= k2 <= {TBPTT_SEQ_LEN}) for the TBPTT regression, "
        "comma-separated (%(default)s)",
    )
    parser.add_argument(
        "--tbptt-batches",
        type=argtypes.positive_int,
        default=30,
        help=f"batches of 32 fresh sin→cos sequences ({TBPTT_SEQ_LEN} steps) each TBPTT run "
        "trains on (%(default)s)",
    )
    parser.add_argument("--output", type=Path, help="also write the results as JSON")
    command(parser, rnn_claims)


def _cells(text: str) -> tuple[str, ...]:
    cells = tuple(c.strip() for c in text.split(",") if c.strip())
    if not cells or any(c not in EXPERIMENT_CELLS for c in cells):
        raise UsageError(f"--cells takes names from {', '.join(EXPERIMENT_CELLS)}; got {text!r}")
    return cells


def _tbptt_pairs(text: str) -> tuple[tuple[int, int], ...]:
    try:
        pairs = tuple(tuple(int(k) for k in p.split(":")) for p in text.split(",") if p)
    except ValueError:
        raise UsageError(f"--tbptt takes k1:k2 pairs, got {text!r}") from None
    if any(len(p) != 2 or not 1 <= p[0] <= p[1] for p in pairs):
        raise UsageError(f"--tbptt pairs need 1 <= k1 <= k2, got {text!r}")
    if any(p[1] > TBPTT_SEQ_LEN for p in pairs):
        # a longer window is the whole sequence: full BPTT under a TBPTT label
        raise UsageError(
            f"--tbptt pairs need k2 <= {TBPTT_SEQ_LEN}, the sequences' length; got {text!r}"
        )
    return pairs  # type: ignore[return-value]


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UsageError(f"--seeds takes comma-separated whole numbers, got {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds needs distinct seeds >= 0, got {text!r}")
    return seeds


def rnn_claims(
    seq_len: int,
    steps: int,
    cells: str,
    clip_norm: float,
    clipping: str,
    seeds: str,
    tbptt: str,
    tbptt_batches: int,
    output: Path | None,
) -> int:
    """`tfsp experiment rnn-claims`: train, measure and print the table (and JSON)."""
    chosen, pairs, seed_list = _cells(cells), _tbptt_pairs(tbptt), _seeds(seeds)
    if output is not None and (output.is_dir() or not output.parent.is_dir()):
        # checked now, not after the hours of training the defaults take
        raise UserError(f"--output {output}: not a file in an existing folder")
    from tfsp.core.progress import quiet_frameworks

    quiet_frameworks()
    from tfsp.trainers.rnn.experiments import format_report
    from tfsp.trainers.rnn.experiments import rnn_claims as measure

    report = measure(
        cells=chosen,
        seq_len=seq_len,
        steps=steps,
        clip_norm=clip_norm,
        clipping=clipping,
        tbptt=pairs,
        tbptt_batches=tbptt_batches,
        seeds=seed_list,
        progress=lambda message: print(f"==> {message}", file=sys.stderr, flush=True),
    )
    print(format_report(report))
    if output:
        output.write_text(json.dumps(report, indent=2))
    return 0
