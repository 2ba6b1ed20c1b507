"""How a servable's signatures are called: directly on the model workers, or through a batcher.

The batcher is a wrapper around `Servable.run_tensors`, as TF Serving's BatchingSession wraps
a session: concurrent runs that feed and fetch the same tensors, with compatible inputs, are
concatenated along dimension 0 (up to max_batch_size, waiting at most batch_timeout_micros
for the first task), padded up to the next allowed batch size, run once and split back.
"""

import asyncio
import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable

import grpc
import numpy as np
import tensorflow as tf

from tfsp.serving.config import BatchingSettings
from tfsp.serving.errors import ServingError, invalid
from tfsp.serving.servable import RUN_TIMED_OUT, Servable
from tfsp.serving.workers import ModelWorkers, Outcome, resolve_waiters

log = logging.getLogger("serving")

BatchObserver = Callable[[str, int, int], None]  # (model name, batch size, padding)

# What every task of a batch gets when all their deadlines passed in the queue: the batch is
# not run (batching_session.cc ProcessBatch).
QUEUE_TIMED_OUT = "Run() timeout exceeded while waiting in batching queue"


class DirectRunner:
    """Each call runs on its own, on the model worker threads.

    Session calls release the interpreter lock while the graph runs, so a worker computes
    while the event loop decodes and answers other requests. Calls run inline on the loop
    (until 2026-12) were as fast for one client (p50 1.41 against 1.46 ms) and slower under
    load: 1,151 and 1,342 QPS at 64 clients, against 1,474 and 1,724 on a pool.
    """

    def __init__(self, servable: Servable, workers: ModelWorkers) -> None:
        self._servable = servable
        self._workers = workers

    def submit_async(
        self, feeds: dict[str, np.ndarray], fetches: tuple[str, ...], timeout_ms: int = 0
    ) -> asyncio.Future:
        """Schedule one session run from the running event loop; the future holds the
        fetched values. `timeout_ms` > 0 bounds the run, counted from now."""
        return _run_on(self._workers, self._servable, feeds, fetches, timeout_ms)

    def close(self) -> None:
        """Nothing to drain: calls already submitted finish on the shared workers."""


def _run_on(
    workers: ModelWorkers,
    servable: Servable,
    feeds: dict[str, np.ndarray],
    fetches: tuple[str, ...],
    timeout_ms: int,
) -> asyncio.Future:
    if timeout_ms <= 0:
        return workers.run_async(servable.run_tensors, feeds, fetches)
    deadline = time.monotonic() + timeout_ms / 1000
    return workers.run_async(_run_by, deadline, servable, feeds, fetches)


def _run_by(
    deadline: float, servable: Servable, feeds: dict[str, np.ndarray], fetches: tuple[str, ...]
) -> list:
    # TF Serving runs a call on the thread that received it, so its timeout counts from the
    # request; here a call may first wait for a model worker, and the run gets what is left.
    # A call whose time ran out in that wait ends as its run would have ended there.
    left_ms = int((deadline - time.monotonic()) * 1000)
    if left_ms <= 0:
        raise tf.errors.DeadlineExceededError(None, None, RUN_TIMED_OUT)
    return servable.run_tensors(feeds, fetches, left_ms)


@dataclasses.dataclass
class _Task:
    feeds: dict[str, np.ndarray]
    fetches: tuple[str, ...]
    size: int
    key: tuple
    batch_by: float  # when the batch it opens closes (batch_timeout_micros)
    run_deadline: float | None  # when its run's timeout ends; None: no timeout
    # The caller's loop and its future: results for a whole batch go to a loop in one
    # call_soon_threadsafe, not one wake-up per caller.
    loop: asyncio.AbstractEventLoop
    waiter: asyncio.Future


def _task_size(feeds: dict[str, np.ndarray]) -> int:
    """The rows of one run, in TF Serving's checks and words (ComputeTensorBatchSize)."""
    if not feeds:
        raise invalid("Batching Run() must have at least one input tensor")
    sizes = set()
    for array in feeds.values():
        if array.ndim == 0:
            raise invalid("Batching Run() input tensors must have at least one dimension")
        sizes.add(array.shape[0])
    if len(sizes) != 1:
        raise invalid("Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop()


def _pad(array: np.ndarray, rows: int) -> np.ndarray:
    # Padding repeats the first row, as TF Serving's batching session does.
    filler = np.repeat(array[:1], rows, axis=0)
    return np.concatenate([array, filler], axis=0)


class BatchingRunner:
    """Merges concurrent calls into batches run by `num_batch_threads` threads.

    Calls share a batch when they feed and fetch the same tensors (TF Serving's
    TensorSignature: each combination has its own queue there) with the same dtypes and
    inner shapes.
    """

    def __init__(
        self,
        servable: Servable,
        settings: BatchingSettings,
        fallback: ModelWorkers,
        observe: BatchObserver | None = None,
    ) -> None:
        self._servable = servable
        self._settings = settings
        self._fallback = fallback
        self._observe = observe
        self._timeout = settings.batch_timeout_micros / 1e6
        self._capacity = settings.max_batch_size * settings.max_enqueued_batches
        self._queue: collections.deque[_Task] = collections.deque()
        self._queued = 0
        self._closed = False
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(
                target=self._work,
                name=f"batch-{servable.name}-{servable.version}-{i}",
                daemon=True,
            )
            for i in range(settings.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit_async(
        self, feeds: dict[str, np.ndarray], fetches: tuple[str, ...], timeout_ms: int = 0
    ) -> asyncio.Future:
        """Queue one session run from the running event loop; the future holds the fetched
        values. `timeout_ms` > 0 bounds the run, counted from now, queueing included.

        INVALID_ARGUMENT/UNAVAILABLE errors are raised at once.
        """
        task = self._task(feeds, fetches, timeout_ms)
        if not self._enqueue(task):
            return _run_on(self._fallback, self._servable, feeds, fetches, timeout_ms)
        return task.waiter

    def _task(
        self, feeds: dict[str, np.ndarray], fetches: tuple[str, ...], timeout_ms: int
    ) -> _Task:
        size = _task_size(feeds)
        limit = self._settings.max_batch_size
        if size > limit:
            raise invalid(f"Task size {size} is larger than maximum batch size {limit}")
        key = (fetches,) + tuple(
            (name, array.dtype.str, array.shape[1:]) for name, array in sorted(feeds.items())
        )
        now = time.monotonic()
        run_deadline = now + timeout_ms / 1000 if timeout_ms > 0 else None
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        return _Task(feeds, fetches, size, key, now + self._timeout, run_deadline, loop, waiter)

    def _enqueue(self, task: _Task) -> bool:
        """Queue a task; False once closed (the version is unloading: run it unbatched)."""
        with self._cond:
            if self._closed:
                return False
            if self._queued + task.size > self._capacity:
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    "The batch scheduling queue to which this task was submitted is full",
                )
            self._queue.append(task)
            self._queued += task.size
            # Wake a batch thread only when it has something new to decide: a first task
            # (start its timeout) or a full batch. Waking it on every task costs a GIL
            # round trip per request.
            if len(self._queue) == 1 or self._queued >= self._settings.max_batch_size:
                self._cond.notify()
        return True

    def close(self) -> None:
        """Run what is queued, then stop the batch threads."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    def _ready_prefix(self) -> tuple[int, int]:
        """(tasks, rows) at the queue head that can share one batch."""
        head = self._queue[0]
        rows = tasks = 0
        for task in self._queue:
            if task.key != head.key or rows + task.size > self._settings.max_batch_size:
                break
            rows += task.size
            tasks += 1
        return tasks, rows

    def _next_batch(self) -> list[_Task] | None:
        with self._cond:
            while True:
                if not self._queue:
                    if self._closed:
                        return None
                    self._cond.wait()
                    continue
                tasks, rows = self._ready_prefix()
                full = rows >= self._settings.max_batch_size or tasks < len(self._queue)
                wait = self._queue[0].batch_by - time.monotonic()
                if full or wait <= 0 or self._closed:
                    batch = [self._queue.popleft() for _ in range(tasks)]
                    self._queued -= rows
                    if self._queue:
                        self._cond.notify()  # another thread can start on the rest
                    return batch
                self._cond.wait(wait)

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._run(batch)

    def _run(self, batch: list[_Task]) -> None:
        timeout_ms = _batch_timeout_ms(batch)
        if timeout_ms is None:
            timed_out = ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, QUEUE_TIMED_OUT)
            _deliver(batch, [None] * len(batch), timed_out)
            return
        rows = sum(task.size for task in batch)
        padded = rows
        for allowed in self._settings.allowed_batch_sizes:
            if allowed >= rows:
                padded = allowed
                break
        try:
            feeds = {}
            for name in batch[0].feeds:
                merged = np.concatenate([task.feeds[name] for task in batch], axis=0)
                feeds[name] = _pad(merged, padded - rows) if padded > rows else merged
            values = self._servable.run_tensors(feeds, batch[0].fetches, timeout_ms)
            _check_batched_outputs(values, padded)
        except BaseException as exc:  # every waiting caller must hear about it
            _deliver(batch, [None] * len(batch), exc)
            return
        if self._observe is not None:
            self._observe(self._servable.name, rows, padded - rows)
        parts, offset = [], 0
        for task in batch:
            parts.append([value[offset : offset + task.size] for value in values])
            offset += task.size
        _deliver(batch, parts, None)


def _batch_timeout_ms(batch: list[_Task]) -> int | None:
    """The batch's run timeout, as BatchingSession sets it: the latest of its tasks'
    deadlines, less now (0: none); None when every task's deadline has passed."""
    deadlines = [task.run_deadline for task in batch]
    if None in deadlines:
        return 0
    left = max(deadlines) - time.monotonic()
    if left <= 0:
        return None
    return int(left * 1000)  # under a millisecond left is 0: no timeout, as there


def _check_batched_outputs(values: list[np.ndarray], rows: int) -> None:
    """FAILED_PRECONDITION for outputs that cannot be split back, in TF Serving's words
    (batching_session.cc SplitOutputTensors)."""
    for value in values:
        if value.ndim == 0:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION, "Batched output tensor has 0 dimensions"
            )
        if value.shape[0] != rows:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                "dimension sizes of the input tensors",
            )


def _deliver(batch: list[_Task], results: list, exception: BaseException | None) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for task, result in zip(batch, results, strict=True):
        by_loop.setdefault(task.loop, []).append((task.waiter, result, exception))
    for loop, outcomes in by_loop.items():
        try:
            loop.call_soon_threadsafe(resolve_waiters, outcomes)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            pass
