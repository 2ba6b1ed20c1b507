"""The RNN family's entry and options (the model is in model.py)."""

from dataclasses import dataclass

from tfsp.core.family import Family, Options, option
from tfsp.core.features import NUM_CLASSES

CELLS = ("simple", "jordan", "lstm", "gru")
# The experiment (`tfsp experiment rnn-claims`) also runs a SimpleRNN with ReLU, and an LSTM
# whose forget-gate bias starts at 0 instead of 1 (the notes' advice, measured against).
EXPERIMENT_CELLS = (*CELLS, "simple-relu", "lstm-bias0")
# Which adding-problem runs the experiment makes: clipping off and on, or only one of them.
CLIPPING = ("both", "on", "off")
# Steps of each sin→cos sequence the experiment's truncated-BPTT runs train on.
TBPTT_SEQ_LEN = 200


@dataclass(frozen=True)
class RNNConfig(Options):
    """Architecture and clipping options; the defaults are the served LSTM classifier."""

    cell: str = option("lstm", "recurrent cell", choices=CELLS)
    units: int = option(64, "units per recurrent layer", minimum=1)
    layers: int = option(1, "stacked recurrent layers", minimum=1)
    bidirectional: bool = option(False, "bidirectional layers")
    clip_norm: float = option(
        5.0, "clip gradients at this global norm; 0 turns clipping off", minimum=0.0
    )
    num_classes: int = NUM_CLASSES


# The served model is the LSTM classifier reading the image row by row; the notes'
# long-range and exploding-gradient claims are an experiment (`tfsp experiment
# rnn-claims`), not this gate.
FAMILY = Family(
    name="rnn",
    title="RNN classifier",
    run_fn="tfsp.trainers.rnn.model.run_fn",
    options=RNNConfig,
    gate_lower_bound=0.95,
    default_epochs=30,
    default_learning_rate=2e-3,
    default_batch_size=32,
)
