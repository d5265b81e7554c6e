"""Time limits for calls that wait on the network and have no reliable limit of their own.

A Service Bus operation can wait far longer than its own ``timeout`` argument when the peer accepts the
connection and then never answers (the link never opens). ``within`` runs such a call on a helper thread
and stops waiting for it after ``seconds``: the caller gets ``DeadlineExceeded`` at once, and whatever
the call was using is cleaned up when the call finally returns. A hung call holds one helper thread,
never a lock that other invocations need.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

T = TypeVar("T")
# Enough for the worker's concurrent invocations plus a few hung calls; more calls wait their turn
# and still time out on schedule.
HELPER_THREADS: Final = 64

# Threads are started on first use only, so importing this module costs nothing.
_helpers = ThreadPoolExecutor(HELPER_THREADS, thread_name_prefix="bounded-call")


class DeadlineExceeded(TimeoutError):
    """The call did not finish in time; it may still complete later (callers must tolerate that)."""


def within(seconds: float, what: str, call: Callable[[], T], cleanup: Callable[[], None] | None = None) -> T:
    """Return ``call()``'s result, or raise its exception or DeadlineExceeded after ``seconds``.

    ``cleanup`` runs once the call has returned, whenever the caller did not get a result from it
    (the call failed or took too long): the caller cannot trust the resource any more.
    """
    future = _helpers.submit(call)
    try:
        return future.result(timeout=seconds)
    except BaseException as exc:
        if cleanup is not None:
            future.add_done_callback(lambda _: _quietly(cleanup))
        if isinstance(exc, TimeoutError) and not future.done():
            raise DeadlineExceeded(f"{what} did not finish within {seconds:g} s") from None
        raise


def _quietly(cleanup: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):
        cleanup()
