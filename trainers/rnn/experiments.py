"""The notes' RNN claims as experiments (`tfsp experiment rnn-claims`), not served models.

1. Long-range dependencies: on the adding problem (each step carries a value in [0, 1] and a
   marker; the target is the sum of the two marked values, one in each half of a sequence of
   length T ≥ 100), LSTM and GRU learn it and SimpleRNN does not. "Learned" means a test MSE
   below a quarter of the trivial baseline's (always predicting 1.0: MSE = 2/12 ≈ 0.167).
2. Exploding gradients: with clipping off, the global gradient norm explodes on at least one
   configuration. Every step logs the raw (pre-clipping) global norm; with clipping on the
   applied update is bounded by the threshold.
3. Truncated BPTT (k1, k2) on a sequence regression (predict cos from a sin sequence): the
   sequence is fed window by window through an RNN whose state is carried from one window to
   the next (a stateful RNN) and reset between sequences; every k1 steps the loss of those k1
   steps is back-propagated k2 steps (k1 ≤ k2).
4. The LSTM's forget-gate bias ("give the forget gate a large bias"): on the adding problem,
   the served cell (bias 1) against the same cell with bias 0 (`lstm-bias0`), over several
   seeds: how many learned it, and how soon (the step at which the mean training loss of the
   last 50 steps fell below the bound).
"""

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import keras
import numpy as np
import tensorflow as tf

from tfsp.trainers.rnn.family import CLIPPING, EXPERIMENT_CELLS, TBPTT_SEQ_LEN
from tfsp.trainers.rnn.model import recurrent_layer

TRIVIAL_ADDING_MSE = 2 / 12  # Var(U + U') for two independent U(0, 1): predicting 1.0
LEARNED_FRACTION = 0.25  # learned: test MSE below this share of the trivial baseline


def adding_problem(n: int, seq_len: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` adding-problem sequences: x [n, T, 2] (value, marker), y [n] (sum of marked)."""
    if seq_len < 2:
        raise ValueError(f"sequences need at least 2 steps, got {seq_len}")
    values = rng.uniform(0.0, 1.0, (n, seq_len)).astype(np.float32)
    markers = np.zeros((n, seq_len), np.float32)
    half = seq_len // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, seq_len, n)
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    return np.stack([values, markers], axis=-1), targets.astype(np.float32)


@dataclass
class AddingResult:
    """One configuration's outcome on the adding problem."""

    cell: str
    clip_norm: float  # 0: clipping off
    seed: int
    test_mse: float
    learned: bool
    # The first step whose mean training loss over the last LOSS_WINDOW steps was below the
    # "learned" bound: how soon it learned (None: never, within the steps given).
    learned_at: int | None
    max_grad_norm: float  # the largest raw (pre-clipping) global gradient norm seen
    final_grad_norm: float
    diverged: bool  # the loss became NaN/inf
    seconds: float


LOSS_WINDOW = 50  # training steps whose mean loss decides when a run learned


def sequence_regressor(cell: str, units: int) -> keras.Model:
    """RNN over the whole sequence, then one linear output (the adding problem's sum)."""
    if cell == "simple-relu":
        recurrent = keras.layers.SimpleRNN(units, activation="relu")
    elif cell == "lstm-bias0":
        # the served LSTM but for one thing: its forget gate's bias starts at 0, not 1
        recurrent = keras.layers.LSTM(units, unit_forget_bias=False)
    else:
        recurrent = recurrent_layer(cell, units)
    return keras.Sequential([recurrent, keras.layers.Dense(1)], name=f"adding_{cell}")


def train_adding(
    cell: str,
    *,
    seq_len: int = 100,
    steps: int = 2000,
    batch_size: int = 64,
    units: int = 64,
    learning_rate: float = 1e-3,
    clip_norm: float = 1.0,
    seed: int = 0,
    test_size: int = 1000,
) -> AddingResult:
    """Train `cell` on fresh adding-problem batches for `steps` steps; measure test MSE."""
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    model = sequence_regressor(cell, units)
    model.build((None, seq_len, 2))
    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function
    def step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True)[:, 0] - y))
        grads = tape.gradient(loss, model.trainable_variables)
        norm = tf.linalg.global_norm(grads)
        if clip_norm > 0:
            grads, _ = tf.clip_by_global_norm(grads, clip_norm, use_norm=norm)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss, norm

    started = time.monotonic()
    max_norm, norm, diverged = 0.0, 0.0, False
    bound, losses, learned_at = LEARNED_FRACTION * TRIVIAL_ADDING_MSE, [], None
    for index in range(steps):
        loss, norm_t = step(*adding_problem(batch_size, seq_len, rng))
        norm = float(norm_t)
        if not np.isfinite(float(loss)) or not np.isfinite(norm):
            diverged = True
            break
        max_norm = max(max_norm, norm)
        losses.append(float(loss))
        recent = losses[-LOSS_WINDOW:]
        if learned_at is None and len(recent) == LOSS_WINDOW and np.mean(recent) < bound:
            learned_at = index + 1
    x_test, y_test = adding_problem(test_size, seq_len, np.random.default_rng(seed + 10_000))
    predictions = model.predict(x_test, batch_size=250, verbose=0)[:, 0]
    mse = float(np.mean((predictions - y_test) ** 2))
    if not np.isfinite(mse):
        diverged, mse = True, float("inf")
    return AddingResult(
        cell=cell,
        clip_norm=clip_norm,
        seed=seed,
        test_mse=mse,
        learned=mse < bound,
        learned_at=learned_at,
        max_grad_norm=max_norm,
        final_grad_norm=norm,
        diverged=diverged,
        seconds=time.monotonic() - started,
    )


# --- truncated BPTT -----------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One TBPTT update: run [start, end) from the state at `start`, score [loss_from, end),
    and keep the (detached) state at `carry` as the next window's starting state."""

    start: int
    loss_from: int
    end: int
    carry: int


def tbptt_schedule(seq_len: int, k1: int, k2: int) -> list[Window]:
    """The windows of TBPTT(k1, k2) over a sequence of `seq_len` steps.

    Every k1 steps one update: the loss of those (up to) k1 new steps, back-propagated through
    the last k2 steps (fewer at the start of the sequence). Windows overlap when k1 < k2, so
    the forward pass over the overlap is recomputed; the state carried to the next window is
    the one at its start, taken from this window's forward pass.
    """
    if not 1 <= k1 <= k2:
        raise ValueError(f"TBPTT needs 1 <= k1 <= k2, got k1={k1}, k2={k2}")
    windows = []
    for loss_from in range(0, seq_len, k1):
        end = min(loss_from + k1, seq_len)
        start = max(0, end - k2)
        windows.append(Window(start=start, loss_from=loss_from, end=end, carry=end))
    # The state each window must start from is the one at the next window's start.
    return [
        Window(w.start, w.loss_from, w.end, nxt.start)
        for w, nxt in zip(windows, windows[1:], strict=False)
    ] + windows[-1:]


class TruncatedBPTT:
    """Train a per-step sequence regressor with TBPTT(k1, k2), carrying state across windows.

    The recurrent layer returns its state; the state at a window's `carry` step is kept,
    detached (no gradient flows into an earlier window), and starts the next window. A new
    sequence starts from zeros.
    """

    def __init__(self, cell: str, units: int, k1: int, k2: int, learning_rate: float) -> None:
        self.k1, self.k2 = k1, k2
        self.units = units
        self.rnn = recurrent_layer(cell, units, return_sequences=True, return_state=True)
        self.head = keras.layers.Dense(1)
        self.optimizer = keras.optimizers.Adam(learning_rate)
        # A window's forward pass and update run as graphs: op by op, Keras 3 steps an RNN
        # through its time loop in Python, and the default report (900 updates) took 94 s.
        # Window lengths vary, so shapes are relaxed after the first retrace.
        self._forward = tf.function(self._parts, reduce_retracing=True)
        self._update = tf.function(self._train_window, reduce_retracing=True)

    def _run(self, x: np.ndarray | tf.Tensor, state: list | None) -> tuple[tf.Tensor, list]:
        outputs = self.rnn(tf.convert_to_tensor(x), initial_state=state)
        sequence, new_state = outputs[0], list(outputs[1:])
        return self.head(sequence)[..., 0], new_state

    def initial_state(self, batch: int, features: int) -> list:
        """Zeros: what every new sequence starts from."""
        if not self.rnn.built:
            # Every variable exists before the first graph is traced: a tf.function may
            # create variables only on its first trace, and each kind of window (with or
            # without steps before `carry`, or after it) is traced on its own.
            self.rnn.build((batch, None, features))
            self.head.build((None, None, self.units))
            self.optimizer.build(self.rnn.trainable_variables + self.head.trainable_variables)
        sizes = self.rnn.cell.state_size
        sizes = sizes if isinstance(sizes, list | tuple) else [sizes]
        return [tf.zeros((batch, int(size))) for size in sizes]

    def forward_windows(
        self,
        x: np.ndarray,
        on_window: Callable[[Window, list, tf.Tensor], None] | None = None,
    ) -> np.ndarray:
        """Predictions for a whole batch of sequences, window by window, without training.

        `on_window(window, start_state, predictions)` sees each window (for tests).
        """
        batch, seq_len, features = x.shape
        state = self.initial_state(batch, features)
        predictions = np.zeros((batch, seq_len), np.float32)
        for window in tbptt_schedule(seq_len, self.k1, self.k2):
            pred, state_next = self._window(x, window, state)
            if on_window is not None:
                on_window(window, state, pred)
            predictions[:, window.loss_from : window.end] = pred[
                :, window.loss_from - window.start :
            ]
            state = state_next
        return predictions

    def _window(
        self, x: np.ndarray | tf.Tensor, window: Window, state: list
    ) -> tuple[tf.Tensor, list]:
        """Forward over the window, split at `carry` so the carried state can be taken."""
        return self._forward(state, *self._pieces(x, window))

    @staticmethod
    def _pieces(
        x: np.ndarray | tf.Tensor, window: Window
    ) -> tuple[tf.Tensor, tf.Tensor, bool, bool]:
        """The window's inputs before and after `carry`, and whether each has any steps."""
        return (
            tf.convert_to_tensor(x[:, window.start : window.carry]),
            tf.convert_to_tensor(x[:, window.carry : window.end]),
            window.carry > window.start,
            window.end > window.carry,
        )

    def _parts(
        self, state: list, head: tf.Tensor, tail: tf.Tensor, has_head: bool, has_tail: bool
    ) -> tuple[tf.Tensor, list]:
        """Predictions over head + tail from `state`, and the detached state after head."""
        parts, carried, running = [], state, state
        if has_head:
            pred, running = self._run(head, state)
            parts.append(pred)
            carried = running
        if has_tail:
            pred, _ = self._run(tail, running)
            parts.append(pred)
        return tf.concat(parts, axis=1), [tf.stop_gradient(s) for s in carried]

    def _train_window(
        self,
        target: tf.Tensor,
        state: list,
        head: tf.Tensor,
        tail: tf.Tensor,
        has_head: bool,
        has_tail: bool,
    ) -> tuple[tf.Tensor, list]:
        """One update: the loss on the window's last `target` steps, and the carried state."""
        with tf.GradientTape() as tape:
            pred, carried = self._parts(state, head, tail, has_head, has_tail)
            scored = pred[:, tf.shape(pred)[1] - tf.shape(target)[1] :]
            loss = tf.reduce_mean(tf.square(scored - target))
        variables = self.rnn.trainable_variables + self.head.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss, carried

    def train_sequences(self, x: np.ndarray, y: np.ndarray) -> float:
        """One pass of TBPTT over a batch of sequences; returns the mean window loss."""
        batch, seq_len, features = x.shape
        state = self.initial_state(batch, features)
        losses = []
        for window in tbptt_schedule(seq_len, self.k1, self.k2):
            target = tf.convert_to_tensor(y[:, window.loss_from : window.end])
            loss, state = self._update(target, state, *self._pieces(x, window))
            losses.append(float(loss))
        return float(np.mean(losses))


def sin_cos_sequences(
    n: int, seq_len: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """x = sin(ωt + φ) [n, T, 1], y = cos(ωt + φ) [n, T], ω and φ random per sequence.

    cos is not a function of the current sin alone (its sign is the slope's), so the model
    has to use what came before.
    """
    t = np.arange(seq_len, dtype=np.float32)[None, :]
    omega = rng.uniform(0.05, 0.2, (n, 1)).astype(np.float32)
    phase = rng.uniform(0.0, 2 * np.pi, (n, 1)).astype(np.float32)
    angle = omega * t + phase
    return np.sin(angle)[..., None].astype(np.float32), np.cos(angle).astype(np.float32)


@dataclass
class TBPTTResult:
    """The sin→cos regression trained with TBPTT(k1, k2)."""

    cell: str
    k1: int
    k2: int
    updates: int
    test_mse: float  # over whole held-out sequences (predicting 0 scores 0.5)
    seconds: float


def train_tbptt(
    cell: str = "lstm",
    *,
    k1: int = 10,
    k2: int = 20,
    seq_len: int = TBPTT_SEQ_LEN,
    batches: int = 30,
    batch_size: int = 32,
    units: int = 32,
    learning_rate: float = 5e-3,
    seed: int = 0,
) -> TBPTTResult:
    """Train on `batches` batches of fresh sequences; test MSE over 200 held-out ones."""
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    trainer = TruncatedBPTT(cell, units, k1, k2, learning_rate)
    started = time.monotonic()
    for _ in range(batches):
        trainer.train_sequences(*sin_cos_sequences(batch_size, seq_len, rng))
    x_test, y_test = sin_cos_sequences(200, seq_len, np.random.default_rng(seed + 10_000))
    predictions = trainer.forward_windows(x_test)
    return TBPTTResult(
        cell=cell,
        k1=k1,
        k2=k2,
        updates=batches * len(tbptt_schedule(seq_len, k1, k2)),
        test_mse=float(np.mean((predictions - y_test) ** 2)),
        seconds=time.monotonic() - started,
    )


# --- the report ---------------------------------------------------------------------------


def rnn_claims(
    *,
    cells: tuple[str, ...] = ("simple", "lstm", "gru", "simple-relu"),
    seq_len: int = 100,
    steps: int = 2000,
    clip_norm: float = 1.0,
    clipping: str = "both",
    tbptt: tuple[tuple[int, int], ...] = ((20, 20), (10, 40)),
    tbptt_batches: int = 30,
    seeds: tuple[int, ...] = (0,),
    progress: Callable[[str], None] = lambda _: None,
) -> dict:
    """Run every configuration (each adding-problem one once per seed; TBPTT with the first
    seed); returns the rows of both tables and the claims' verdicts."""
    for cell in cells:
        if cell not in EXPERIMENT_CELLS:
            raise ValueError(f"cell must be one of {EXPERIMENT_CELLS}, got {cell!r}")
    if clipping not in CLIPPING or not seeds:
        raise ValueError(f"clipping must be one of {CLIPPING} and seeds not empty")
    clips = {"both": (0.0, clip_norm), "on": (clip_norm,), "off": (0.0,)}[clipping]
    rows = []
    for seed in seeds:
        for cell in cells:
            for clip in clips:
                progress(
                    f"adding problem T={seq_len}: {cell}, clipping {clip or 'off'}, seed {seed}"
                )
                result = train_adding(cell, seq_len=seq_len, steps=steps, clip_norm=clip, seed=seed)
                rows.append(asdict(result))
    tbptt_rows = []
    for k1, k2 in tbptt:
        progress(f"TBPTT sin→cos: lstm, k1={k1}, k2={k2}")
        tbptt_rows.append(
            asdict(train_tbptt("lstm", k1=k1, k2=k2, batches=tbptt_batches, seed=seeds[0]))
        )
    return {
        "seq_len": seq_len,
        "steps": steps,
        "seeds": list(seeds),
        "trivial_mse": TRIVIAL_ADDING_MSE,
        "learned_below": LEARNED_FRACTION * TRIVIAL_ADDING_MSE,
        "adding": rows,
        "tbptt": tbptt_rows,
        "claims": _claims(rows),
    }


def _claims(rows: list[dict]) -> dict:
    """The verdicts, over every seed: a cell "learns" only if it learned with each seed."""

    def runs(cell: str, clipped: bool) -> list[dict]:
        return [r for r in rows if r["cell"] == cell and (r["clip_norm"] > 0) == clipped]

    gated = [r for c in ("lstm", "gru") for r in runs(c, True)]
    simple = runs("simple", True)
    claims = {  # the notes' claims are about clipped runs; None: there was none of the cells
        "lstm_and_gru_learn": all(r["learned"] for r in gated) if gated else None,
        "simple_rnn_does_not": not any(r["learned"] for r in simple) if simple else None,
        "explodes_without_clipping": max(
            (r["max_grad_norm"] for r in rows if r["clip_norm"] == 0), default=None
        ),
    }
    # the notes: give the forget gate a large bias (compared on the clipped runs if any)
    clipped = any(r["clip_norm"] > 0 for r in rows)
    biased, unbiased = runs("lstm", clipped), runs("lstm-bias0", clipped)
    if biased and unbiased:
        claims["forget_bias_clipped"] = clipped
        claims["forget_bias"] = {
            label: {
                "learned": sum(r["learned"] for r in group),
                "runs": len(group),
                # the lower median, as for test MSE with an odd number of seeds
                "median_learned_at": _median_or_none([r["learned_at"] for r in group]),
                "median_test_mse": float(np.median([r["test_mse"] for r in group])),
            }
            for label, group in (("bias 1", biased), ("bias 0", unbiased))
        }
    return claims


def _median_or_none(steps: list[int | None]) -> float | None:
    """The (lower) median step, a run that never learned counting as later than any that
    did; None if that median run never learned."""
    ordered = sorted(steps, key=lambda step: float("inf") if step is None else step)
    middle = ordered[(len(ordered) - 1) // 2]
    return None if middle is None else float(middle)


def format_report(report: dict) -> str:
    """The two tables as text."""
    lines = [
        f"adding problem, T={report['seq_len']}, {report['steps']} steps; trivial baseline "
        f"(always 1.0) MSE {report['trivial_mse']:.3f}; learned = MSE < "
        f"{report['learned_below']:.3f}",
        f"{'cell':<11} {'clip':>6} {'seed':>4} {'test MSE':>9} {'learned':>8} {'at step':>8} "
        f"{'max |g|':>10} {'last |g|':>9} {'time':>7}",
    ]
    for r in report["adding"]:
        clip = "off" if r["clip_norm"] == 0 else f"{r['clip_norm']:g}"
        learned = "diverged" if r["diverged"] else ("yes" if r["learned"] else "no")
        at = "-" if r["learned_at"] is None else str(r["learned_at"])
        lines.append(
            f"{r['cell']:<11} {clip:>6} {r['seed']:>4} {r['test_mse']:>9.4f} {learned:>8} "
            f"{at:>8} {r['max_grad_norm']:>10.3g} {r['final_grad_norm']:>9.3g} "
            f"{r['seconds']:>6.0f}s"
        )
    if report["tbptt"]:
        lines.append("")
        lines.append("TBPTT sin→cos regression (predicting 0 scores MSE 0.5)")
        lines.append(f"{'cell':<11} {'k1':>4} {'k2':>4} {'updates':>8} {'test MSE':>9} {'time':>7}")
    for r in report["tbptt"]:
        lines.append(
            f"{r['cell']:<11} {r['k1']:>4} {r['k2']:>4} {r['updates']:>8} "
            f"{r['test_mse']:>9.4f} {r['seconds']:>6.0f}s"
        )
    claims = report["claims"]
    verdict = {True: "yes", False: "NO", None: "no clipped run"}
    lines.append("")
    largest = claims["explodes_without_clipping"]
    lines.append(
        f"claims: LSTM and GRU learn it: {verdict[claims['lstm_and_gru_learn']]}; "
        f"SimpleRNN does not: {verdict[claims['simple_rnn_does_not']]}; "
        "largest gradient norm with clipping off: "
        + ("not run" if largest is None else f"{largest:.3g}")
    )
    if "forget_bias" in claims:
        parts = []
        for label, seen in claims["forget_bias"].items():
            at = seen["median_learned_at"]
            parts.append(
                f"{label}: learned in {seen['learned']}/{seen['runs']}, median learned at "
                f"{'never' if at is None else f'step {at:.0f}'}, median test MSE "
                f"{seen['median_test_mse']:.4f}"
            )
        clipping = "clipped" if claims["forget_bias_clipped"] else "unclipped"
        lines.append(f"LSTM forget-gate bias ({clipping}): {'; '.join(parts)}")
    return "\n".join(lines)
