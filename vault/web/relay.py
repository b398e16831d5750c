"""Streaming between the event loop and blocking code: a byte source (a document being
decrypted, an export's ZIP) sent to the client by ``relay``; a request body handed to a blocking
consumer (the upload pipeline) by ``consume_in_thread``.

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
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator

MAX_RUNNING = 64
"""Sources running at once per process; more wait their turn (each holds about ``depth`` chunks)."""

_running = threading.BoundedSemaphore(MAX_RUNNING)
_POLL = 0.5  # seconds: how often a waiting thread checks whether its client went away


async def relay(source: Iterator[bytes], *, depth: int = 4) -> AsyncIterator[bytes]:
    """Yield ``source``'s chunks in the event loop while a worker thread produces them."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()  # chunks, then None (or an error)
    credits = threading.Semaphore(depth)
    stop = threading.Event()

    def hand_over(item: bytes | BaseException | None) -> None:
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
            hand_over(None)
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
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            credits.release()
            yield item
    finally:
        stop.set()
        credits.release()  # wake the thread if it waits for room, so that it sees the stop


class _Closed:
    pass


async def consume_in_thread(chunks: AsyncIterator[bytes], consume: Callable[[bytes], None], *,
                            batch: int = 1 << 20, depth: int = 4) -> None:
    """The other direction: hand a request body to a blocking ``consume`` running in one thread.

    Received pieces (often 64 KiB) are gathered into ``batch``-byte pieces, and the thread works on
    one while the event loop receives the next: one hand-over per MiB instead of a thread-pool hop
    per piece, and receiving overlaps with the work (hashing, encrypting, sending to clamd). At
    most ``depth`` batches wait, so a slow consumer slows the sender (backpressure).

    If ``consume`` raises, reading stops and the error is raised here. If reading fails (the client
    went away), the thread is stopped first, so the caller may clean up what ``consume`` fed.
    Returns once ``consume`` has taken everything.
    """
    loop = asyncio.get_running_loop()
    pending: queue.SimpleQueue[bytes | _Closed] = queue.SimpleQueue()
    room = asyncio.Semaphore(depth)
    done: asyncio.Future[None] = loop.create_future()
    failure: list[BaseException] = []
    abandoned = threading.Event()

    def settle() -> None:
        if not done.done():
            done.set_result(None)

    def work() -> None:
        try:
            while not isinstance(item := pending.get(), _Closed):
                if not failure and not abandoned.is_set():
                    try:
                        consume(item)
                    except BaseException as exc:  # noqa: BLE001  (raised again in the event loop)
                        failure.append(exc)
                loop.call_soon_threadsafe(room.release)
        finally:
            loop.call_soon_threadsafe(settle)

    threading.Thread(target=work, name="body", daemon=True).start()
    gathered: list[bytes] = []
    size = 0

    async def send(data: bytes) -> None:
        await room.acquire()
        if failure:
            raise failure[0]
        pending.put(data)

    try:
        async for chunk in chunks:
            if failure:
                raise failure[0]
            gathered.append(chunk)
            size += len(chunk)
            if size >= batch:
                await send(b"".join(gathered))
                gathered, size = [], 0
        if gathered:
            await send(b"".join(gathered))
    except BaseException:
        abandoned.set()  # what is still queued is not worth consuming
        raise
    finally:
        pending.put(_Closed())
        await asyncio.shield(done)  # the thread has stopped touching what it fed
    if failure:
        raise failure[0]
