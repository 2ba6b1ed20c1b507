"""Quiet, readable progress for long TFX runs.

TFX, Beam and TensorFlow log hundreds of lines per run. By default we show one line per
component (started, finished or cached, with its time) and keep the rest for --verbose.
"""

import logging
import os
import sys
import time
import warnings

_RUNNING = "Component %s is running."
_FINISHED = "Component %s is finished."
_CACHED = "A cached execution %d is used."


class ComponentProgress(logging.Handler):
    """Turns LocalDagRunner's component log records into `[n/N] Component ... 3.2s` lines."""

    def __init__(self, total: int, stream=None) -> None:  # noqa: ANN001 - any text stream
        super().__init__(level=logging.INFO)
        self.total = total
        self.stream = stream or sys.stderr
        self._done = 0
        self._current: str | None = None
        self._started = 0.0
        self._cached = False

    def emit(self, record: logging.LogRecord) -> None:
        """Print a line when a component starts, is served from cache, or finishes."""
        if record.msg == _RUNNING:
            self._current, self._started, self._cached = record.args[0], time.monotonic(), False
        elif record.msg == _CACHED:
            self._cached = True
        elif record.msg == _FINISHED:
            self._done += 1
            seconds = time.monotonic() - self._started
            how = "cached" if self._cached else f"{seconds:.1f}s"
            print(f"  [{self._done}/{self.total}] {record.args[0]:<28} {how}", file=self.stream)
            self.stream.flush()


def quiet_frameworks() -> None:
    """Silence TensorFlow's C++ and Python chatter; call before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def follow_components(total: int, verbose: bool) -> ComponentProgress:
    """Route TFX's absl log records through a ComponentProgress (and nowhere else, unless
    verbose)."""
    from absl import logging as absl_logging

    handler = ComponentProgress(total)
    # Through absl's own verbosity flag, not Logger.setLevel: TensorFlow's SavedModel writer
    # saves and restores that flag, which would silently reset a level set on the logger.
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logger = logging.getLogger("absl")
    absl_logger.addHandler(handler)
    absl_logger.propagate = verbose
    return handler
