"""A ZIP written as a stream, in constant memory: each entry's bytes leave as they are written.

The standard ``zipfile`` writes to a non-seekable file by using data descriptors (sizes and CRC
after each entry's data); ZIP64 is forced so entries over 4 GiB are fine.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class _Sink(io.RawIOBase):
    """A write-only, non-seekable file whose writes are drained by the generator."""

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.offset = 0

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        chunk = bytes(data)
        self.chunks.append(chunk)
        self.offset += len(chunk)
        return len(chunk)

    def drain(self) -> Iterator[bytes]:
        while self.chunks:
            yield self.chunks.popleft()


def stream_zip(entries: Iterable[tuple[str, Iterable[bytes], bool]]) -> Iterator[bytes]:
    """``entries``: (name, chunks, compress). Documents (already compressed formats) are stored;
    JSON and text are deflated."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:
        for name, chunks, compress in entries:
            info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            info.external_attr = 0o600 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                for chunk in chunks:
                    member.write(chunk)
                    yield from sink.drain()
            yield from sink.drain()
    yield from sink.drain()
