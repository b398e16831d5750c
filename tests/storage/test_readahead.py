"""The export's read-ahead (``DocumentService.plaintexts``): order, slow documents, failures."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from vault.storage.blobs import BlobStoreUnavailable
from vault.storage.service import DocumentService


def reader(delays: dict[tuple[int, int], float], fail: tuple[int, int] | None = None,
           closed: list[int] | None = None) -> DocumentService:
    """A service whose documents are 3 segments ``b"<doc>:<segment>"``, some of them slow."""
    service = object.__new__(DocumentService)  # only ``plaintext`` is used by the read-ahead

    def plaintext(document: SimpleNamespace, key: bytes) -> Iterator[bytes]:
        try:
            for segment in range(3):
                time.sleep(delays.get((document.number, segment), 0))
                if (document.number, segment) == fail:
                    raise BlobStoreUnavailable("the store went away")
                yield f"{document.number}:{segment}".encode()
        finally:
            if closed is not None:
                closed.append(document.number)

    service.plaintext = plaintext
    return service


def documents(count: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(id=uuid.uuid4(), number=n) for n in range(count)]


def read_all(service: DocumentService, docs: list[SimpleNamespace], **kwargs: int) -> list[list[bytes]]:
    keys = {d.id: b"k" for d in docs}
    return [list(chunks) for _, chunks in service.plaintexts(docs, keys, **kwargs)]


def test_documents_come_out_whole_and_in_order_from_both_lanes() -> None:
    docs = documents(7)
    got = read_all(reader({}), docs, depth=2)
    assert got == [[f"{n}:{s}".encode() for s in range(3)] for n in range(7)]


def test_a_document_slower_than_the_wait_is_waited_for_not_lost() -> None:
    # Segments slower than the consumer's 0.5 s wait (one of them the very last, landing about when
    # the wait times out and the worker ends): every byte arrives, no store failure is reported.
    docs = documents(3)
    got = read_all(reader({(1, 2): 0.7, (2, 0): 0.55, (2, 2): 0.5}), docs)
    assert got == [[f"{n}:{s}".encode() for s in range(3)] for n in range(3)]


def test_a_store_failure_reaches_the_reader_after_the_good_segments() -> None:
    docs = documents(4)
    keys = {d.id: b"k" for d in docs}
    seen: list[bytes] = []
    with pytest.raises(BlobStoreUnavailable):
        for _, chunks in DocumentService.plaintexts(reader({}, fail=(2, 1)), docs, keys):
            seen.extend(chunks)
    assert seen == [f"{n}:{s}".encode() for n in range(2) for s in range(3)] + [b"2:0"]


def test_a_reader_that_stops_early_stops_the_workers() -> None:
    docs, closed = documents(50), []
    keys = {d.id: b"k" for d in docs}
    before = threading.active_count()
    stream = DocumentService.plaintexts(reader({}, closed=closed), docs, keys, depth=1)
    _, first = next(stream)
    assert next(first) == b"0:0"
    stream.close()  # the client went away after one segment
    assert threading.active_count() <= before  # both workers joined
    assert len(closed) < 50 and all(n < 10 for n in closed)  # they stopped within a few documents
