"""A stored object damaged at rest — any bit flipped at any offset (the header, a segment's body, a
tag, a segment boundary, the last byte) or the object cut short anywhere — is never served as the
document: a download (whole or a Range) either returns exactly the original bytes it asked for or
fails with a clear error (the "damaged" answer before any byte, or the connection cut before the
end), never other bytes and never an unexplained 500. On the filesystem store and on SeaweedFS.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from tests.factories import citizen_browser, make_document, pdf
from vault.crypto.streaming import HEADER_SIZE, SEGMENT_SIZE
from vault.storage.models import Document

PLAINTEXT_SIZE = 2 * SEGMENT_SIZE + 300_000  # three segments: the first, a middle one, the last
TAG = 16


def _offsets(size: int) -> st.SearchStrategy[int]:
    """Any offset, with the places where damage is easiest to miss drawn often."""
    edges = [0, 1, HEADER_SIZE - 1, HEADER_SIZE, SEGMENT_SIZE - TAG, SEGMENT_SIZE - 1, SEGMENT_SIZE,
             SEGMENT_SIZE + 1, 2 * SEGMENT_SIZE - 1, 2 * SEGMENT_SIZE, size // 2, size - TAG, size - 1]
    return st.one_of(st.sampled_from(edges), st.integers(0, size - 1))


def _damages(size: int) -> st.SearchStrategy[tuple[str, int, int]]:
    """("flip", offset, bit) or ("cut", new length, 0)."""
    flips = st.tuples(st.just("flip"), _offsets(size), st.integers(0, 7))
    cuts = st.tuples(st.just("cut"), _offsets(size), st.just(0))
    return st.one_of(flips, cuts)


def _ranges(size: int) -> st.SearchStrategy[tuple[int, int]]:
    """A byte range [first, last] of the plaintext, inclusive as in a Range header."""
    return st.tuples(st.integers(0, size - 1), st.integers(0, size - 1)).map(sorted).map(tuple)  # type: ignore[arg-type]


def _damage(original: bytes, damage: tuple[str, int, int]) -> bytes:
    kind, offset, bit = damage
    if kind == "cut":
        return original[:offset]
    changed = bytearray(original)
    changed[offset] ^= 1 << bit
    return bytes(changed)


def _fetch(client: TestClient, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return client.get(url, headers=headers or {})


def _check_answer(answer: httpx.Response, expected: bytes, *, complete: bool) -> None:
    """``expected``: the bytes the request asked for; ``complete``: the damage lies outside them."""
    if answer.status_code in (200, 206):
        # Headers sent, then the stream: every byte received is the document's own, and the body
        # is cut short when a segment it needed failed (the client sees fewer bytes than announced).
        assert int(answer.headers["content-length"]) == len(expected)
        assert expected.startswith(answer.content), "bytes that are not the document's were served"
        assert complete or len(answer.content) < len(expected), "a damaged object was served whole"
        return
    assert not complete, (answer.status_code, answer.text[:300])
    assert answer.status_code == 500, answer.text[:300]
    assert answer.json()["error"] == "damaged", answer.text[:300]
    assert "endommagé" in answer.json()["detail"]


def _run_property(client: TestClient, doc: dict[str, Any], content: bytes, read: Callable[[], bytes],
                  write: Callable[[bytes], None]) -> None:
    url = f"/api/v1/documents/{doc['id']}/content"
    original = read()
    size = len(original)
    first_segment_end = SEGMENT_SIZE  # the header and segment 0 share the first MiB

    def segments_of(first: int, last: int) -> tuple[int, int]:
        """The ciphertext span [lo, hi) of the segments holding plaintext bytes [first, last]."""
        first_pt = SEGMENT_SIZE - HEADER_SIZE - TAG
        per = SEGMENT_SIZE - TAG

        def segment(position: int) -> int:
            return 0 if position < first_pt else 1 + (position - first_pt) // per

        last_segment = segment(len(content) - 1)
        lo, hi_index = segment(first), segment(last)
        # A range reaching the end authenticates the final segment (the truncation check).
        hi_index = last_segment if last == len(content) - 1 else hi_index
        return lo * SEGMENT_SIZE, min(size, (hi_index + 1) * SEGMENT_SIZE)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(damage=_damages(size), wanted=_ranges(len(content)))
    def prop(damage: tuple[str, int, int], wanted: tuple[int, int]) -> None:
        kind, offset, _ = damage
        write(_damage(original, damage))
        try:
            whole = _fetch(client, url)
            # A damaged header or first segment is refused before any byte; later damage cuts the stream.
            _check_answer(whole, content, complete=False)
            if offset < first_segment_end:
                assert whole.status_code == 500
            first, last = wanted
            part = _fetch(client, url, {"Range": f"bytes={first}-{last}"})
            lo, hi = segments_of(first, last)
            # The header is read by every ranged read; a cut anywhere before ``hi`` loses needed bytes.
            touched = offset < HEADER_SIZE or (lo <= offset < hi if kind == "flip" else offset < hi)
            _check_answer(part, content[first:last + 1], complete=not touched)
            if not touched:
                assert part.status_code == 206 and part.content == content[first:last + 1]
        finally:
            write(original)

    prop()
    assert _fetch(client, url).content == content  # put back whole, it reads again


def _blob_key(engine: Any, document_id: str) -> str:
    with Session(engine) as db:
        document = db.get(Document, uuid.UUID(document_id))
        assert document is not None
        return document.blob_key


def test_damage_is_detected_on_the_filesystem_store(app: Any, engine: Any) -> None:
    content = pdf(PLAINTEXT_SIZE)
    with citizen_browser(app) as browser:
        doc = make_document(browser, content)
        path = app.state.services.blob_store.root / (key := _blob_key(engine, doc["id"]))[:2] / key
        quiet = TestClient(app, raise_server_exceptions=False, cookies=dict(browser.cookies))
        _run_property(quiet, doc, content, path.read_bytes, path.write_bytes)


def test_damage_is_detected_on_seaweedfs(vault_app: Any, citizen: Any, engine: Any, s3_client: Any,
                                         bucket: str) -> None:
    content = pdf(PLAINTEXT_SIZE)
    doc = make_document(citizen, content)
    key = _blob_key(engine, doc["id"])

    def read() -> bytes:
        return bytes(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def write(data: bytes) -> None:
        s3_client.put_object(Bucket=bucket, Key=key, Body=data)

    quiet = TestClient(vault_app, raise_server_exceptions=False, cookies=dict(citizen.cookies))
    _run_property(quiet, doc, content, read, write)
