"""The relay that streams a blocking source (a download, an export) from a worker thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from vault.web.relay import relay


class Source:
    """A blocking source that records how far it went and whether (and where) it was closed."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at
        self.produced = 0
        self.closed = threading.Event()
        self.closed_in: str | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            for i in range(self.count):
                if i == self.fail_at:
                    raise OSError("the store went away")
                self.produced += 1
                yield i.to_bytes(4, "big")
        finally:
            self.closed_in = threading.current_thread().name
            self.closed.set()


async def take(source: Iterator[bytes], n: int | None = None, **kwargs) -> list[bytes]:
    out: list[bytes] = []
    stream = relay(source, **kwargs)
    try:
        async for chunk in stream:
            out.append(chunk)
            if n is not None and len(out) == n:
                break
    finally:
        await stream.aclose()
    return out


def test_every_chunk_arrives_in_order_and_the_source_is_closed_in_its_thread() -> None:
    source = Source(500)
    chunks = asyncio.run(take(iter(source)))
    assert [int.from_bytes(c, "big") for c in chunks] == list(range(500))
    assert source.closed.wait(5)
    assert source.closed_in and source.closed_in.startswith("relay")


def test_a_consumer_that_stops_early_stops_the_source_with_bounded_read_ahead() -> None:
    source = Source(10_000)
    chunks = asyncio.run(take(iter(source), 3, depth=4))
    assert len(chunks) == 3
    assert source.closed.wait(5), "the source was never closed"
    assert source.produced <= 3 + 4 + 1  # what was taken, what waited for room, the one in hand


def test_a_failing_source_fails_the_stream_after_the_chunks_before_it() -> None:
    source = Source(100, fail_at=10)
    got: list[bytes] = []

    async def consume() -> None:
        async for chunk in relay(iter(source)):
            got.append(chunk)

    with pytest.raises(OSError, match="the store went away"):
        asyncio.run(consume())
    assert len(got) == 10
    assert source.closed.wait(5)


def test_a_slow_consumer_keeps_the_source_waiting() -> None:
    source = Source(1000)

    async def slow() -> int:
        stream = relay(iter(source), depth=2)
        first = await anext(stream)
        await asyncio.sleep(0.3)  # the client reads nothing for a while
        produced = source.produced
        await stream.aclose()
        return produced if first else -1

    assert asyncio.run(slow()) <= 1 + 2 + 1
    assert source.closed.wait(5)


def test_sources_beyond_the_limit_wait_for_a_free_slot_and_leave_none_taken(monkeypatch) -> None:
    import vault.web.relay as module

    slots = threading.BoundedSemaphore(1)
    monkeypatch.setattr(module, "_running", slots)
    monkeypatch.setattr(module, "_POLL", 0.05)
    first, second, third = Source(1000), Source(10), Source(10)

    async def scenario() -> None:
        holding = relay(iter(first), depth=2)
        await anext(holding)  # the first source runs and holds the only slot
        waiting = relay(iter(second))
        waiter = asyncio.create_task(anext(waiting))
        await asyncio.sleep(0.3)
        assert second.produced == 0 and not waiter.done()  # no slot yet
        abandoned = relay(iter(third))
        gone = asyncio.create_task(anext(abandoned))
        await asyncio.sleep(0.1)
        gone.cancel()  # its client leaves while it waits for a slot
        with pytest.raises(asyncio.CancelledError):
            await gone
        await abandoned.aclose()
        await holding.aclose()  # the first finishes: the second gets the slot
        assert int.from_bytes(await asyncio.wait_for(waiter, 5), "big") == 0
        assert [c async for c in waiting] == [i.to_bytes(4, "big") for i in range(1, 10)]

    asyncio.run(scenario())
    for source in (first, second):
        assert source.closed.wait(5)
    assert third.produced == 0  # never started: it waited for a slot, then its client was gone
    assert slots.acquire(timeout=2)  # the slot came back: nothing leaked


# ---- the other direction: a request body to a blocking consumer ----------------------------------------------


class Body:
    """An async request body of ``count`` pieces that records how far it was read."""

    def __init__(self, count: int, piece: int = 65_536, fail_at: int | None = None) -> None:
        self.count, self.piece, self.fail_at, self.read = count, piece, fail_at, 0

    async def __aiter__(self):
        for i in range(self.count):
            if i == self.fail_at:
                raise ConnectionResetError("the client went away")
            self.read += 1
            yield bytes([i % 256]) * self.piece
            await asyncio.sleep(0)


def test_a_body_reaches_the_consumer_whole_in_order_and_in_batches() -> None:
    from vault.web.relay import consume_in_thread

    body, taken, threads = Body(100), [], set()

    def consume(data: bytes) -> None:
        taken.append(data)
        threads.add(threading.current_thread().name)

    asyncio.run(consume_in_thread(aiter(body), consume, batch=1 << 20))
    assert b"".join(taken) == b"".join(bytes([i % 256]) * 65_536 for i in range(100))
    assert [len(t) for t in taken] == [1 << 20] * 6 + [4 * 65_536]  # 16 pieces per batch, the rest last
    assert threads == {"body"}


def test_a_failing_consumer_stops_the_reading() -> None:
    from vault.web.relay import consume_in_thread

    body = Body(10_000)
    calls = []

    def consume(data: bytes) -> None:
        calls.append(len(data))
        if len(calls) == 2:
            raise ValueError("too large")

    with pytest.raises(ValueError, match="too large"):
        asyncio.run(consume_in_thread(aiter(body), consume, batch=1 << 20, depth=2))
    assert len(calls) == 2
    assert body.read < 10 * 16  # stopped within a few batches, not read to the end


def test_a_body_that_breaks_stops_the_consumer_before_returning() -> None:
    from vault.web.relay import consume_in_thread

    body, calls = Body(1000, fail_at=100), []

    def consume(data: bytes) -> None:
        calls.append(len(data))

    with pytest.raises(ConnectionResetError):
        asyncio.run(consume_in_thread(aiter(body), consume, batch=1 << 20))
    count = len(calls)
    assert count <= 100 // 16  # at most what was received (a busy machine may not have started on it)
    time.sleep(0.2)
    assert len(calls) == count  # nothing is consumed once the error was raised: the caller may clean up
