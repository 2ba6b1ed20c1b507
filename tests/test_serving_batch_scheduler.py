"""The batcher as TF Serving's BatchingSession over TensorFlow's SharedBatchScheduler builds
batches: one queue per tensor signature, a line of batches per queue, TF's limits and texts,
padding, and large-task splitting. In-process on real SavedModels (no server process); each
case names the source that decides it (batching_session.cc, batching_util.cc,
shared_batch_scheduler.h)."""

import asyncio
import threading

import grpc
import numpy as np
import pytest

from tests.serving_harness import BatchRecorder, build_counting_model, build_toy_model
from tfsp.serving.batching import BatchingRunner, BatchScheduler
from tfsp.serving.config import BatchingSettings
from tfsp.serving.errors import ServingError
from tfsp.serving.servable import load_servable
from tfsp.serving.workers import ModelWorkers


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    servable = load_servable(
        "toy", 3, str(build_toy_model(tmp_path_factory.mktemp("t") / "3", 3.0))
    )
    yield servable
    servable.close()


@pytest.fixture(scope="module")
def counting(tmp_path_factory):
    path = build_counting_model(tmp_path_factory.mktemp("c") / "1")
    servable = load_servable("count", 1, str(path))
    yield servable
    servable.close()


@pytest.fixture
def fallback():
    workers = ModelWorkers(2)
    yield workers
    workers.shutdown()


def _runner(servable, fallback, recorder: BatchRecorder | None, **settings) -> BatchingRunner:
    return BatchingRunner(servable, BatchingSettings(**settings), fallback, recorder)


def _call(runner: BatchingRunner, servable, signature: str, inputs: dict, keys: tuple):
    feeds, fetches = servable.tensor_names(signature, tuple(inputs), keys)
    return runner.submit_async(dict(zip(feeds, inputs.values(), strict=True)), fetches)


async def _outcomes(futures: list) -> list:
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 60)
    return [r if isinstance(r, BaseException) else [v.tolist() for v in r] for r in results]


def test_each_tensor_signature_has_its_own_queue(toy, fallback):
    """Interleaved calls to two signatures still fill one batch each (TF keeps a queue per
    TensorSignature); before, each call closed the other's batch: 8 batches of one."""
    recorder = BatchRecorder()
    runner = _runner(toy, fallback, recorder, max_batch_size=8, batch_timeout_micros=200_000,
                     num_batch_threads=1)  # fmt: skip

    async def calls() -> list:
        futures = []
        for i in range(4):
            futures.append(_call(runner, toy, "serving_default",
                                 {"x": np.full((1, 3), i, np.float32)}, ("y",)))  # fmt: skip
            types = {"a": np.array([i]), "s": np.array([b"s"], object),
                     "h": np.array([[i, 1]], np.int32)}  # fmt: skip
            futures.append(_call(runner, toy, "types", types, ("a2",)))
        return await _outcomes(futures)

    try:
        results = asyncio.run(calls())
    finally:
        runner.close()
    assert results[0::2] == [[[[3.0 * i] * 3]] for i in range(4)]
    assert results[1::2] == [[[2 * i]] for i in range(4)]
    assert recorder.batches == [(4, 0), (4, 0)]


def test_a_full_queue_counts_batches_as_tensorflow_does(counting, fallback):
    """shared_batch_scheduler.h: a task that fits the open batch always joins it; one that
    does not needs a new batch, refused once max_enqueued_batches wait (the open one
    included), in TensorFlow's words. The one batch thread is held by an endless run."""
    (feed,), fetches = counting.tensor_names("count", ("n",), ("out",))
    runner = _runner(counting, fallback, None, max_batch_size=4, max_enqueued_batches=3,
                     batch_timeout_micros=0, num_batch_threads=1)  # fmt: skip

    def submit(rows: list, timeout_ms: int = 30_000) -> asyncio.Future:
        return runner.submit_async({feed: np.array(rows, np.int64)}, fetches, timeout_ms)

    async def calls() -> tuple:
        endless = submit([10**15], 500)
        await asyncio.sleep(0.1)  # the thread is running it
        queued = [submit([1, 1, 1]), submit([2, 2, 2]), submit([3, 3, 3]), submit([4])]
        with pytest.raises(ServingError) as caught:
            submit([5])
        return await _outcomes([endless, *queued]), caught.value

    try:
        outcomes, refused = asyncio.run(calls())
    finally:
        runner.close()
    assert refused.code == grpc.StatusCode.UNAVAILABLE
    assert refused.message == (
        "The batch scheduling queue to which this task was submitted is full; currently 3 "
        "batches enqueued and max_enqueued_batches is 3"
    )
    assert outcomes[1:] == [[[1, 1, 1]], [[2, 2, 2]], [[3, 3, 3]], [[4]]]


def test_inner_shapes_must_agree_unless_padding_is_on(counting, fallback):
    """batching_session.cc MergeInputTensors: tasks whose inner shapes differ fail together
    (FAILED_PRECONDITION, its words); with pad_variable_length_inputs each is padded after
    its values with its own first element (batching_util.cc), and the answer keeps it."""
    (feed,), fetches = counting.tensor_names("count", ("n",), ("out",))

    def run(pad: bool) -> list:
        runner = _runner(counting, fallback, None, max_batch_size=8, batch_timeout_micros=200_000,
                         num_batch_threads=1, pad_variable_length_inputs=pad)  # fmt: skip
        rows = ([[7, 2]], [[4, 5, 6]])

        async def calls() -> list:
            return await _outcomes(
                [runner.submit_async({feed: np.array(r, np.int64)}, fetches) for r in rows]
            )

        try:
            return asyncio.run(calls())
        finally:
            runner.close()

    unpadded = run(False)
    assert all(isinstance(r, ServingError) for r in unpadded)
    assert {r.code for r in unpadded} == {grpc.StatusCode.FAILED_PRECONDITION}
    assert unpadded[0].message.startswith(
        "Tensors with name 'n:0' from different tasks have different shapes and padding is "
        "turned off."
    )
    assert run(True) == [[[[7, 2, 7]]], [[[4, 5, 6]]]]


def test_rows_are_padded_with_the_last_tasks_first_row(counting, fallback):
    """batching_session.cc: padding up to an allowed batch size repeats the first row of the
    last task's tensor (it was the first task's here)."""
    (feed,), fetches = counting.tensor_names("count", ("n",), ("out",))
    runs: list = []
    original = counting.run_tensors

    def recording(feeds: dict, fetch: tuple, timeout_ms: int = 0) -> list:
        runs.append(feeds[feed].tolist())
        return original(feeds, fetch, timeout_ms)

    counting.run_tensors = recording  # the session under the batcher, as it is called
    runner = _runner(counting, fallback, None, max_batch_size=4, allowed_batch_sizes=(4,),
                     batch_timeout_micros=200_000, num_batch_threads=1)  # fmt: skip

    async def calls() -> list:
        futures = [runner.submit_async({feed: np.array([v], np.int64)}, fetches) for v in (10, 20)]
        return await _outcomes(futures)

    try:
        results = asyncio.run(calls())
    finally:
        runner.close()
        del counting.run_tensors
    assert results == [[[10]], [[20]]]
    assert runs == [[10, 20, 20, 20]]


def test_large_tasks_are_split_across_batches_and_joined_back(toy, fallback):
    """enable_large_batch_splitting: a task larger than the open batch's room fills it, the
    rest goes in batches of max_execution_batch_size; the caller gets one answer. The task
    limit stays max_batch_size (TensorFlow's words past it)."""
    recorder = BatchRecorder()
    runner = _runner(toy, fallback, recorder, max_batch_size=8, batch_timeout_micros=100_000,
                     num_batch_threads=1, enable_large_batch_splitting=True,
                     max_execution_batch_size=3)  # fmt: skip
    rows = np.arange(21, dtype=np.float32).reshape(7, 3)

    async def calls() -> list:
        first = _call(runner, toy, "serving_default", {"x": rows[:1]}, ("y",))
        whole = _call(runner, toy, "serving_default", {"x": rows[1:]}, ("y",))
        with pytest.raises(ServingError) as caught:
            _call(runner, toy, "serving_default", {"x": np.zeros((9, 3), np.float32)}, ("y",))
        assert caught.value.message == "Task size 9 is larger than maximum input batch size 8"
        return await _outcomes([first, whole])

    try:
        first, whole = asyncio.run(calls())
    finally:
        runner.close()
    assert first == [(rows[:1] * 3).tolist()]
    assert whole == [(rows[1:] * 3).tolist()]
    # 1 row, then the 6-row task: 2 rows to fill that batch, then 3, then 1
    assert recorder.batches == [(3, 0), (3, 0), (1, 0)]


def test_one_pool_of_batch_threads_serves_every_version(toy, counting, fallback):
    """TF Serving's SharedBatchScheduler: the server's num_batch_threads run the batches of
    every model and version, taking ready queues in turn."""
    scheduler = BatchScheduler(1)
    settings = BatchingSettings(max_batch_size=4, batch_timeout_micros=0)
    toys = BatchingRunner(toy, settings, fallback, scheduler=scheduler)
    counts = BatchingRunner(counting, settings, fallback, scheduler=scheduler)
    (feed,), fetches = counting.tensor_names("count", ("n",), ("out",))
    before = {t.name for t in threading.enumerate()}

    async def calls() -> list:
        futures = []
        for i in range(3):
            futures.append(_call(toys, toy, "serving_default",
                                 {"x": np.full((1, 3), i, np.float32)}, ("y",)))  # fmt: skip
            futures.append(counts.submit_async({feed: np.array([i], np.int64)}, fetches))
        return await _outcomes(futures)

    try:
        results = asyncio.run(calls())
        assert {t.name for t in threading.enumerate()} == before  # no threads of their own
    finally:
        toys.close()
        counts.close()
        scheduler.close()
    assert results[0::2] == [[[[3.0 * i] * 3]] for i in range(3)]
    assert results[1::2] == [[[i]] for i in range(3)]
