"""The document vault's logic: keys, uploads, listing, reading, changes, deletion, the access log,
KEK rotation and reconciliation. No HTTP here."""

from __future__ import annotations

import logging
import queue
import re
import threading
import unicodedata
import uuid
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TypedDict

from sqlalchemy import delete, func, or_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from vault import crypto
from vault.alerts.service import AlertService
from vault.crypto.hierarchy import (
    blob_prefix,
    citizen_key_context,
    kek_version,
    new_citizen_key,
    new_document_key,
    open_citizen_key,
    open_document_key,
)
from vault.crypto.rotation import WrappedColumn
from vault.crypto.streaming import SEGMENT_SIZE, decrypt_object, decrypt_range
from vault.dates import OLDEST_DATE, parse_date
from vault.db import utcnow
from vault.oidc.documents import DocumentChoice
from vault.settings import Settings
from vault.storage.antivirus import Scanner
from vault.storage.blobs import BlobStore, BlobStoreUnavailable, ReadAhead, new_blob_key
from vault.storage.exceptions import (
    DocumentHeld,
    DocumentNotFound,
    InvalidDocumentInput,
    NotDepositor,
    QuotaExceeded,
)
from vault.storage.models import DOCUMENT_TYPES, AccessLogEntry, CitizenKey, Document
from vault.storage.pipeline import Stored, UploadPipeline
from vault.translation import N_

logger = logging.getLogger(__name__)

ORPHAN_AGE = timedelta(hours=1)
COUNTER_SOURCE = "counter"  # ``Document.source`` of a document added at the counter under a mandate
_EXTENSIONS = {"application/pdf": ".pdf", "image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp",
               "image/heic": ".heic"}
# The other extensions a file of the type is known by (kept as the citizen named it).
_ALSO_NAMED = {"application/pdf": (".pdf",), "image/jpeg": (".jpg", ".jpeg", ".jpe", ".jfif"), "image/png": (".png",),
               "image/webp": (".webp",), "image/heic": (".heic", ".heif")}


@dataclass(frozen=True)
class Actor:
    """Who acts on a citizen's vault: the citizen (session), an app (access token), the DPO."""

    # "citizen" | "app" | "dpo" | "link" (someone holding a share link and its code) | "agent" (a counter
    # agent under a mandate: ``name`` is the counter's service)
    kind: str
    citizen_id: uuid.UUID
    actor_id: str
    name: str
    scopes: frozenset[str] = frozenset()
    granted: frozenset[uuid.UUID] = frozenset()  # an app's token, a share link: the documents the citizen chose

    @property
    def is_owner(self) -> bool:
        return self.kind == "citizen"

    def may_see(self, document: Document) -> bool:
        """The citizen sees their vault; an app, the documents the citizen chose for it (RFC 9396
        grants on its token) and those it deposited itself; a share link, the documents it gives.
        Nothing else exists for them."""
        if self.kind == "link":
            return document.id in self.granted
        return self.kind != "app" or document.id in self.granted or document.source == self.actor_id

    def may_change(self, document: Document) -> bool:
        """Renaming, changing or deleting: the citizen always; an app only what it deposited itself;
        a share link or a counter agent never."""
        if self.kind in ("link", "agent"):
            return False
        return self.kind != "app" or document.source == self.actor_id


@dataclass
class PendingUpload:
    pipeline: UploadPipeline
    document_id: uuid.UUID
    wrapped_key: bytes
    blob_key: str


class ReconcileReport(TypedDict):
    orphans_removed: list[str]  # blob keys
    orphans_kept_recent: list[str]
    documents_without_blob: list[str]  # document ids
    # Uploads begun and never completed (a replica killed mid-upload), older than the abandon age:
    # {"key", "upload_id", "started"}; aborted unless dry run.
    unfinished_uploads: list[dict[str, str]]
    unfinished_uploads_aborted: int
    unfinished_uploads_kept_recent: int


@dataclass(frozen=True)
class DocumentMeta:
    type: str
    title: str
    valid_until: date | None
    filename: str


def clean_filename(raw: str | None, media_type: str | None = None) -> str:
    """A filename safe to store and to send back: no path, no control characters, NFC, ≤ 255;
    ``document.pdf`` (the media type's extension) when nothing usable was sent. Its extension is
    the media type's (sniffed from the bytes): ``x.html`` holding a PDF is stored as ``x.pdf``, so
    that no download or export names a PDF as a web page."""
    name = _safe_name(raw)
    extension = _EXTENSIONS.get(media_type or "", "")
    if not name:
        return "document" + extension
    known = _ALSO_NAMED.get(media_type or "", (extension,))
    if not extension or name.lower().endswith(known):
        return name
    stem, dot, old = name.rpartition(".")
    if dot and stem and re.fullmatch(r"[A-Za-z0-9]{1,10}", old):  # another type's extension: replaced
        name = stem.rstrip(" .") or "document"
        if name.lower().endswith(known):  # "x.pdf.html": "x.pdf"
            return name
    return name[: 255 - len(extension)] + extension


def download_name(document: Document) -> str:
    """The name a download is saved under: the document's current title (renamed documents download
    under their new name), made safe, with the extension of its type; the stored file name if the
    title gives nothing usable."""
    extension = _EXTENSIONS.get(document.media_type, "")
    stem = _safe_name(document.title)
    if extension and stem.lower().endswith(extension):
        stem = stem[: -len(extension)]
    if not stem:
        return document.filename
    return stem[: 255 - len(extension)] + extension


def _safe_name(raw: str | None) -> str:
    name = unicodedata.normalize("NFC", raw or "")
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().strip(".")
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 255 - len(ext) - 1] + dot + ext) if dot and len(ext) <= 10 else name[:255]
    return name


def _clean_title(text: str | None) -> str:
    """No control characters, whitespace runs made one space."""
    return " ".join("".join(ch for ch in (text or "") if unicodedata.category(ch)[0] != "C").split())


UNKNOWN_TYPE = f"Type inconnu. Types possibles : {', '.join(DOCUMENT_TYPES)}."


def validate_meta(fields: dict[str, str], *, filename: str | None, require_type: bool = False) -> DocumentMeta:
    """A new document's fields (type ``other`` and a title from the file's name when not given;
    with ``require_type``, as on the citizen's form, a missing type is refused).
    ``filename`` is kept as sent: it is cleaned once the media type is known."""
    errors: dict[str, str] = {}
    kind = (fields.get("type") or ("" if require_type else "other")).strip()
    if not kind:
        errors["type"] = N_("Choisissez le type de document.")
    elif kind not in DOCUMENT_TYPES:
        errors["type"] = UNKNOWN_TYPE
    title = _clean_title(fields.get("title"))
    if not title:  # derived from the file's name when none is given, cut to fit
        title = (_safe_name(filename).rsplit(".", 1)[0] or DOCUMENT_TYPES.get(kind, "Document"))[:200]
    if len(title) > 200:
        errors["title"] = N_("Le titre ne doit pas dépasser 200 caractères.")
    valid_until = None
    if raw := (fields.get("valid_until") or "").strip():
        try:
            valid_until = parse_date(raw)
        except ValueError:
            errors["valid_until"] = N_("La date de validité doit être au format JJ/MM/AAAA ou AAAA-MM-JJ.")
        else:
            if valid_until.year < OLDEST_DATE.year:
                errors["valid_until"] = N_("La date de validité doit être au format JJ/MM/AAAA ou AAAA-MM-JJ.")
    if errors:
        raise InvalidDocumentInput(errors)
    return DocumentMeta(type=kind, title=title, valid_until=valid_until, filename=filename or "")


def _choices(rows: Iterable[Document]) -> list[DocumentChoice]:
    """Documents as the consent page and "Mes applications" show them."""
    return [DocumentChoice(id=d.id, type=d.type, title=d.title, created_at=d.created_at, valid_until=d.valid_until)
            for d in rows]


class DocumentService:
    def __init__(self, *, settings: Settings, keys: crypto.KeyProvider, store: BlobStore, scanner: Scanner,
                 alerts: AlertService) -> None:
        self.settings = settings
        self.keys = keys
        self.store = store
        self.scanner = scanner
        self.alerts = alerts  # "an app deposited a document" mails

    @property
    def max_size(self) -> int:
        return self.settings.max_file_mb * 1024 * 1024

    # ---- keys ----------------------------------------------------------------------------------

    def citizen_key(self, db: Session, citizen_id: uuid.UUID) -> bytes:
        """The citizen's key, created on first use. Concurrent first uploads race here: the insert
        does nothing on conflict and everyone reads the key that won."""
        row = db.get(CitizenKey, citizen_id)
        if row is None:
            _, wrapped = new_citizen_key(self.keys, citizen_id)
            insert = postgresql_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
            db.exec(insert(CitizenKey).values(citizen_id=citizen_id, wrapped=wrapped, kek_version=kek_version(wrapped),
                                              created_at=utcnow()).on_conflict_do_nothing())
            row = db.exec(select(CitizenKey).where(CitizenKey.citizen_id == citizen_id)
                          .execution_options(populate_existing=True)).one()
        return open_citizen_key(self.keys, row.wrapped, citizen_id)

    # ---- upload --------------------------------------------------------------------------------

    def usage(self, db: Session, owner_id: uuid.UUID) -> tuple[int, int]:
        count, total = db.exec(select(func.count(), func.coalesce(func.sum(Document.size), 0))
                               .where(Document.owner_id == owner_id)).one()
        return int(count), int(total)

    def _check_quota(self, db: Session, owner_id: uuid.UUID, adding: int) -> None:
        count, total = self.usage(db, owner_id)
        if count >= self.settings.quota_documents:
            raise QuotaExceeded(self.settings.quota_documents, count, kind="count")
        limit = self.settings.quota_mb * 1024 * 1024
        if total + adding > limit:
            raise QuotaExceeded(limit, total)

    def begin_upload(self, db: Session, owner_id: uuid.UUID) -> PendingUpload:
        """Check the quota, make a document key, start the pipeline (clamd and the store answer)."""
        self._check_quota(db, owner_id, adding=1)
        document_id = uuid.uuid4()
        citizen_key = self.citizen_key(db, owner_id)
        key, wrapped = new_document_key(citizen_key, document_id)
        blob_key = new_blob_key(blob_prefix(citizen_key))  # the citizen's objects share a prefix: erased together
        pipeline = UploadPipeline(store=self.store, scanner=self.scanner, key=key, document_id=document_id,
                                  blob_key=blob_key, max_size=self.max_size,
                                  store_lag=self.settings.upload_store_lag_mb * 1024 * 1024)
        return PendingUpload(pipeline=pipeline, document_id=document_id, wrapped_key=wrapped, blob_key=blob_key)

    def complete_upload(self, db: Session, *, actor: Actor, pending: PendingUpload, stored: Stored,
                        meta: DocumentMeta) -> Document:
        """Record a stored, clean blob (QuotaExceeded if it no longer fits). If this or the commit
        fails, the caller deletes the blob."""
        # One upload per citizen at a time from here to the commit: two uploads finishing together
        # cannot both fit under the quota. A no-op write takes the lock on PostgreSQL (the row) and
        # SQLite (the database) alike.
        db.exec(update(CitizenKey).where(col(CitizenKey.citizen_id) == actor.citizen_id)
                .values(kek_version=CitizenKey.kek_version))
        self._check_quota(db, actor.citizen_id, adding=stored.size)
        document = Document(
            id=pending.document_id, owner_id=actor.citizen_id, type=meta.type, title=meta.title,
            valid_until=meta.valid_until, filename=clean_filename(meta.filename, stored.media_type),
            media_type=stored.media_type, size=stored.size, sha256=stored.sha256, blob_key=pending.blob_key,
            ciphertext_size=stored.ciphertext_size, wrapped_key=pending.wrapped_key,
            scan_result="clean" if self.settings.antivirus == "clamd" else "not_scanned",
            source="citizen" if actor.is_owner else COUNTER_SOURCE if actor.kind == "agent" else actor.actor_id,
            source_name=None if actor.is_owner else actor.name,
        )
        db.add(document)
        self.log_access(db, actor, "deposit", document)
        logger.info("document stored", extra={"document_id": str(document.id), "citizen_id": str(actor.citizen_id),
                                              "size": stored.size, "media_type": stored.media_type})
        if actor.kind == "app":  # the citizen hears of it (unless that alert is off); a failed mail is only logged
            self.alerts.document_deposited(db, citizen_id=actor.citizen_id, app_name=actor.name,
                                           document_id=document.id, title=document.title)
        return document

    # ---- reading and changing -------------------------------------------------------------------

    def get(self, db: Session, *, actor: Actor, document_id: uuid.UUID) -> Document:
        document = db.get(Document, document_id)
        if document is None or document.owner_id != actor.citizen_id or not actor.may_see(document):
            raise DocumentNotFound()  # another citizen's, or one this app may not see: 404, never 403
        return document

    def _get_to_change(self, db: Session, *, actor: Actor, document_id: uuid.UUID) -> Document:
        document = self.get(db, actor=actor, document_id=document_id)
        if not actor.may_change(document):
            raise NotDepositor()
        return document

    def list_documents(self, db: Session, *, actor: Actor, type: str | None = None, limit: int = 50,
                       offset: int = 0) -> tuple[list[Document], int]:
        query = select(Document).where(Document.owner_id == actor.citizen_id)
        if actor.kind == "app":
            query = query.where(or_(col(Document.id).in_(actor.granted), col(Document.source) == actor.actor_id))
        if type:
            query = query.where(Document.type == type)
        total = db.exec(select(func.count()).select_from(query.subquery())).one()
        items = list(db.exec(query.order_by(col(Document.created_at).desc()).offset(offset).limit(limit)))
        self.log_access(db, actor, "list", None)
        return items, int(total)

    def update(self, db: Session, *, actor: Actor, document_id: uuid.UUID, changes: dict[str, str | None]) -> Document:
        document = self._get_to_change(db, actor=actor, document_id=document_id)
        given = {k: v for k, v in changes.items() if v is not None}  # None (JSON null): no change
        errors: dict[str, str] = {}
        if "type" in given and given["type"].strip() not in DOCUMENT_TYPES:
            errors["type"] = UNKNOWN_TYPE  # an empty type is an error here, not "other"
        if "title" in given and not _clean_title(given["title"]):
            errors["title"] = N_("Le titre ne peut pas être vide.")
        if errors:
            raise InvalidDocumentInput(errors)
        merged = {"type": document.type, "title": document.title,
                  "valid_until": document.valid_until.isoformat() if document.valid_until else ""}
        merged.update(given)  # valid_until "" removes the date
        meta = validate_meta(merged, filename=document.filename)
        document.type, document.title, document.valid_until = meta.type, meta.title, meta.valid_until
        document.updated_at = utcnow()
        self.log_access(db, actor, "update", document)
        return document

    def delete(self, db: Session, *, actor: Actor, document_id: uuid.UUID) -> str:
        """Delete the row; return the blob key, to delete *after* the commit (a row never points to
        a missing blob; a blob left behind by a crash is an orphan that reconcile removes)."""
        document = self._get_to_change(db, actor=actor, document_id=document_id)
        if document.legal_hold is not None:
            raise DocumentHeld()
        self.log_access(db, actor, "delete", document)
        db.delete(document)
        logger.info("document deleted", extra={"document_id": str(document.id)})
        return document.blob_key

    def _delete_blob(self, blob_key: str) -> None:
        try:
            self.store.delete(blob_key)
        except BlobStoreUnavailable:
            logger.warning("blob not deleted; reconcile will remove it", extra={"blob_key": blob_key})

    def delete_blob_later(self, blob_key: str) -> None:
        self._delete_blob(blob_key)

    def document_key(self, db: Session, document: Document) -> bytes:
        if document.held_key is not None:  # kept under legal hold after its owner's erasure
            return crypto.unwrap(self.keys, document.held_key, context=b"legal-hold:" + document.id.bytes)
        assert document.owner_id is not None
        return open_document_key(self.citizen_key(db, document.owner_id), document.wrapped_key, document.id)

    def plaintext(self, document: Document, key: bytes) -> Generator[bytes, None, None]:
        """The whole document, one authenticated segment at a time (one GetObject, read a few
        segments ahead by a thread of its own while the caller decrypts and sends; each segment
        decrypted where it landed)."""
        with ReadAhead(self.store.open_blob(document.blob_key), SEGMENT_SIZE) as blob:
            yield from decrypt_object(key, document.id.bytes, read=blob.read,
                                      ciphertext_size=document.ciphertext_size)

    def plaintexts(self, documents: list[Document], keys: dict[uuid.UUID, bytes], *, depth: int = 8,
                   fetchers: int = 2) -> Iterator[tuple[Document, Iterator[bytes]]]:
        """Many documents in order, each as an iterator of authenticated plaintext.

        ``fetchers`` worker threads fetch and decrypt ahead, document ``i`` by worker ``i % fetchers``,
        each at most ``depth`` segments ahead of the caller: while one document streams out, the next
        is already requested, so the store's per-object latency (request, first byte) and the
        decryption overlap with whatever the caller does (an export's ZIP and its CRC, the HTTP
        response). Only authenticated segments ever enter a queue; memory stays at about
        ``fetchers * (depth + 1)`` segments whatever the number of documents.
        """
        stop = threading.Event()
        # A lane carries a document's segments, then None at its end (or the error that stopped it).
        lanes: list[queue.Queue[bytes | BaseException | None]] = [queue.Queue(maxsize=depth)
                                                                  for _ in range(max(1, fetchers))]

        def put(lane: queue.Queue[bytes | BaseException | None], item: bytes | BaseException | None) -> bool:
            while not stop.is_set():
                try:
                    lane.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def worker(number: int) -> None:
            lane = lanes[number]
            try:
                for document in documents[number::len(lanes)]:
                    plaintext = self.plaintext(document, keys[document.id])
                    try:
                        for segment in plaintext:
                            if not put(lane, segment):
                                return
                    finally:
                        plaintext.close()
                    if not put(lane, None):
                        return
            except BaseException as exc:  # noqa: BLE001  (handed to the consumer, raised there)
                put(lane, exc)

        threads = [threading.Thread(target=worker, args=(n,), name=f"blob-readahead-{n}", daemon=True)
                   for n in range(len(lanes))]
        for thread in threads:
            thread.start()

        def one(number: int) -> Iterator[bytes]:
            lane, thread = lanes[number], threads[number]
            while True:
                try:
                    item = lane.get(timeout=0.5)
                except queue.Empty:
                    alive = thread.is_alive()
                    try:  # the worker may have put its last item and ended since the wait timed out
                        item = lane.get_nowait()
                    except queue.Empty:
                        if stop.is_set() or not alive:
                            raise BlobStoreUnavailable("the read-ahead stopped") from None
                        continue
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

        try:
            for index, document in enumerate(documents):
                yield document, one(index % len(lanes))
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=5)

    def plaintext_range(self, document: Document, key: bytes, start: int, end: int) -> Generator[bytes, None, None]:
        """Bytes [start, end) fetching and authenticating only the segments they live in."""
        yield from decrypt_range(key, document.id.bytes,
                                 read=lambda offset, length: self.store.read_range(document.blob_key, offset, length),
                                 ciphertext_size=document.ciphertext_size, start=start, end=end)

    # ---- access log ------------------------------------------------------------------------------

    def log_access(self, db: Session, actor: Actor, action: str, document: Document | None) -> None:
        """Every access by someone other than the owner lands in the citizen's access log."""
        if actor.is_owner:
            return
        db.add(AccessLogEntry(citizen_id=actor.citizen_id, actor_kind=actor.kind, actor_id=actor.actor_id,
                              actor_name=actor.name, action=action,
                              document_id=document.id if document else None,
                              document_title=document.title if document else None))

    def access_log(self, db: Session, citizen_id: uuid.UUID, limit: int = 200) -> list[AccessLogEntry]:
        return list(db.exec(select(AccessLogEntry).where(AccessLogEntry.citizen_id == citizen_id)
                            .order_by(col(AccessLogEntry.at).desc()).limit(limit)))

    # ---- the consent page (vault.oidc.documents.DocumentCatalog) --------------------------------------

    @property
    def document_types(self) -> Mapping[str, str]:
        return DOCUMENT_TYPES

    def consent_choices(self, db: Session, *, citizen_id: uuid.UUID, types: Sequence[str]) -> list[DocumentChoice]:
        """The citizen's documents of these types, newest first, as the consent page offers them."""
        rows = db.exec(select(Document).where(Document.owner_id == citizen_id, col(Document.type).in_(types))
                       .order_by(col(Document.created_at).desc()))
        return _choices(rows)

    def choices_by_id(self, db: Session, *, citizen_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> list[DocumentChoice]:
        """The citizen's documents among ``ids`` (those since deleted are left out), newest first."""
        rows = db.exec(select(Document).where(Document.owner_id == citizen_id, col(Document.id).in_(list(ids)))
                       .order_by(col(Document.created_at).desc()))
        return _choices(rows)

    def deposited_by(self, db: Session, *, citizen_id: uuid.UUID, client_id: str) -> list[DocumentChoice]:
        """The citizen's documents that this app deposited, newest first."""
        rows = db.exec(select(Document).where(Document.owner_id == citizen_id, Document.source == client_id)
                       .order_by(col(Document.created_at).desc()))
        return _choices(rows)

    # ---- legal hold, retention and erasure (driven by vault.gdpr) -----------------------------------

    def find(self, db: Session, document_id: uuid.UUID) -> Document:
        """Any document by id, whoever owns it (staff only: the register and legal holds)."""
        document = db.get(Document, document_id)
        if document is None:
            raise DocumentNotFound()
        return document

    def place_hold(self, document: Document, reason: str) -> None:
        """Legal hold (GDPR Art. 17(3)(b)): kept whatever its owner, retention or an erasure asks."""
        document.legal_hold = reason.strip()[:500]

    def release_hold(self, db: Session, document: Document) -> str | None:
        """End a legal hold. A document kept after its owner's erasure has no other reason to exist:
        its row goes, and its blob key is returned, to delete after the commit (else None)."""
        if document.owner_id is None:
            db.delete(document)
            return document.blob_key
        document.legal_hold = None
        return None

    def documents_of(self, db: Session, owner_id: uuid.UUID) -> list[Document]:
        """Every document the citizen owns, oldest first."""
        return list(db.exec(select(Document).where(Document.owner_id == owner_id).order_by(col(Document.created_at))))

    def total_size(self, db: Session, owner_id: uuid.UUID) -> int:
        return self.usage(db, owner_id)[1]

    def keep_held(self, db: Session, owner_id: uuid.UUID) -> list[Document]:
        """Erasure: the citizen's documents under legal hold leave the citizen, their key re-wrapped
        by the KEK (the citizen key is about to be destroyed); return them."""
        held = list(db.exec(select(Document).where(Document.owner_id == owner_id,
                                                   col(Document.legal_hold).is_not(None))))
        for document in held:
            key = self.document_key(db, document)
            document.held_key = crypto.wrap(self.keys, key, context=b"legal-hold:" + document.id.bytes)
            document.owner_id = None
        return held

    def shred_key(self, db: Session, citizen_id: uuid.UUID) -> bool:
        """Crypto-shredding: destroy the citizen key; every copy of every object of the citizen's,
        backups included, is unreadable from here. Whether there was a key."""
        return bool(db.exec(delete(CitizenKey).where(col(CitizenKey.citizen_id) == citizen_id)).rowcount)

    def forget(self, db: Session, citizen_id: uuid.UUID) -> int:
        """Erasure: the citizen's document rows and access log deleted (their objects are deleted by
        the caller, after the commit); returns the number of access-log entries removed."""
        db.exec(delete(Document).where(col(Document.owner_id) == citizen_id))
        return db.exec(delete(AccessLogEntry).where(col(AccessLogEntry.citizen_id) == citizen_id)).rowcount

    def expired(self, db: Session, today: date) -> list[Document]:
        """Documents past their validity date that someone owns and no legal hold keeps."""
        return list(db.exec(select(Document).where(col(Document.valid_until) < today,
                                                   col(Document.legal_hold).is_(None),
                                                   col(Document.owner_id).is_not(None))))

    def ending(self, db: Session, *, first: date, last: date) -> list[Document]:
        """Documents someone owns whose validity date falls between ``first`` and ``last`` (inclusive)."""
        return list(db.exec(select(Document).where(col(Document.valid_until) >= first, col(Document.valid_until) <= last,
                                                   col(Document.owner_id).is_not(None))
                            .order_by(col(Document.valid_until), col(Document.created_at))))

    def forget_renewed_notices(self, db: Session, today: date) -> None:
        """A document whose validity date was pushed back (or removed) is no longer due for deletion."""
        for document in db.exec(select(Document).where(col(Document.retention_notice_at).is_not(None),
                                                       or_(col(Document.valid_until).is_(None),
                                                           col(Document.valid_until) >= today))):
            document.retention_notice_at = None

    def notice_sent(self, document: Document, *, at: datetime) -> None:
        """The "this document has expired" mail left at ``at``."""
        document.retention_notice_at = at

    def remove(self, db: Session, document: Document) -> str:
        """Delete a document's row whoever asks (retention); return its blob key, to delete after the commit."""
        db.delete(document)
        return document.blob_key

    # ---- operations --------------------------------------------------------------------------------

    def wrapped_columns(self) -> list[WrappedColumn]:
        """What this service stores wrapped by the KEK (``vault keys kek rewrap``): citizen keys
        and the keys of documents kept under legal hold after an erasure."""
        return [
            WrappedColumn("citizen keys", CitizenKey.citizen_id, CitizenKey.wrapped,  # type: ignore[arg-type]
                          context=citizen_key_context,
                          on_rewrap=lambda version: {"kek_version": version, "rewrapped_at": utcnow()}),
            WrappedColumn("legal-hold document keys", Document.id, Document.held_key,  # type: ignore[arg-type]
                          context=lambda document_id: b"legal-hold:" + document_id.bytes),
        ]

    def reconcile(self, db: Session, *, dry_run: bool = False, min_age: timedelta = ORPHAN_AGE,
                  upload_age: timedelta | None = None) -> ReconcileReport:
        """Remove blobs without a row older than ``min_age`` (an hour: younger ones may belong to an
        upload in progress) and unfinished uploads older than ``upload_age`` (by default the
        settings' abandon age); report rows whose blob is missing."""
        known = set(db.exec(select(Document.blob_key)).all())
        horizon = utcnow() - min_age
        seen: set[str] = set()
        removed: list[str] = []
        young: list[str] = []
        for key, modified in self.store.list_blobs():
            seen.add(key)
            if key in known:
                continue
            if modified > horizon:
                young.append(key)
                continue
            if not dry_run:
                self.store.delete(key)
            removed.append(key)
        missing = sorted(str(doc_id) for doc_id, key in db.exec(select(Document.id, Document.blob_key)).all()
                         if key not in seen)
        if upload_age is None:
            upload_age = timedelta(minutes=self.settings.multipart_abandon_minutes)
        upload_horizon = utcnow() - upload_age
        unfinished: list[dict[str, str]] = []
        recent_uploads = aborted = 0
        for upload in list(self.store.unfinished_uploads()):
            if upload.started > upload_horizon:
                recent_uploads += 1
                continue
            unfinished.append({"key": upload.key, "upload_id": upload.upload_id, "started": upload.started.isoformat()})
            if not dry_run:
                self.store.abort_upload(upload)
                aborted += 1
        if removed or missing or unfinished:
            logger.warning("reconcile", extra={"orphans_removed": len(removed), "rows_without_blob": len(missing),
                                               "unfinished_uploads": len(unfinished), "uploads_aborted": aborted,
                                               "dry_run": dry_run})
        return {"orphans_removed": removed, "orphans_kept_recent": young, "documents_without_blob": missing,
                "unfinished_uploads": unfinished, "unfinished_uploads_aborted": aborted,
                "unfinished_uploads_kept_recent": recent_uploads}
