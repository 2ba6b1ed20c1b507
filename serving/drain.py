"""Graceful shutdown: which calls the server still takes after SIGTERM, and when it closes.

gRPC's core cancels every call it has received but not yet handed to the application when
the server shuts down (server.cc KillPendingWorkLocked), and grpc.aio hands calls over one at
a time on the event loop. Stopping the gRPC server the moment SIGTERM arrives therefore
cancels requests that clients sent before the signal. `drain` shuts down in three steps:

1. intake: every call is still answered until none has arrived for `QUIET_SECONDS` (the
   transports hold no more), for at most `INTAKE_SECONDS`;
2. refusal: a new call is held, then gets UNAVAILABLE (503 over REST), once arrivals stop
   again or after at most `REFUSAL_SECONDS`. Holding it keeps a client that retries at once
   from arriving again and again, so the transports are empty when the server closes. gRPC
   cancels, not refuses, a call that arrives at that very moment: clients that keep sending
   new calls regardless (open loop) can still see that, rarely;
3. close: the listeners close, and the calls in progress finish within what is left of the
   grace period (gRPC's own stop, aiohttp's shutdown). Calls still running then are
   cancelled (gRPC answers them UNAVAILABLE "Cancelling all calls"; a REST request's
   connection closes without an answer).

A call counts as arrived when its headers do (the gRPC handler lookup, the REST handler),
before its request message is read, so a large request still uploading is never refused.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("serving")

QUIET_SECONDS = 0.05
QUIET_STEPS = 5  # the loop is checked every QUIET_SECONDS / QUIET_STEPS
INTAKE_SECONDS = 1.0
REFUSAL_SECONDS = 2.0  # closed-loop clients are all held well before; a cap for open-loop ones
CLOSE_STEP_SECONDS = 0.01  # the servers' first step of closing runs before this is up
SHUTTING_DOWN = "Server is shutting down; not accepting new requests"


class Gate:
    """Records arriving calls and, once closed, tells the servers to refuse them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.open = True
        self.arrivals = 0
        self.last_arrival = clock()
        self._released: asyncio.Event | None = None

    def admit(self) -> bool:
        """Record an arriving call; False if it must be refused (the gate is closed): then
        await `refusal` before answering it."""
        self.arrivals += 1
        self.last_arrival = self._clock()
        return self.open

    def close(self) -> None:
        """Refuse new calls from now on, holding each refusal until `release`."""
        self.open = False
        self._released = asyncio.Event()

    def release(self) -> None:
        """Let held refusals be answered (the listeners are about to close)."""
        if self._released is not None:
            self._released.set()

    async def refusal(self) -> None:
        """Wait until a refused call may be answered."""
        if self._released is not None:
            await self._released.wait()

    async def wait_quiet(self, quiet: float, limit: float) -> bool:
        """Wait until no call has arrived for `quiet` seconds of a free event loop, at most
        `limit` seconds; True if arrivals stopped.

        Time in which the loop was blocked (decoding a large request, say) does not count:
        calls that reached the transport meanwhile are only handed over once it is free.
        """
        step = quiet / QUIET_STEPS
        deadline = self._clock() + limit
        quiet_for = 0.0
        while quiet_for < quiet:
            started = self._clock()
            if started >= deadline:
                return False
            await asyncio.sleep(min(step, deadline - started))
            now = self._clock()
            blocked = now - started > 2 * step
            if blocked or self.last_arrival >= started:
                quiet_for = 0.0
            else:
                quiet_for += now - started
        return True


async def drain(
    gate: Gate,
    grace_seconds: float,
    close_listeners: Callable[[float], Awaitable[None]],
    *,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Shut down in the three steps above within `grace_seconds`. `close_listeners(seconds)`
    stops the servers, letting calls in progress run for at most that long."""
    deadline = clock() + grace_seconds

    def left(cap: float = grace_seconds) -> float:
        return max(0.0, min(cap, deadline - clock()))

    before = gate.arrivals
    await gate.wait_quiet(QUIET_SECONDS, left(INTAKE_SECONDS))
    gate.close()
    answered = gate.arrivals - before
    await gate.wait_quiet(QUIET_SECONDS, left(REFUSAL_SECONDS))
    log.info(
        "draining: %d call(s) that arrived after the signal were taken, %d refused; "
        "closing the listeners (%.1f s left for calls in progress)",
        answered,
        gate.arrivals - before - answered,
        left(),
    )
    closing = asyncio.ensure_future(close_listeners(left()))
    # Answer the held refusals only once the listeners are closed (and gRPC's GOAWAY sent):
    # a client retrying at once then fails to connect (UNAVAILABLE) instead of arriving
    # as the server shuts down.
    await asyncio.sleep(CLOSE_STEP_SECONDS)
    gate.release()
    await closing
