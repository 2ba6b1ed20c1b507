"""The RNN family: shapes per cell, the Jordan recurrence, the LSTM's forget bias, clipping,
and the mechanics (not the claims) of the adding-problem and truncated-BPTT experiments."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfsp.core.errors import UserError
from tfsp.core.family import options_from_config
from tfsp.trainers.common import compile_classifier
from tfsp.trainers.rnn.experiments import (
    LOSS_WINDOW,
    TRIVIAL_ADDING_MSE,
    TruncatedBPTT,
    _claims,
    _median_or_none,
    adding_problem,
    format_report,
    sequence_regressor,
    tbptt_schedule,
    train_adding,
    train_tbptt,
)
from tfsp.trainers.rnn.family import CELLS, FAMILY, RNNConfig
from tfsp.trainers.rnn.model import JordanCell, build_rnn_classifier, recurrent_layer


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
def test_classifier_reads_32_rows_of_32_and_returns_10_probabilities(cell, bidirectional, layers):
    config = RNNConfig(cell=cell, units=4, layers=layers, bidirectional=bidirectional)
    model = build_rnn_classifier(config)
    assert model.get_layer("rows").output.shape[1:] == (32, 32)
    recurrent = [layer for layer in model.layers if layer.name not in ("image", "rows", "probs")]
    assert len(recurrent) == layers
    if bidirectional:
        assert all(isinstance(r, keras.layers.Bidirectional) for r in recurrent)
        assert recurrent[-1].output.shape[-1] == 8  # forward and backward halves
    probabilities = model(np.random.default_rng(0).random((3, 1024), np.float32)).numpy()
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_rows_are_the_time_steps():
    # Row r of the image is step r: a model that only remembers the last step changes its
    # output when only the last row changes.
    model = build_rnn_classifier(RNNConfig(cell="simple", units=4))
    image = np.zeros((1, 32, 32), np.float32)
    changed = image.copy()
    changed[0, 31, :] = 1.0
    a, b = model(image.reshape(1, 1024)), model(changed.reshape(1, 1024))
    assert not np.allclose(a, b)


def test_lstm_forget_gate_bias_starts_at_one():
    model = build_rnn_classifier(RNNConfig(cell="lstm", units=5))
    bias = model.get_layer("lstm1").cell.bias.numpy()
    # Keras orders the gates input, forget, cell, output.
    np.testing.assert_array_equal(bias[5:10], np.ones(5))
    np.testing.assert_array_equal(bias[:5], np.zeros(5))


def test_the_experiment_lstm_bias0_differs_from_the_served_lstm_in_its_forget_bias_only():
    served, ablated = sequence_regressor("lstm", 5), sequence_regressor("lstm-bias0", 5)
    for model in (served, ablated):
        model.build((None, 7, 2))
    biases = [m.layers[0].cell.bias.numpy() for m in (served, ablated)]
    np.testing.assert_array_equal(biases[0][5:10], np.ones(5))
    np.testing.assert_array_equal(biases[1][5:10], np.zeros(5))
    for bias in biases:  # input, cell and output gates start at 0 in both
        np.testing.assert_array_equal(np.delete(bias, np.s_[5:10]), np.zeros(15))
    assert [w.shape for w in served.weights] == [w.shape for w in ablated.weights]


def test_jordan_cell_feeds_back_the_previous_output():
    cell = JordanCell(units=2, output_units=1)
    cell.build((None, 1))
    w = np.array([[0.5, -1.0]], np.float32)  # input -> hidden
    u = np.array([[2.0, 0.25]], np.float32)  # previous output -> hidden
    b = np.array([0.1, 0.0], np.float32)
    v = np.array([[1.0], [-0.5]], np.float32)  # hidden -> output
    c = np.array([0.2], np.float32)
    cell.set_weights([w, u, b, v, c])
    x, y_prev = np.array([[0.3]], np.float32), np.array([[-0.4]], np.float32)

    output, (state,) = cell(tf.constant(x), [tf.constant(y_prev)])

    # By hand: h = tanh(0.3*[0.5, -1] + (-0.4)*[2, 0.25] + [0.1, 0]) = tanh([-0.55, -0.4])
    hidden = np.tanh(np.array([0.15 - 0.8 + 0.1, -0.3 - 0.1]))
    expected = np.tanh(hidden @ v[:, 0] + 0.2)
    np.testing.assert_allclose(output.numpy()[0, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(state.numpy(), output.numpy())


def test_jordan_layer_state_is_the_output_sequence():
    layer = keras.layers.RNN(JordanCell(3), return_sequences=True, return_state=True)
    sequence, state = layer(np.random.default_rng(1).random((2, 5, 4), np.float32))
    np.testing.assert_allclose(state.numpy(), sequence.numpy()[:, -1])


def test_clipping_is_on_by_default_and_zero_turns_it_off():
    assert RNNConfig().clip_norm > 0
    for clip_norm, expected in ((5.0, 5.0), (0.0, None)):
        model = build_rnn_classifier(RNNConfig(cell="simple", units=2))
        compile_classifier(model, 1e-3, clip_norm)
        assert model.optimizer.global_clipnorm == expected


def test_options_come_from_custom_config_and_bad_ones_are_refused():
    config = options_from_config(
        FAMILY, {"rnn": {"cell": "gru", "layers": 2, "bidirectional": True}}
    )
    assert (config.cell, config.layers, config.bidirectional) == ("gru", 2, True)
    assert options_from_config(FAMILY, {}) == RNNConfig()
    with pytest.raises(UserError):
        options_from_config(FAMILY, {"rnn": {"cell": "tree"}})
    with pytest.raises(UserError):
        options_from_config(FAMILY, {"rnn": {"depth": 3}})


def test_adding_problem_marks_one_value_in_each_half():
    x, y = adding_problem(50, 100, np.random.default_rng(0))
    assert x.shape == (50, 100, 2) and y.shape == (50,)
    markers = x[..., 1]
    assert (markers.sum(axis=1) == 2).all()
    assert (markers[:, :50].sum(axis=1) == 1).all()
    np.testing.assert_allclose(y, (x[..., 0] * markers).sum(axis=1), rtol=1e-6)
    # The trivial baseline: always predicting 1.0 scores about 2/12.
    _, many = adding_problem(20000, 10, np.random.default_rng(1))
    assert abs(np.mean((many - 1.0) ** 2) - TRIVIAL_ADDING_MSE) < 0.01


def test_adding_training_logs_raw_gradient_norms():
    result = train_adding("gru", seq_len=12, steps=3, batch_size=8, units=4, test_size=16)
    assert np.isfinite(result.test_mse)
    assert result.max_grad_norm > 0 and not result.diverged
    report = {
        "seq_len": 12,
        "steps": 3,
        "trivial_mse": TRIVIAL_ADDING_MSE,
        "learned_below": 0.04,
        "adding": [result.__dict__],
        "tbptt": [],
        "claims": {
            "lstm_and_gru_learn": False,
            "simple_rnn_does_not": True,
            "explodes_without_clipping": 1.0,
        },
    }
    assert "gru" in format_report(report)


def test_learned_at_is_the_first_step_whose_recent_losses_are_below_the_bound():
    # T = 2 is easy: the sum of both steps' values; a GRU learns it in a few dozen steps
    easy = dict(seq_len=2, batch_size=32, units=8, learning_rate=1e-2, test_size=64)
    result = train_adding("gru", steps=400, **easy)
    assert result.learned and LOSS_WINDOW <= result.learned_at < 400
    assert train_adding("gru", steps=LOSS_WINDOW - 1, **easy).learned_at is None  # too few


def _row(cell: str, seed: int, learned_at: int | None, mse: float, clip: float = 1.0) -> dict:
    learned = learned_at is not None
    return {"cell": cell, "clip_norm": clip, "seed": seed, "test_mse": mse, "learned": learned,
            "learned_at": learned_at, "max_grad_norm": 2.0}  # fmt: skip


def test_claims_hold_only_if_they_hold_for_every_seed():
    rows = [
        _row("lstm", 0, 900, 0.01), _row("lstm", 1, 1500, 0.02), _row("lstm", 2, None, 0.1),
        _row("lstm-bias0", 0, 2500, 0.03), _row("lstm-bias0", 1, None, 0.16),
        _row("lstm-bias0", 2, None, 0.17), _row("lstm", 0, None, 0.16, clip=0.0),
    ]  # fmt: skip
    claims = _claims(rows)
    assert claims["lstm_and_gru_learn"] is False  # seed 2 did not
    assert claims["simple_rnn_does_not"] is None  # not run
    assert claims["explodes_without_clipping"] == 2.0
    assert claims["forget_bias"] == {
        "bias 1": {"learned": 2, "runs": 3, "median_learned_at": 1500.0, "median_test_mse": 0.02},
        "bias 0": {"learned": 1, "runs": 3, "median_learned_at": None, "median_test_mse": 0.16},
    }
    assert "bias 0: learned in 1/3, median learned at never" in format_report(
        {"seq_len": 100, "steps": 3000, "trivial_mse": TRIVIAL_ADDING_MSE, "learned_below": 0.04,
         "adding": [{**r, "diverged": False, "final_grad_norm": 1.0, "seconds": 1.0}
                    for r in rows], "tbptt": [], "claims": claims}
    )  # fmt: skip


def test_without_clipped_runs_the_forget_bias_is_compared_on_the_unclipped_ones():
    rows = [_row("lstm", 0, 900, 0.01, clip=0.0), _row("lstm-bias0", 0, None, 0.16, clip=0.0)]
    claims = _claims(rows)
    assert claims["lstm_and_gru_learn"] is None  # the notes' claims are about clipped runs
    assert claims["forget_bias_clipped"] is False
    assert claims["forget_bias"]["bias 1"]["learned"] == 1
    report = {"seq_len": 100, "steps": 3000, "trivial_mse": TRIVIAL_ADDING_MSE,
              "learned_below": 0.04, "tbptt": [], "claims": claims,
              "adding": [{**r, "diverged": False, "final_grad_norm": 1.0, "seconds": 1.0}
                         for r in rows]}  # fmt: skip
    text = format_report(report)
    assert "LSTM and GRU learn it: no clipped run" in text
    assert "LSTM forget-gate bias (unclipped): bias 1: learned in 1/1" in text


@pytest.mark.parametrize(
    "steps, median", [([100, None, 300], 300.0), ([None, None, 5], None), ([10], 10.0)]
)
def test_a_run_that_never_learned_counts_as_the_latest(steps, median):
    assert _median_or_none(steps) == median


def test_the_logged_gradient_norm_is_taken_before_clipping():
    # One step from the same seed: clipping to 1e-6 must not change the norm reported.
    small = dict(seq_len=12, steps=1, batch_size=8, units=4, test_size=16)
    clipped = train_adding("gru", clip_norm=1e-6, **small)
    unclipped = train_adding("gru", clip_norm=0.0, **small)
    assert clipped.max_grad_norm == pytest.approx(unclipped.max_grad_norm, rel=1e-5)
    assert clipped.max_grad_norm > 1e-3


@pytest.mark.parametrize("k1, k2", [(5, 5), (3, 7), (1, 4), (4, 30)])
def test_tbptt_schedule_scores_every_step_once_and_looks_back_k2(k1, k2):
    windows = tbptt_schedule(23, k1, k2)
    scored = [t for w in windows for t in range(w.loss_from, w.end)]
    assert scored == list(range(23))
    for w, nxt in zip(windows, windows[1:], strict=False):
        assert w.end - w.loss_from == k1
        assert w.start == max(0, w.end - k2)
        assert nxt.start == w.carry  # the next window starts from the state kept here
        assert w.start <= w.carry <= w.end
    assert windows[-1].carry == windows[-1].end


def test_tbptt_needs_k1_at_most_k2():
    with pytest.raises(ValueError):
        tbptt_schedule(10, 5, 3)


def _full_sequence(trainer: TruncatedBPTT, x: np.ndarray) -> np.ndarray:
    state = trainer.initial_state(x.shape[0], x.shape[2])
    predictions, _ = trainer._run(tf.constant(x), state)
    return predictions.numpy()


@pytest.mark.parametrize("cell", ["lstm", "simple", "jordan"])
@pytest.mark.parametrize("k1, k2", [(4, 4), (3, 8)])
def test_tbptt_carries_state_across_windows(cell, k1, k2):
    # Fed window by window, the predictions equal one pass over the whole sequence: the state
    # at each window's start is exactly where the previous window left it.
    keras.utils.set_random_seed(0)
    trainer = TruncatedBPTT(cell, 3, k1, k2, 1e-2)
    x = np.random.default_rng(0).random((2, 17, 1), np.float32)
    np.testing.assert_allclose(trainer.forward_windows(x), _full_sequence(trainer, x), atol=1e-5)


def test_tbptt_resets_state_between_sequences():
    keras.utils.set_random_seed(0)
    trainer = TruncatedBPTT("gru", 3, 4, 4, 1e-2)
    starts = []
    x = np.random.default_rng(0).random((2, 12, 1), np.float32)
    trainer.forward_windows(x, on_window=lambda w, state, _: starts.append((w.start, state)))
    trainer.forward_windows(x, on_window=lambda w, state, _: starts.append((w.start, state)))
    firsts = [state for start, state in starts if start == 0]
    assert len(firsts) == 2
    for state in firsts:
        assert all(np.all(s.numpy() == 0) for s in state)
    later = [state for start, state in starts if start > 0]
    assert any(np.any(s.numpy() != 0) for state in later for s in state)


def test_tbptt_gradient_stops_k2_steps_back():
    keras.utils.set_random_seed(0)
    trainer = TruncatedBPTT("lstm", 3, 2, 4, 1e-2)
    x = tf.constant(np.random.default_rng(0).random((1, 12, 1), np.float32))
    windows = tbptt_schedule(12, 2, 4)
    state = trainer.initial_state(1, 1)
    for window in windows:
        with tf.GradientTape() as tape:
            tape.watch(x)
            pred, carried = trainer._window(x, window, state)
            loss = tf.reduce_sum(pred[:, window.loss_from - window.start :])
        grad = tape.gradient(loss, x).numpy()[0, :, 0]
        assert np.all(grad[: window.start] == 0)  # nothing flows past k2 steps back
        assert np.any(grad[window.start : window.end] != 0)
        assert np.all(grad[window.end :] == 0)
        state = carried


def test_tbptt_training_runs_and_reduces_the_error():
    result = train_tbptt("gru", k1=5, k2=10, seq_len=30, batches=6, batch_size=8, units=8)
    assert result.updates == 6 * 6
    assert np.isfinite(result.test_mse) and result.test_mse < 0.5  # predicting 0 scores 0.5


def test_rnn_claims_command_prints_the_tables(capsys, tmp_path):
    from tfsp.cli import main

    out = tmp_path / "claims.json"
    code = main(
        [
            "experiment",
            "rnn-claims",
            "--seq-len",
            "8",
            "--steps",
            "2",
            "--cells",
            "simple-relu",
            "--tbptt",
            "20:40",
            "--tbptt-batches",
            "1",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "adding problem, T=8" in printed and "simple-relu" in printed
    assert "TBPTT" in printed and "claims:" in printed
    assert out.exists()
    assert main(["experiment", "rnn-claims", "--tbptt", "5:2"]) == 2  # a flag error


@pytest.mark.parametrize(
    "cell, expected",
    [
        ("simple", 64 * (32 + 64) + 64),  # one weight set: W, U, b
        ("lstm", 4 * (64 * (32 + 64) + 64)),  # four: input, forget, cell, output gates
        ("gru", 3 * (64 * (32 + 64) + 2 * 64)),  # three, each with two biases (reset_after)
    ],
)
def test_parameter_counts_of_the_cells(cell, expected):
    # The notes: an LSTM unit has four times a simple one's parameters, and a GRU "a third
    # fewer" than an LSTM. Measured on one 64-unit layer over 32 features (the served
    # model's): LSTM 4.0x the simple cell; the GRU 24% fewer than the LSTM, not a third.
    layer = recurrent_layer(cell, 64)
    layer.build((None, 32, 32))
    assert layer.count_params() == expected
