"""The relay that streams a blocking source (a download, an export) from a worker thread."""

from __future__ import annotations

import asyncio
import threading
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


async def take(source: Iterator[bytes], n: int | None = None, **kwargs) -> list[bytes]:  # noqa: ANN003
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
