"""How a servable's signatures are called: directly on the model workers, or through a batcher.

The batcher is TF Serving's BatchingSession over TensorFlow's SharedBatchScheduler
(batching_session.cc, shared_batch_scheduler.h), rebuilt around `Servable.run_tensors`:

- One `BatchScheduler` per server: `num_batch_threads` threads (default: the machine's
  cores) shared by every queue of every model version, taking ready batches round-robin.
- Each version has one queue per tensor signature: the sets of tensors a run feeds and
  fetches. A queue is a line of batches, the last one open. A task joins the open batch if
  it fits; otherwise it closes that batch and opens the next, unless `max_enqueued_batches`
  are already waiting (UNAVAILABLE). With `enable_large_batch_splitting`, a task larger
  than the room left is cut into pieces that fill the open batch and then batches of
  `max_execution_batch_size`; its outputs are joined back.
- A batch is ready when it is closed, full, or `batch_timeout_micros` after its first task.
- A ready batch's inputs are concatenated: inner shapes must agree, or are padded with each
  tensor's first element under `pad_variable_length_inputs`. Rows are padded with the last
  task's first row up to the next allowed batch size. The batch runs once, with the latest
  deadline among its tasks, and its outputs are split back.
"""

import asyncio
import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import grpc
import numpy as np
import tensorflow as tf

from tfsp.serving.config import BatchingSettings
from tfsp.serving.errors import ServingError, invalid
from tfsp.serving.servable import RUN_TIMED_OUT, Servable
from tfsp.serving.workers import ModelWorkers, Outcome, resolve_waiters, start_threads

if TYPE_CHECKING:
    from tfsp.serving.manager import Runner

log = logging.getLogger("serving")


class BatchObserver(Protocol):
    """What the batcher reports, where TF Serving's batching session records it
    (batching_session.cc, batching_util.h); tfsp.serving.metrics.Metrics is one."""

    def observe_batch_input(self, rows: int) -> None:
        """A call's input tensor entering the batcher: its rows."""

    def observe_queuing(self, micros: int) -> None:
        """A call taken from its queue: how long it waited."""

    def observe_batch(self, padded: int, padding: int) -> None:
        """A batch merged for its run: its size after padding, and the padding rows."""

    def count_wrapped_run(self) -> None:
        """A merged batch run on the session, whatever the outcome."""


# What every task of a batch gets when all their deadlines passed in the queue: the batch is
# not run (batching_session.cc ProcessBatch).
QUEUE_TIMED_OUT = "Run() timeout exceeded while waiting in batching queue"
_UNLIMITED = 2**64 - 1  # a negative size_t option wraps to this in TensorFlow: no limit


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


def run_blocking(runner: "Runner", feeds: dict[str, np.ndarray], fetches: tuple[str, ...]) -> list:
    """One run through a runner from a thread without an event loop (a version's warmup, on
    the loading thread): the runner answers on a loop of this call's own."""

    async def run() -> list:
        return await runner.submit_async(feeds, fetches)

    return asyncio.run(run())


# ---- options, checked when a version loads ----


class BatchingConfigError(ValueError):
    """Batching parameters a version cannot be batched with (TF Serving's text); the version
    fails to load with INVALID_ARGUMENT, as there."""


@dataclasses.dataclass(frozen=True)
class _QueueOptions:
    input_limit: int  # max_batch_size: the largest task
    execution_limit: int  # the largest batch (max_execution_batch_size when splitting)
    timeout: float  # seconds
    max_enqueued: int
    split: bool
    allowed_sizes: tuple[int, ...]
    pad_variable_length: bool


def queue_options(settings: BatchingSettings) -> _QueueOptions:
    """The queue options TF Serving derives from BatchingParameters, checked in its order
    and words (bundle_factory_util.cc WrapSessionForBatching, then shared_batch_scheduler.h
    AddQueue); BatchingConfigError on the first problem. TensorFlow keeps the sizes as
    size_t, so a negative max_batch_size or max_enqueued_batches is no limit there."""
    sizes = settings.allowed_batch_sizes
    if sizes and sizes[-1] != settings.max_batch_size:
        raise BatchingConfigError(
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
            f"{sizes[-1]}; expected {settings.max_batch_size}"
        )
    input_limit = settings.max_batch_size if settings.max_batch_size >= 0 else _UNLIMITED
    max_enqueued = settings.max_enqueued_batches
    if max_enqueued == 0 and not settings.enable_large_batch_splitting:
        max_enqueued = 1  # AddQueue's rewrite, kept there for old low-traffic models
    if max_enqueued < 0:
        max_enqueued = _UNLIMITED
    if input_limit == 0:
        raise BatchingConfigError("input_batch_size_limit must be positive; was 0")
    if settings.batch_timeout_micros < 0:
        raise BatchingConfigError(
            f"batch_timeout_micros must be non-negative; was {settings.batch_timeout_micros}"
        )
    if max_enqueued == 0:
        raise BatchingConfigError("max_enqueued_batches must be positive; was 0")
    execution_limit = input_limit
    if settings.enable_large_batch_splitting:
        execution_limit = settings.max_execution_batch_size
        if execution_limit < 0:
            execution_limit = _UNLIMITED
        if input_limit < execution_limit:
            # TensorFlow's message runs its three values on without separators.
            raise BatchingConfigError(
                "When enable_large_batch_splitting is true, input_batch_size_limit must be "
                f"greater than or equal to max_execution_batch_size.1{input_limit}"
                f"{execution_limit}"
            )
        if execution_limit == 0:
            # Not checked by TF Serving (its split then has no size to cut to): refused here.
            raise BatchingConfigError(
                "enable_large_batch_splitting needs max_execution_batch_size or max_batch_size"
            )
    return _QueueOptions(
        input_limit=input_limit,
        execution_limit=execution_limit,
        timeout=settings.batch_timeout_micros / 1e6,
        max_enqueued=max_enqueued,
        split=settings.enable_large_batch_splitting,
        allowed_sizes=tuple(sizes),
        pad_variable_length=settings.pad_variable_length_inputs,
    )


# ---- tasks and batches ----


class _Split:
    """A task cut into pieces: its outputs are the pieces' joined along dimension 0, or the
    first piece's failure (batching_session.cc SplitInputTask's done callback)."""

    def __init__(self, parts: int, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future):
        self.loop, self.waiter = loop, waiter
        self._results: list[list | None] = [None] * parts
        self._left = parts
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    def finish(self, index: int, result: list | None, error: BaseException | None) -> bool:
        """Record one piece; True once every piece has finished (then `outcome()`)."""
        with self._lock:
            if error is not None and self._error is None:
                self._error = error
            self._results[index] = result
            self._left -= 1
            return self._left == 0

    def outcome(self) -> Outcome:
        if self._error is not None:
            return self.waiter, None, self._error
        joined = [np.concatenate(parts, axis=0) for parts in zip(*self._results, strict=True)]
        return self.waiter, joined, None


@dataclasses.dataclass(eq=False)
class _Task:
    feeds: dict[str, np.ndarray]
    fetches: tuple[str, ...]
    size: int
    enqueued: float
    run_deadline: float | None  # when its run's timeout ends; None: no timeout
    # Where the outcome goes: a future of the caller's loop (results for a whole batch go to
    # a loop in one call_soon_threadsafe, not one wake-up per caller), or a split task.
    loop: asyncio.AbstractEventLoop
    waiter: asyncio.Future
    split: _Split | None = None
    piece: int = 0

    def outcome(self, result: list | None, error: BaseException | None) -> Outcome | None:
        """What its caller gets now; None while other pieces of a split task are pending."""
        if self.split is None:
            return self.waiter, result, error
        return self.split.outcome() if self.split.finish(self.piece, result, error) else None


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


def _pieces(size: int, room: int, limit: int) -> list[int]:
    """Piece sizes of a split task: the open batch's room first, then full batches."""
    pieces = [min(size, room)] if room > 0 else []
    left = size - sum(pieces)
    while left > 0:
        pieces.append(min(limit, left))
        left -= pieces[-1]
    return pieces


@dataclasses.dataclass(eq=False)
class _Batch:
    tasks: list[_Task] = dataclasses.field(default_factory=list)
    size: int = 0

    def add(self, task: _Task) -> None:
        self.tasks.append(task)
        self.size += task.size


class _Queue:
    """One tensor signature's line of batches (shared_batch_scheduler.h Queue); guarded by
    the scheduler's lock."""

    def __init__(self, options: _QueueOptions, process: Callable[[list[_Task]], None]) -> None:
        self.options = options
        self.process = process
        self.batches: collections.deque[_Batch] = collections.deque([_Batch()])
        self.opened = 0.0  # when the open batch got its first task
        self.closed = False
        self.running = 0  # batches taken by a thread and not finished

    def schedule(self, task: _Task, now: float) -> bool:
        """Add a task (ScheduleWithoutOrEagerSplitImpl); True when a batch became ready.
        Raises ServingError when it is too large or the queue is full."""
        options = self.options
        if task.size > options.input_limit:
            raise invalid(
                f"Task size {task.size} is larger than maximum input batch size "
                f"{options.input_limit}"
            )
        open_batch = self.batches[-1]
        room = options.execution_limit - open_batch.size
        if options.split:
            capacity = (options.max_enqueued - len(self.batches)) * options.execution_limit + room
            if task.size > capacity:
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    "The batch scheduling queue to which this task was submitted is full; "
                    f"task size is {task.size} but scheduling capacity is only {capacity} "
                    f"(num_enqueued_batches={len(self.batches)}, max_enqueued_batches="
                    f"{options.max_enqueued}, open_batch_size={open_batch.size}, "
                    f"max_execution_batch_size={options.execution_limit})",
                )
        elif (
            open_batch.size + task.size > options.input_limit
            and len(self.batches) >= options.max_enqueued
        ):
            raise ServingError(
                grpc.StatusCode.UNAVAILABLE,
                "The batch scheduling queue to which this task was submitted is full; "
                f"currently {len(self.batches)} batches enqueued and max_enqueued_batches is "
                f"{options.max_enqueued}",
            )
        was_ready = len(self.batches) > 1 or open_batch.size >= options.execution_limit
        tasks = [task]
        if options.split and task.size > room:
            tasks = _cut(task, _pieces(task.size, room, options.execution_limit))
        for piece in tasks:
            if self.batches[-1].size + piece.size > options.execution_limit:
                self.batches.append(_Batch())  # the open batch closes: ready to run
            if not self.batches[-1].tasks:
                self.opened = now
            self.batches[-1].add(piece)
        is_ready = len(self.batches) > 1 or self.batches[-1].size >= options.execution_limit
        return is_ready and not was_ready

    def ready_at(self) -> float | None:
        """When this queue next has a batch to run (now or later); None: nothing queued."""
        if len(self.batches) > 1 or (self.closed and self.batches[-1].tasks):
            return 0.0
        if not self.batches[-1].tasks:
            return None
        if self.batches[-1].size >= self.options.execution_limit:
            return 0.0
        return self.opened + self.options.timeout

    def take(self, now: float) -> list[_Task] | None:
        """The next ready batch's tasks (ScheduleBatch), or None."""
        ready = self.ready_at()
        if ready is None or ready > now:
            return None
        if len(self.batches) == 1:
            self.batches.append(_Batch())
        self.running += 1
        return self.batches.popleft().tasks

    def drained(self) -> bool:
        return self.running == 0 and len(self.batches) == 1 and not self.batches[-1].tasks


def _cut(task: _Task, pieces: list[int]) -> list[_Task]:
    split = _Split(len(pieces), task.loop, task.waiter)
    parts, offset = [], 0
    for index, rows in enumerate(pieces):
        feeds = {name: array[offset : offset + rows] for name, array in task.feeds.items()}
        parts.append(dataclasses.replace(task, feeds=feeds, size=rows, split=split, piece=index))
        offset += rows
    return parts


class BatchScheduler:
    """TensorFlow's SharedBatchScheduler: `num_threads` batch threads for every queue of
    every version, each taking the next ready batch, queues in round-robin order."""

    def __init__(self, num_threads: int, name: str = "batch") -> None:
        if num_threads < 1:
            raise ValueError(f"num_batch_threads must be positive; was {num_threads}")
        self._cond = threading.Condition()
        self._queues: list[_Queue] = []
        self._next = 0
        self._stopping = False
        self._threads = start_threads(self._work, name, num_threads)

    def add_queue(self, options: _QueueOptions, process: Callable[[list[_Task]], None]) -> _Queue:
        """A new queue whose batches `process` runs (on a batch thread)."""
        queue = _Queue(options, process)
        with self._cond:
            self._queues.append(queue)
        return queue

    def schedule(self, queue: _Queue, task: _Task) -> bool:
        """Queue a task; False if the queue is closed (its version is unloading)."""
        with self._cond:
            if queue.closed:
                return False
            first = not queue.batches[-1].tasks
            if queue.schedule(task, task.enqueued) or first:
                # Wake a thread when a batch is ready, or to start an open batch's timeout;
                # waking it on every task costs a GIL round trip per request.
                self._cond.notify()
        return True

    def close_queues(self, queues: list[_Queue]) -> None:
        """Run what the queues hold now, then drop them (a version unloading)."""
        with self._cond:
            for queue in queues:
                queue.closed = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: all(queue.drained() for queue in queues))
            self._queues = [queue for queue in self._queues if queue not in queues]
            self._next = 0

    def close(self) -> None:
        """Drain every queue, then stop the threads."""
        self.close_queues(list(self._queues))
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    def _next_work(self) -> tuple[_Queue, list[_Task]] | float | None:
        """A ready batch, or else when the next one will be ready (None: nothing queued)."""
        now = time.monotonic()
        soonest = None
        count = len(self._queues)
        for step in range(count):
            queue = self._queues[(self._next + step) % count]
            tasks = queue.take(now)
            if tasks is not None:
                self._next = (self._next + step + 1) % count
                return queue, tasks
            ready = queue.ready_at()
            if ready is not None and (soonest is None or ready < soonest):
                soonest = ready
        return soonest

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    work = self._next_work()
                    if isinstance(work, tuple):
                        break
                    if self._stopping:
                        return
                    self._cond.wait(None if work is None else max(work - time.monotonic(), 0))
                queue, tasks = work
                now = time.monotonic()
                if any((ready := q.ready_at()) is not None and ready <= now for q in self._queues):
                    self._cond.notify()  # another thread can start on the next one
            try:
                queue.process(tasks)
            finally:
                with self._cond:
                    queue.running -= 1
                    if queue.closed:
                        self._cond.notify_all()  # close_queues waits for this


# ---- the runner ----


class BatchingRunner:
    """A version's batching session: its runs are queued by tensor signature on the shared
    scheduler (a private one with `settings.num_batch_threads` threads if none is given),
    and run in batches. Raises BatchingConfigError for parameters TF Serving refuses when it
    loads a version."""

    def __init__(
        self,
        servable: Servable,
        settings: BatchingSettings,
        fallback: ModelWorkers,
        observe: BatchObserver | None = None,
        scheduler: BatchScheduler | None = None,
    ) -> None:
        self._options = queue_options(settings)
        self._servable = servable
        self._fallback = fallback
        self._observe = observe
        self._own_scheduler = scheduler is None
        self._scheduler = scheduler or BatchScheduler(
            settings.num_batch_threads, f"batch-{servable.name}-{servable.version}"
        )
        self._queues: dict[tuple[frozenset, frozenset], _Queue] = {}
        self._by_order: dict[tuple[tuple[str, ...], tuple[str, ...]], _Queue] = {}
        self._closed = False
        self._lock = threading.Lock()

    def submit_async(
        self, feeds: dict[str, np.ndarray], fetches: tuple[str, ...], timeout_ms: int = 0
    ) -> asyncio.Future:
        """Queue one session run from the running event loop; the future holds the fetched
        values. `timeout_ms` > 0 bounds the run, counted from now, queueing included.

        INVALID_ARGUMENT/UNAVAILABLE errors are raised at once.
        """
        size = _task_size(feeds)
        if self._observe is not None:
            for _ in feeds:  # ComputeInputSize records every input tensor's rows
                self._observe.observe_batch_input(size)
        queue = self._queue(tuple(feeds), fetches)
        if queue is not None:
            now = time.monotonic()
            loop = asyncio.get_running_loop()
            task = _Task(
                feeds,
                fetches,
                size,
                now,
                now + timeout_ms / 1000 if timeout_ms > 0 else None,
                loop,
                loop.create_future(),
            )
            if self._scheduler.schedule(queue, task):
                return task.waiter
        # Closed: the version is unloading; calls that still reach it run unbatched.
        return _run_on(self._fallback, self._servable, feeds, fetches, timeout_ms)

    def _queue(self, feed_names: tuple[str, ...], fetches: tuple[str, ...]) -> _Queue | None:
        """The queue of one tensor signature (the sets of names), made on its first use;
        None once closed. Looked up by the names in the call's order first: tuples of
        interned names hash at once, new frozensets would be hashed on every call."""
        queue = self._by_order.get((feed_names, fetches))
        if queue is not None:
            return queue
        key = (frozenset(feed_names), frozenset(fetches))
        with self._lock:
            if self._closed:
                return None
            queue = self._queues.get(key)
            if queue is None:
                queue = self._scheduler.add_queue(self._options, self._run)
                self._queues = {**self._queues, key: queue}
            self._by_order = {**self._by_order, (feed_names, fetches): queue}
        return queue

    def close(self) -> None:
        """Run what is queued; later calls run unbatched."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._scheduler.close_queues(list(self._queues.values()))
        if self._own_scheduler:
            self._scheduler.close()

    def _run(self, batch: list[_Task]) -> None:
        """ProcessBatch: skip a batch whose deadlines all passed, merge, run, split."""
        timeout_ms = _batch_timeout_ms(batch)
        if self._observe is not None:
            taken = time.monotonic()
            for task in batch:
                self._observe.observe_queuing(int((taken - task.enqueued) * 1e6))
        if timeout_ms is None:
            timed_out = ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, QUEUE_TIMED_OUT)
            _deliver(batch, [None] * len(batch), timed_out)
            return
        fetches = batch[0].fetches
        try:
            feeds, padded = self._merge(batch)
            try:
                values = self._servable.run_tensors(feeds, fetches, timeout_ms)
            finally:
                if self._observe is not None:
                    self._observe.count_wrapped_run()
            _check_batched_outputs(values, padded)
        except BaseException as exc:  # every waiting caller must hear about it
            _deliver(batch, [None] * len(batch), exc)
            return
        parts, offset = [], 0
        for task in batch:
            rows_of_task = [value[offset : offset + task.size] for value in values]
            if task.fetches != fetches:  # same tensors, asked for in another order
                by_name = dict(zip(fetches, rows_of_task, strict=True))
                rows_of_task = [by_name[name] for name in task.fetches]
            parts.append(rows_of_task)
            offset += task.size
        _deliver(batch, parts, None)

    def _merge(self, batch: list[_Task]) -> tuple[dict[str, np.ndarray], int]:
        """MergeInputTensors: the batch's feeds and its padded size (recorded first, as
        there, whether the merge then succeeds or not)."""
        rows = sum(task.size for task in batch)
        padded = next((size for size in self._options.allowed_sizes if size >= rows), rows)
        if self._observe is not None:
            self._observe.observe_batch(padded, padded - rows)
        feeds = {}
        for name in batch[0].feeds:
            arrays = [task.feeds[name] for task in batch]
            if self._options.pad_variable_length:
                arrays = _padded_to_longest(arrays)
            else:
                inner = arrays[0].shape[1:]
                if any(array.shape[1:] != inner for array in arrays[1:]):
                    raise ServingError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"Tensors with name '{name}' from different tasks have different "
                        "shapes and padding is turned off. Set pad_variable_length_inputs to "
                        "true, or ensure that all tensors with the same name have equal "
                        "dimensions starting with the first dim.",
                    )
            if padded > rows:
                # The last task's first row, as TF Serving pads (a row known to be valid).
                arrays.append(np.repeat(arrays[-1][:1], padded - rows, axis=0))
            feeds[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        return feeds, padded


def _padded_to_longest(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Each task's tensor padded after its values, in every dimension but the first, to the
    longest in the batch, with its own first element (batching_util.cc AddPadding)."""
    longest = [max(sizes) for sizes in zip(*(array.shape for array in arrays), strict=True)]
    padded = []
    for array in arrays:
        if not 1 <= array.ndim <= 6:
            raise invalid("Only tensors with rank from 1 to 6 can be padded.")
        widths = [(0, 0)] + [(0, n - d) for n, d in zip(longest[1:], array.shape[1:], strict=True)]
        if not any(after for _, after in widths):
            padded.append(array)
            continue
        if array.size == 0:
            raise invalid("Got empty tensor in batch of non-empty tensors.")
        padded.append(np.pad(array, widths, constant_values=array.flat[0]))
    return padded


def _batch_timeout_ms(batch: list[_Task]) -> int | None:
    """The batch's run timeout, as BatchingSession sets it: the latest of its tasks'
    deadlines, less now (0: none); None when every task's deadline has passed."""
    deadlines = [task.run_deadline for task in batch]
    if None in deadlines:
        return 0
    left = max(deadlines) - time.monotonic()  # type: ignore[type-var]
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
        outcome = task.outcome(result, exception)
        if outcome is not None:
            by_loop.setdefault(task.loop, []).append(outcome)
    for loop, outcomes in by_loop.items():
        try:
            loop.call_soon_threadsafe(resolve_waiters, outcomes)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            pass
