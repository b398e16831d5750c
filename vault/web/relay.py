"""Streaming a blocking byte source (a document being decrypted, an export's ZIP) to the client.

Starlette iterates a synchronous body by hopping to its thread pool for every chunk and back. Here
one thread runs the whole source and hands each chunk straight to the event loop, which writes it
to the socket while the thread already reads and decrypts the next one: one hand-over per chunk
instead of two, and the source's work overlaps with the sending.

Backpressure: at most ``depth`` chunks wait for the socket; the thread blocks beyond that, so memory
stays bounded whatever the client's speed. When the client goes away (or the source fails), the
thread stops at its next chunk and closes the source (its ``finally`` blocks run in the thread that
iterated it: an S3 body is released, a read-ahead worker stopped).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

MAX_RUNNING = 64
"""Sources running at once per process; more wait their turn (each holds about ``depth`` chunks)."""

_running = threading.BoundedSemaphore(MAX_RUNNING)
_END = object()
_POLL = 0.5  # seconds: how often a waiting thread checks whether its client went away


async def relay(source: Iterator[bytes], *, depth: int = 4) -> AsyncIterator[bytes]:
    """Yield ``source``'s chunks in the event loop while a worker thread produces them."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Queue[object] = asyncio.Queue()
    credits = threading.Semaphore(depth)
    stop = threading.Event()

    def hand_over(item: object) -> None:
        try:
            loop.call_soon_threadsafe(ready.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            stop.set()

    def wait(semaphore: threading.Semaphore) -> bool:
        """Take one unit of ``semaphore`` unless the consumer goes away first (then hold none)."""
        while not semaphore.acquire(timeout=_POLL):
            if stop.is_set():
                return False
        if stop.is_set():
            semaphore.release()
            return False
        return True

    def work() -> None:
        running = False
        try:
            running = wait(_running)
            if not running:
                return
            for chunk in source:
                if not wait(credits):
                    return
                hand_over(chunk)
            hand_over(_END)
        except BaseException as exc:  # noqa: BLE001  (raised again in the event loop, in the response)
            hand_over(exc)
        finally:
            if running:
                _running.release()
            close = getattr(source, "close", None)
            if close is not None:
                close()

    # A daemon thread: a server shutting down never waits for a client that stopped reading.
    threading.Thread(target=work, name="relay", daemon=True).start()
    try:
        while True:
            item = await ready.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            credits.release()
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        credits.release()  # wake the thread if it waits for room, so that it sees the stop
