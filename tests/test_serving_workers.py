"""The model worker threads: outcomes reach the right caller, in one wake-up per burst."""

import asyncio
import threading
import time

import pytest

from tfsp.serving.workers import ModelWorkers


@pytest.fixture
def workers():
    pool = ModelWorkers(3)
    yield pool
    pool.shutdown(wait=True)


def _square(value: int) -> int:
    return value * value


def _fail(message: str) -> None:
    raise ValueError(message)


def test_loop_callers_get_their_own_results_and_errors(workers):
    async def main() -> tuple[list, BaseException]:
        results = await asyncio.gather(*(workers.run_async(_square, i) for i in range(200)))
        with pytest.raises(ValueError) as caught:
            await workers.run_async(_fail, "bad input")
        return results, caught.value

    results, error = asyncio.run(main())
    assert results == [i * i for i in range(200)]
    assert str(error) == "bad input"


def test_results_that_finish_while_the_loop_is_busy_arrive_in_one_wake_up(workers):
    loop = asyncio.new_event_loop()
    wake_ups = []
    original = loop.call_soon_threadsafe

    def counting(callback, *args):
        wake_ups.append(callback)
        return original(callback, *args)

    loop.call_soon_threadsafe = counting
    started = threading.Event()

    def slow(value: int) -> int:
        started.wait(10)
        return value

    async def main() -> list:
        futures = [workers.run_async(slow, i) for i in range(3)]
        started.set()
        time.sleep(0.3)  # the loop is busy (blocked) while all three finish
        return await asyncio.gather(*futures)

    try:
        assert loop.run_until_complete(main()) == [0, 1, 2]
    finally:
        loop.close()
    assert len(wake_ups) == 1


def test_a_caller_that_gives_up_does_not_break_the_workers(workers):
    release = threading.Event()

    async def main() -> int:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(workers.run_async(release.wait, 10), timeout=0.05)
        release.set()
        await asyncio.sleep(0.1)  # the abandoned call finishes; its result has no taker
        return await workers.run_async(_square, 7)

    assert asyncio.run(main()) == 49


def test_a_closed_loop_does_not_break_the_workers(workers):
    release = threading.Event()
    loop = asyncio.new_event_loop()

    async def start() -> None:
        workers.run_async(release.wait, 10)

    loop.run_until_complete(start())
    loop.close()
    release.set()

    async def next_call() -> int:
        return await asyncio.wait_for(workers.run_async(_square, 5), timeout=10)

    assert asyncio.run(next_call()) == 25


def test_shutdown_answers_what_was_queued_then_refuses_new_calls():
    pool = ModelWorkers(1)
    gate = threading.Event()

    async def main() -> tuple[object, list]:
        first = pool.run_async(gate.wait, 10)
        queued = [pool.run_async(_square, i) for i in range(5)]
        gate.set()
        # shutdown waits for the threads; the loop keeps running to take their results
        await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)
        assert first.done() and all(f.done() for f in queued)
        return first.result(), [f.result() for f in queued]

    first, queued = asyncio.run(main())
    assert first is True
    assert queued == [0, 1, 4, 9, 16]

    async def late() -> None:
        pool.run_async(_square, 1)

    with pytest.raises(RuntimeError, match="after shutdown"):
        asyncio.run(late())


def test_at_least_one_thread():
    with pytest.raises(ValueError, match="at least one thread"):
        ModelWorkers(0)
