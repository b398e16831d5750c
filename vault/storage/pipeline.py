"""The upload pipeline (docs/architecture.md, "Upload"): one pass, streamed, constant memory, no plaintext on disk.

    plaintext chunks ─┬─▶ size limit, type sniffed from the first bytes, SHA-256
                      ├─▶ clamd INSTREAM            (scanner thread)
                      └─▶ streaming AEAD ─▶ ciphertext spool ─▶ parts ─▶ multipart upload (uploader thread)

Scanning and storing overlap instead of adding up. The blob becomes visible only after clamd's
verdict is clean (the multipart upload is completed then, or aborted); clamd unreachable or
erroring fails closed. Memory stays flat: clamd's queue is bounded (a slow clamd slows the reader),
and ciphertext waiting for the store goes to an anonymous temporary file (ciphertext only), so
clamd is never held back by the store — it scans only after the end of its stream. The store is
sent to ``STORE_LAG`` behind the body, and catches up while clamd scans.
"""

from __future__ import annotations

import hashlib
import os
import queue
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from vault.crypto.streaming import StreamEncryptor
from vault.storage.antivirus import Scanner, ScannerUnavailable, Verdict
from vault.storage.blobs import PART_SIZE, BlobStore, BlobStoreUnavailable, BlobUpload
from vault.storage.exceptions import (
    DocumentInfected,
    EmptyDocument,
    TooLarge,
    UnsupportedType,
)

SNIFF_BYTES = 16


def sniff(head: bytes) -> str | None:
    """The media type from the file's first bytes (magic numbers), or None if not allowed."""
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1",
                                                b"msf1"):
        return "image/heic"
    return None


class _Worker(threading.Thread):
    """Consumes a bounded queue; after a failure it keeps draining so the producer never blocks.
    At the end of the stream it runs ``last`` in its own thread (clamd's verdict, the store's last
    part), so that both ends finish at the same time instead of one after the other."""

    def __init__(self, name: str, handle: Callable[[bytes], None], last: Callable[[], object] | None = None) -> None:
        super().__init__(name=name, daemon=True)
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)  # 1 MiB batches, then None: the end
        self.handle = handle
        self.last = last
        self.result: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                if self.error is None and self.last is not None:
                    try:
                        self.result = self.last()
                    except BaseException as exc:  # noqa: BLE001  (re-raised in the producer's thread)
                        self.error = exc
                return
            if self.error is None:
                try:
                    self.handle(item)
                except BaseException as exc:  # noqa: BLE001  (re-raised in the producer's thread)
                    self.error = exc

    def put(self, item: bytes) -> None:
        self.queue.put(item)

    def stop(self, *, wait: bool = True) -> None:
        self.queue.put(None)
        if wait:
            self.join()


class _CiphertextSpool:
    """Ciphertext waiting for the store, in an anonymous temporary file (ciphertext only: never
    plaintext on disk). The producer never waits for the store, so clamd — which scans only after
    the end of its stream — gets the document at its own pace while the store catches up."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="vault-spool-")  # noqa: SIM115  (closed by close(); already unlinked)
        self._cond = threading.Condition()
        self._written = 0
        self._read = 0
        self._ended = False
        self._cancelled = False

    def put(self, data: bytes) -> None:
        with self._cond:
            os.pwrite(self._file.fileno(), data, self._written)
            self._written += len(data)
            self._cond.notify()

    def end(self, *, cancelled: bool = False) -> None:
        with self._cond:
            self._ended = True
            self._cancelled = self._cancelled or cancelled
            self._cond.notify()

    def get(self, limit: int, *, behind: int = 1) -> bytes | None:
        """Up to ``limit`` bytes, waiting until ``behind`` bytes wait to be read (or the end); None
        once everything was read (or cancelled)."""
        with self._cond:
            while self._written - self._read < behind and not self._ended:
                self._cond.wait()
            if self._cancelled or self._read == self._written:
                return None
            length = min(limit, self._written - self._read)
            offset = self._read
            self._read += length
        return os.pread(self._file.fileno(), length, offset)

    def close(self) -> None:
        self._file.close()


STORE_LAG = 256 * 1024 * 1024
"""How far the store stays behind the body while it arrives (``VAULT_UPLOAD_STORE_LAG_MB``). Parts leave only once this much
ciphertext waits, or at the end of the stream: the upload waits for clamd's verdict, which comes a
whole scan after clamd's last byte, so the body goes to clamd first, without the store's requests
taking CPU from receiving it; the store catches up while clamd scans. A slow store is at most this
much behind at the end (a large document sent slowly is still stored as it arrives)."""


class _Uploader(threading.Thread):
    """Sends the spool to the store, ``STORE_LAG`` behind the body; flushes the last part at the end
    (still invisible)."""

    def __init__(self, spool: _CiphertextSpool, upload: BlobUpload, lag: int) -> None:
        super().__init__(name="blob-upload", daemon=True)
        self.spool, self.upload, self.lag = spool, upload, lag
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while (data := self.spool.get(PART_SIZE, behind=self.lag + PART_SIZE)) is not None:
                self.upload.write(data)
            if not self.spool._cancelled:
                self.upload.flush()
        except BaseException as exc:  # noqa: BLE001  (re-raised in the producer's thread)
            self.error = exc
            self.spool.end(cancelled=True)


@dataclass(frozen=True)
class Stored:
    media_type: str
    size: int
    sha256: str
    ciphertext_size: int
    verdict: Verdict


class UploadPipeline:
    """Feed it plaintext with ``feed`` (from one thread, in order), then ``finish`` or ``abort``."""

    def __init__(self, *, store: BlobStore, scanner: Scanner, key: bytes, document_id: uuid.UUID, blob_key: str,
                 max_size: int, store_lag: int = STORE_LAG) -> None:
        self.store, self.blob_key, self.max_size = store, blob_key, max_size
        self._hash = hashlib.sha256()
        self._size = 0
        self._head = bytearray()
        self._media_type: str | None = None
        self._encryptor = StreamEncryptor(key, document_id.bytes)
        self._scan = scanner.start()  # ScannerUnavailable: nothing started yet
        try:
            self._upload = store.start_upload(blob_key)
        except BaseException:
            self._scan.abort()
            raise
        self._scanner = _Worker("clamd-instream", self._scan.feed, last=self._scan.finish)
        self._spool = _CiphertextSpool()
        self._uploader = _Uploader(self._spool, self._upload, store_lag)
        self._scanner.start()
        self._uploader.start()
        self._finished = False

    def _check_workers(self) -> None:
        if (error := self._uploader.error) is not None:
            raise BlobStoreUnavailable(f"upload failed ({type(error).__name__})")
        if (error := self._scanner.error) is not None:
            raise error if isinstance(error, ScannerUnavailable) else ScannerUnavailable(type(error).__name__)

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self._size += len(data)
        if self._size > self.max_size:
            raise TooLarge(self.max_size)
        if self._media_type is None:
            self._head += data[:SNIFF_BYTES]
            if len(self._head) >= SNIFF_BYTES:
                self._media_type = self._sniff()
        self._hash.update(data)
        self._scanner.put(data)
        if ciphertext := self._encryptor.update(data):
            self._spool.put(ciphertext)
        self._check_workers()

    def _sniff(self) -> str:
        media_type = sniff(bytes(self._head))
        if media_type is None:
            raise UnsupportedType()
        return media_type

    def finish(self) -> Stored:
        """Wait for clamd's verdict; complete the blob only if clean. Raises (and keeps nothing)
        EmptyDocument, UnsupportedType, DocumentInfected, ScannerUnavailable, BlobStoreUnavailable."""
        if self._size == 0:
            raise EmptyDocument()
        media_type = self._media_type or self._sniff()
        self._spool.put(self._encryptor.finalize())
        self._spool.end()
        # clamd scans after the end of its stream: it has it all now, and scans while the store
        # catches up with the spool. Nothing is visible in the store before complete().
        self._scanner.stop(wait=False)
        self._scanner.join()
        verdict = self._scanner.result
        if self._scanner.error is not None or not (isinstance(verdict, Verdict) and verdict.clean):
            self._spool.end(cancelled=True)  # no need to finish sending what will be aborted
        self._uploader.join()
        self._spool.close()
        self._check_workers()
        assert isinstance(verdict, Verdict)
        if not verdict.clean:
            raise DocumentInfected(verdict.threat or "inconnu")
        ciphertext_size = self._upload.complete()
        self._finished = True
        return Stored(media_type=media_type, size=self._size, sha256=self._hash.hexdigest(),
                      ciphertext_size=ciphertext_size, verdict=verdict)

    def abort(self) -> None:
        """Drop everything: threads stopped, the multipart upload aborted, clamd's socket closed."""
        if self._scanner.is_alive():
            self._scanner.error = self._scanner.error or RuntimeError("aborted")
            self._scanner.stop()
        self._spool.end(cancelled=True)
        self._uploader.join()
        self._spool.close()
        self._scan.abort()
        if self._finished:
            try:
                self.store.delete(self.blob_key)
            except BlobStoreUnavailable:
                pass  # an orphan blob: `vault storage reconcile` removes it
        else:
            self._upload.abort()
