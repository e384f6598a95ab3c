"""Waiting on the event loop for work done on another thread.

The retrieval server's retriever and the policy server's model each live on one thread of
their own; request handlers run on uvicorn's event loop. A handler hands its work over with
a callback from :func:`thread_signal` and awaits the future, so no thread is blocked while
it waits::

    done, notify = thread_signal()
    worker.submit(job, on_done=notify)      # the worker thread calls notify() when finished
    await asyncio.wait_for(done, timeout)
"""

from __future__ import annotations

import asyncio
from typing import Callable


def thread_signal() -> tuple[asyncio.Future[None], Callable[[], None]]:
    """A future of the running event loop, and a callback any thread may call to complete it
    (calls after the first, or after the future was cancelled, do nothing)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def complete() -> None:
        if not done.done():
            done.set_result(None)

    return done, lambda: loop.call_soon_threadsafe(complete)
