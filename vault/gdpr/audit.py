"""The audit log: append-only and tamper-evident, up to its last signed checkpoint.

Each entry's ``hash`` is an HMAC-SHA256, under the *audit key*, over the previous entry's hash and
the entry's own fields (canonical JSON), so an edited, deleted, inserted or reordered entry breaks
the chain from there on, and someone who can only edit the database cannot compute a new chain:
the audit key is a service secret wrapped by the KEK (``server_secret`` ``audit-mac``, unwrapped
once per process and kept in memory). Entries written before migration 0021 are a plain SHA-256
chain; ``audit_anchor.mac_from`` says where the keyed part starts (with its own HMAC, ``mac_tag``).

The chain's newest entry is recorded in the database (``audit_anchor``) and, so that removing the
newest entries, the head record or both tables shows too, outside it: *checkpoints* ``{seq, head,
mac_from, count, at}`` signed with an Ed25519 key (its seed a service secret wrapped by the KEK,
``audit-checkpoint``) are written to the object store (``audit/checkpoints/<seq>.json``) and to the
log, every ``VAULT_AUDIT_CHECKPOINT_ENTRIES`` entries, at least every
``VAULT_AUDIT_CHECKPOINT_SECONDS`` while entries are written, and by ``vault audit checkpoint``.
``vault audit verify`` walks the chain and compares it with the latest checkpoint. Writers are
serialised (a PostgreSQL advisory lock; SQLite has a single writer) and ``prev_hash`` is unique, so
the chain can never fork.

It records who did what to which data — never document contents, passwords or tokens; people are
named by a keyed hash of their internal id (see ``subject_of``), which survives their erasure
without naming them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import threading
import time
import uuid
import weakref
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, delete, event, func, text
from sqlmodel import Session, col, select

from vault.crypto import DecryptionError, KeyProviderError
from vault.crypto.signatures import ed25519_public_key, ed25519_sign, ed25519_verify
from vault.db import utcnow
from vault.gdpr.models import AuditAnchor, AuditEntry
from vault.storage.blobs import BlobNotFound, BlobStore, BlobStoreUnavailable

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
_LOCK_ID = 0x7661756C74  # "vault": the advisory lock serialising audit writers on PostgreSQL
LOGIN_ACTION = "oidc.login"  # a code issued to an app: one login to it
FORBIDDEN_DETAILS = {"password", "token", "secret", "content", "otp", "code", "cookie"}
MAC_KEY = "audit-mac"  # service secrets (oidc.keys.KeyStore), wrapped by the KEK
CHECKPOINT_KEY = "audit-checkpoint"
CHECKPOINTS = "audit/checkpoints/"  # in the object store: <seq, 12 digits>.json
_CHECKPOINT_NAME = re.compile(r"(\d{1,18})\.json")
_SIGNED_PREFIX = b"citizen-vault audit checkpoint v1\n"
_PENDING = "audit.checkpoint"  # Session.info: the checkpoint to write once the transaction commits


def subject_of(key: bytes, citizen_id: uuid.UUID) -> str:
    """The keyed hash that names a citizen in the register, the audit log and the tombstone."""
    return hmac.new(key, b"subject:" + citizen_id.bytes, hashlib.sha256).hexdigest()


class Secrets(Protocol):
    """Where the subject key lives (``oidc.keys.KeyStore``)."""

    def secret(self, db: Session, name: str) -> bytes: ...


class AppLogins:
    """The OpenID provider's ``LoginLog``: one entry ``oidc.login`` per code issued to an app (actor
    ``app:<client_id>``, target the citizen's keyed subject), in the login's transaction. Codes and
    tokens are purged within a day; these entries last as long as the log (``audit_retention_days``),
    and the city's statistics count them per app and per week."""

    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets

    def app_login(self, db: Session, *, client_id: str, citizen_id: uuid.UUID) -> None:
        subject = subject_of(self.secrets.secret(db, "subject-key"), citizen_id)
        record(db, actor=f"app:{client_id}", action=LOGIN_ACTION, target=f"subject:{subject}")


def _canonical(prev_hash: str, at: datetime, actor: str, action: str, target: str, details: dict[str, Any]) -> bytes:
    return json.dumps([prev_hash, at.isoformat(timespec="microseconds"), actor, action, target, details],
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _digest(prev_hash: str, at: datetime, actor: str, action: str, target: str, details: dict[str, Any]) -> str:
    """The plain hash of entries written before the chain was keyed (migration 0021)."""
    return hashlib.sha256(_canonical(prev_hash, at, actor, action, target, details)).hexdigest()


def _mac(key: bytes, prev_hash: str, at: datetime, actor: str, action: str, target: str,
         details: dict[str, Any]) -> str:
    return hmac.new(key, _canonical(prev_hash, at, actor, action, target, details), hashlib.sha256).hexdigest()


def _start_tag(key: bytes, entry_id: int) -> str:
    return hmac.new(key, f"audit-mac-from:{entry_id}".encode(), hashlib.sha256).hexdigest()


class AuditSecrets(Protocol):
    """Where the audit key and the checkpoint key live (``oidc.keys.KeyStore``): created on first
    use unless ``create`` is false (then a missing one raises ``LookupError``)."""

    def secret(self, db: Session, name: str, *, create: bool = True) -> bytes: ...


@dataclass(frozen=True)
class Checkpoint:
    """The head of the chain at one moment, as signed: ``seq`` is the newest entry's id, ``head``
    its hash (MAC), ``count`` the entries then in the log, ``mac_from`` where the keyed part starts."""

    seq: int
    head: str
    mac_from: int | None
    count: int
    at: str

    def signed_bytes(self) -> bytes:
        return _SIGNED_PREFIX + json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @property
    def key(self) -> str:
        return f"{CHECKPOINTS}{self.seq:012d}.json"


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    first_bad_id: int | None = None
    problem: str | None = None
    checkpoint: Checkpoint | None = None  # the latest checkpoint the trail was compared with
    # What is wrong, for pages that say it in their own words: "edited", "gap", "truncated" (the
    # trail ends at ``ends_at`` but should reach ``expected``), "rewritten", "keyed_start", "key",
    # "checkpoint" (unreadable, unsigned or out of reach).
    code: str | None = None
    ends_at: int | None = None
    expected: int | None = None


class AuditTrail:
    """The audit log's keys and checkpoints for one process (built by ``vault.services``).

    ``record`` and ``verify`` below find it through the session's engine (``attach``), so that the
    many places that write an entry need nothing but their session."""

    def __init__(self, *, secrets: AuditSecrets, store: BlobStore, every_entries: int = 100,
                 every_seconds: int = 300) -> None:
        self.secrets = secrets
        self.store = store
        self.every_entries = every_entries
        self.every_seconds = every_seconds
        self._lock = threading.Lock()
        self._last_seq = -1  # the newest checkpoint this process wrote (or tried to)
        self._last_time = 0.0  # time.monotonic() of that attempt

    def mac_key(self, db: Session, *, create: bool = True) -> bytes:
        return self.secrets.secret(db, MAC_KEY, create=create)

    def record_key(self, db: Session, anchor: AuditAnchor | None) -> tuple[bytes, bool]:
        """The audit key for a new entry, and whether this entry starts the keyed part: only when the
        key is created by it. The key is created only while nothing says the keyed part has started
        (no ``mac_from``, no checkpoint): a missing key is then an error, never silently replaced."""
        try:
            return self.mac_key(db, create=False), False
        except LookupError:
            if (anchor is not None and anchor.mac_from is not None) or self._keyed_checkpoint(db):
                logger.error("the audit key is missing from the database (server secret audit-mac)")
                raise
        return self.mac_key(db, create=True), True

    def _keyed_checkpoint(self, db: Session) -> bool:
        """Whether a checkpoint says the keyed part has started (or one exists that cannot be read)."""
        try:
            if not self.store.list_records(CHECKPOINTS):
                return False
        except BlobStoreUnavailable:
            return True
        latest, trouble = self.latest_checkpoint(db)
        return trouble is not None or (latest is not None and latest.mac_from is not None)

    def _checkpoint_seed(self, db: Session, *, create: bool = True) -> bytes:
        return self.secrets.secret(db, CHECKPOINT_KEY, create=create)

    def public_key(self, db: Session) -> str:
        """The checkpoints' Ed25519 public key (base64url), for whoever checks them elsewhere."""
        try:
            exists = bool(self.store.list_records(CHECKPOINTS))
        except BlobStoreUnavailable:
            exists = True
        return _b64(ed25519_public_key(self._checkpoint_seed(db, create=not exists)))

    # ---- checkpoints ---------------------------------------------------------------------------

    def _due(self, seq: int) -> bool:
        with self._lock:
            return (seq - self._last_seq >= self.every_entries
                    or time.monotonic() - self._last_time >= self.every_seconds)

    def _head(self, db: Session) -> Checkpoint | None:
        last = db.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(1)).first()
        if last is None or last.id is None:
            return None
        anchor = db.get(AuditAnchor, 1)
        count = db.exec(select(func.count()).select_from(AuditEntry)).one()
        return Checkpoint(seq=last.id, head=last.hash, mac_from=anchor.mac_from if anchor else None, count=count,
                          at=utcnow().isoformat(timespec="seconds"))

    def _sign(self, db: Session, checkpoint: Checkpoint, *, first: bool) -> bytes:
        seed = self._checkpoint_seed(db, create=first)  # once a checkpoint exists, its key is never recreated
        document = {"checkpoint": asdict(checkpoint), "alg": "Ed25519", "public_key": _b64(ed25519_public_key(seed)),
                    "signature": _b64(ed25519_sign(seed, checkpoint.signed_bytes()))}
        return json.dumps(document, sort_keys=True, indent=1).encode()

    def _write(self, checkpoint: Checkpoint, document: bytes) -> None:
        """To the object store, then to the log. A failure is logged, never raised: the entries are
        committed already, and the next checkpoint covers them."""
        with self._lock:
            self._last_seq, self._last_time = max(self._last_seq, checkpoint.seq), time.monotonic()
        try:
            self._put(checkpoint, document)
        except CheckpointRefused as exc:
            logger.error("audit checkpoint refused", extra={"seq": checkpoint.seq, "error": str(exc)})
            return
        except BlobStoreUnavailable as exc:
            logger.warning("audit checkpoint not written to the object store",
                           extra={"seq": checkpoint.seq, "error": str(exc)})
        logger.info("audit checkpoint", extra={"audit_checkpoint": json.loads(document)})

    def _put(self, checkpoint: Checkpoint, document: bytes) -> bool:
        """Store a checkpoint, never over another one: False if the very same head is stored there
        already (nothing written); ``CheckpointRefused`` if another is."""
        try:
            existing = self.store.get_record(checkpoint.key)
        except BlobNotFound:
            existing = None
        if existing is not None:
            try:
                stored = Checkpoint(**json.loads(existing)["checkpoint"])
            except (ValueError, KeyError, TypeError):
                stored = None
            if stored is not None and (stored.seq, stored.head, stored.mac_from, stored.count) == (
                    checkpoint.seq, checkpoint.head, checkpoint.mac_from, checkpoint.count):
                return False
            raise CheckpointRefused(f"{checkpoint.key} already holds another checkpoint: a checkpoint is never "
                                    "overwritten")
        self.store.put_record(checkpoint.key, document)
        return True

    def _guard(self, db: Session) -> tuple[str | None, bool]:
        """Before signing a new head: (why the trail no longer matches its last checkpoint, or None;
        whether any checkpoint exists). A store out of reach does not stop the signing (the log gets
        the checkpoint); a trail that does not match its last checkpoint does, logged at ERROR."""
        try:
            exists = bool(self.store.list_records(CHECKPOINTS))
        except BlobStoreUnavailable:
            return None, True
        if not exists:
            return None, False
        previous, trouble = self.latest_checkpoint(db)
        if trouble is None and previous is not None:
            mismatch = _mismatch(db, previous)
            trouble = mismatch[1] if mismatch else None
        if trouble is not None and "cannot be read from the object store" not in trouble:
            logger.error("audit trail does not match its last checkpoint", extra={"problem": trouble})
            return trouble, True
        return None, True

    def checkpoint(self, db: Session) -> Checkpoint | None:
        """Write a checkpoint of the current head now (``vault audit checkpoint``, the periodic
        task); None when the log is empty. Raises ``BlobStoreUnavailable`` if the store refuses it,
        ``CheckpointRefused`` if the trail no longer matches its last checkpoint (then nothing is
        signed) or another checkpoint is stored under the same name."""
        checkpoint = self._head(db)
        if checkpoint is None:
            return None
        trouble, exists = self._guard(db)
        if trouble is not None:
            raise CheckpointRefused(f"audit trail does not match its last checkpoint: {trouble}")
        document = self._sign(db, checkpoint, first=not exists)
        if not self._put(checkpoint, document):
            return checkpoint
        with self._lock:
            self._last_seq, self._last_time = max(self._last_seq, checkpoint.seq), time.monotonic()
        logger.info("audit checkpoint", extra={"audit_checkpoint": json.loads(document)})
        return checkpoint

    def checkpoint_if_moved(self, engine: Engine) -> Checkpoint | None:
        """The periodic task: a checkpoint if entries were written since this process's last one."""
        with Session(engine) as db:
            last = db.exec(select(func.max(AuditEntry.id))).one()
            with self._lock:
                if last is None or last <= self._last_seq:
                    return None
            return self.checkpoint(db)

    def run_checkpoints(self, engine: Engine, stop: threading.Event) -> None:
        """Loop of the web process (a daemon thread): a checkpoint every ``every_seconds`` if the
        head moved, until ``stop`` is set."""
        while not stop.wait(self.every_seconds):
            try:
                self.checkpoint_if_moved(engine)
            except Exception as exc:  # noqa: BLE001  (a background loop must survive any failure)
                logger.warning("audit checkpoint failed", extra={"error": type(exc).__name__})

    def _schedule(self, db: Session, entry: AuditEntry, anchor: AuditAnchor) -> None:
        """After ``record``: when a checkpoint is due, sign it now (inside the transaction, which
        sees the entry) and write it once the transaction commits; nothing if it rolls back."""
        assert entry.id is not None
        if not self._due(entry.id):
            return
        trouble, exists = self._guard(db)
        if trouble is not None:  # the entry lands (the action must), unsigned: verify says why
            with self._lock:
                self._last_seq, self._last_time = max(self._last_seq, entry.id), time.monotonic()
            return
        count = db.exec(select(func.count()).select_from(AuditEntry)).one()
        checkpoint = Checkpoint(seq=entry.id, head=entry.hash, mac_from=anchor.mac_from, count=count,
                                at=utcnow().isoformat(timespec="seconds"))
        db.info[_PENDING] = (self, checkpoint, self._sign(db, checkpoint, first=not exists))
        if not event.contains(db, "after_commit", _write_pending):
            event.listen(db, "after_commit", _write_pending)
            event.listen(db, "after_soft_rollback", _drop_pending)

    def latest_checkpoint(self, db: Session) -> tuple[Checkpoint | None, str | None]:
        """The newest checkpoint in the object store, its signature checked against the key the KEK
        unwraps (never the public key written beside it): (checkpoint, None), (None, None) when there
        is none, or (None, why it cannot be trusted)."""
        found, trouble = self.checkpoints(db, newest_only=True)
        return (found[-1] if found else None), trouble

    def checkpoints(self, db: Session, *, above: int = 0,
                    newest_only: bool = False) -> tuple[list[Checkpoint], str | None]:
        """The checkpoints in the object store from ``seq`` ``above`` on (and the newest), oldest
        first, each signature checked: (checkpoints, None) or ([], why they cannot be trusted)."""
        try:
            keys = self.store.list_records(CHECKPOINTS)
            deleted = self.store.deleted_records(CHECKPOINTS)
            rewritten = self.store.rewritten_records(CHECKPOINTS)
        except BlobStoreUnavailable as exc:
            return [], f"the checkpoints cannot be read from the object store ({exc})"
        if deleted:  # the service never deletes one: the versioned bucket keeps what was removed
            return [], f"checkpoint {deleted[-1]} was deleted from the object store (its old versions remain)"
        if rewritten:  # nor overwrites one
            return [], f"checkpoint {rewritten[-1]} was overwritten in the object store (its old versions remain)"
        numbered = sorted((int(m.group(1)), key) for key in keys
                          if (m := _CHECKPOINT_NAME.fullmatch(key.removeprefix(CHECKPOINTS))))
        if not numbered:
            return [], None
        wanted = numbered[-1:] if newest_only else [n for n in numbered[:-1] if n[0] >= above] + numbered[-1:]
        try:
            seed = self._checkpoint_seed(db, create=False)
        except LookupError:
            return [], "the checkpoint key is missing from the database (server secret audit-checkpoint)"
        except (DecryptionError, KeyProviderError):
            return [], "the checkpoint key does not open with the key provider"
        public = ed25519_public_key(seed)
        found: list[Checkpoint] = []
        for seq, key in wanted:
            try:
                raw = json.loads(self.store.get_record(key))
                checkpoint = Checkpoint(**raw["checkpoint"])
                signature = base64.urlsafe_b64decode(raw["signature"] + "==")
            except BlobStoreUnavailable as exc:
                return [], f"checkpoint {key} cannot be read from the object store ({exc})"
            except (BlobNotFound, ValueError, KeyError, TypeError):
                return [], f"checkpoint {key} is unreadable"
            if checkpoint.seq != seq or not ed25519_verify(public, signature, checkpoint.signed_bytes()):
                return [], f"checkpoint {key} is not signed by this service's checkpoint key"
            found.append(checkpoint)
        return found, None

    # ---- verification --------------------------------------------------------------------------

    def verify(self, db: Session, batch: int = 1000) -> Verification:
        """Walk the chain (every MAC recomputed, every link checked, in id order), then compare it
        with every signed checkpoint whose entry retention has not removed: each one's entry must
        still be there with the hash it signed, where the keyed part starts never moves once set,
        and the number of entries never goes down but by retention."""
        walked = self._walk(db, batch)
        if not walked.ok:
            return walked
        anchor = db.get(AuditAnchor, 1)
        first = db.exec(select(func.min(AuditEntry.id))).one()
        above = first if first is not None and anchor is not None and anchor.hash != GENESIS else 0
        found, trouble = self.checkpoints(db, above=above)
        if trouble is not None:
            return Verification(ok=False, entries=walked.entries, problem=trouble, code="checkpoint")
        if not found:
            return walked
        latest = found[-1]
        newest = db.exec(select(func.max(AuditEntry.id))).one() or 0
        keyed_from: int | None = None
        previous: Checkpoint | None = None
        for i, checkpoint in enumerate([latest, *found]):  # the newest first: a cut tail is named as such
            bad = _mismatch(db, checkpoint, anchor=anchor, first=first, newest=newest)
            if i == 0 and bad is None:
                continue
            if bad is None and keyed_from is not None and checkpoint.mac_from != keyed_from:
                bad = "keyed_start", (f"checkpoint {checkpoint.seq} (of {checkpoint.at}) says the keyed part starts "
                                      f"at entry {checkpoint.mac_from}, an older one at {keyed_from}")
            if bad is None and previous is not None and checkpoint.count < previous.count \
                    and not _retention_between(db, previous.seq, checkpoint.seq):
                bad = "rewritten", (f"checkpoint {checkpoint.seq} (of {checkpoint.at}) counts {checkpoint.count} "
                                    f"entries, the one before it {previous.count}: entries were removed")
            if bad is not None:
                code, problem = bad
                return Verification(ok=False, entries=walked.entries, first_bad_id=checkpoint.seq, problem=problem,
                                    checkpoint=latest, code=code, ends_at=newest, expected=checkpoint.seq)
            keyed_from = checkpoint.mac_from if keyed_from is None else keyed_from
            previous = checkpoint
        return Verification(ok=True, entries=walked.entries, checkpoint=latest)

    def _walk(self, db: Session, batch: int) -> Verification:
        anchor = db.get(AuditAnchor, 1)
        expected_prev = anchor.hash if anchor is not None else GENESIS
        mac_from = anchor.mac_from if anchor is not None else None
        key: bytes | None = None
        if mac_from is None and db.exec(select(AuditEntry.id).limit(1)).first() is not None:
            # The audit key is created in the transaction that starts the keyed part: if it exists,
            # entries were keyed, and a trail that says none is has been rechained.
            try:
                self.mac_key(db, create=False)
            except LookupError:
                pass  # a trail written before the keyed chain, not yet appended to
            except (DecryptionError, KeyProviderError):
                return Verification(ok=False, entries=0, code="key",
                                    problem="the audit key does not open with the key provider")
            else:
                return Verification(ok=False, entries=0, code="keyed_start",
                                    problem="the trail says none of its entries is keyed, yet the audit key "
                                            "exists: where the keyed part starts was removed")
        if mac_from is not None:
            try:
                key = self.mac_key(db, create=False)
            except LookupError:
                return Verification(ok=False, entries=0, first_bad_id=mac_from, code="key",
                                    problem="the audit key is missing from the database (server secret audit-mac)")
            except (DecryptionError, KeyProviderError):
                return Verification(ok=False, entries=0, first_bad_id=mac_from, code="key",
                                    problem="the audit key does not open with the key provider")
            if anchor is None or not hmac.compare_digest(anchor.mac_tag or "", _start_tag(key, mac_from)):
                return Verification(ok=False, entries=0, first_bad_id=mac_from, code="keyed_start",
                                    problem="where the keyed part of the trail starts was changed")
        count = 0
        last_id = 0
        while True:
            rows = db.exec(select(AuditEntry).where(col(AuditEntry.id) > last_id).order_by(col(AuditEntry.id))
                           .limit(batch)).all()
            if not rows:
                if anchor is not None and anchor.head_hash is not None and expected_prev != anchor.head_hash:
                    return Verification(ok=False, entries=count, first_bad_id=anchor.head_id, code="truncated",
                                        ends_at=last_id, expected=anchor.head_id,
                                        problem=f"the trail ends at entry {last_id} but its head record says "
                                                f"{anchor.head_id}: the newest entries were removed")
                return Verification(ok=True, entries=count)
            for row in rows:
                assert row.id is not None
                if row.prev_hash != expected_prev:
                    return Verification(ok=False, entries=count, first_bad_id=row.id, code="gap",
                                        problem="an entry before this one was removed, inserted or reordered")
                keyed = mac_from is not None and row.id >= mac_from
                fields = (row.prev_hash, row.at, row.actor, row.action, row.target, row.details)
                if not hmac.compare_digest(_mac(key, *fields) if keyed and key else _digest(*fields), row.hash):
                    return Verification(ok=False, entries=count, first_bad_id=row.id, code="edited",
                                        problem="this entry was edited")
                expected_prev = row.hash
                count += 1
                last_id = row.id


class CheckpointRefused(Exception):
    """A checkpoint the service will not sign or store (see ``AuditTrail.checkpoint``)."""


def _mismatch(db: Session, checkpoint: Checkpoint, *, anchor: AuditAnchor | None = None, first: int | None = None,
              newest: int | None = None) -> tuple[str, str] | None:
    """How the database no longer matches ``checkpoint``: (code, problem) or None."""
    if anchor is None:
        anchor = db.get(AuditAnchor, 1)
    if first is None:
        first = db.exec(select(func.min(AuditEntry.id))).one()
    if newest is None:
        newest = db.exec(select(func.max(AuditEntry.id))).one() or 0
    if newest < checkpoint.seq:
        return "truncated", (f"the trail ends at entry {newest} but checkpoint says {checkpoint.seq} "
                             f"(of {checkpoint.at}): the newest entries were removed")
    row = db.get(AuditEntry, checkpoint.seq)
    if row is not None and row.hash != checkpoint.head:
        return "rewritten", (f"entry {checkpoint.seq} is not the one its checkpoint (of {checkpoint.at}) signed: "
                             "the trail was rewritten")
    purged = anchor is not None and anchor.hash != GENESIS and first is not None and checkpoint.seq < first
    if row is None and not purged:
        return "gap", f"entry {checkpoint.seq}, signed by its checkpoint (of {checkpoint.at}), is missing"
    if checkpoint.mac_from is not None and (anchor is None or anchor.mac_from != checkpoint.mac_from):
        return "keyed_start", (f"the keyed part of the trail should start at entry {checkpoint.mac_from} "
                               f"(checkpoint of {checkpoint.at}); the database says "
                               f"{anchor.mac_from if anchor else None}")
    return None


def _retention_between(db: Session, after: int, upto: int) -> bool:
    return db.exec(select(func.count()).select_from(AuditEntry).where(
        col(AuditEntry.id) > after, col(AuditEntry.id) <= upto,
        col(AuditEntry.action) == "audit.retention")).one() > 0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _write_pending(db: Session) -> None:
    pending = db.info.pop(_PENDING, None)
    if pending is not None:
        trail, checkpoint, document = pending
        try:
            trail._write(checkpoint, document)
        except Exception as exc:  # noqa: BLE001  (the action committed: its caller must not see a failure)
            logger.warning("audit checkpoint not written", extra={"seq": checkpoint.seq, "error": type(exc).__name__})


def _drop_pending(db: Session, _previous: object) -> None:
    db.info.pop(_PENDING, None)


_TRAILS: weakref.WeakKeyDictionary[Engine, AuditTrail] = weakref.WeakKeyDictionary()


def attach(engine: Engine, trail: AuditTrail) -> None:
    """Entries written through ``engine`` are keyed and checkpointed by ``trail``."""
    _TRAILS[engine] = trail


def trail_of(db: Session) -> AuditTrail:
    bind = db.get_bind()
    engine = bind.engine if isinstance(bind, Connection) else bind
    trail = _TRAILS.get(engine)
    if trail is None:
        raise RuntimeError("no audit trail for this database engine (vault.services.build_services attaches it)")
    return trail


def record(db: Session, *, actor: str, action: str, target: str = "", details: dict[str, Any] | None = None) -> AuditEntry:
    """Append an entry in the caller's transaction (it lands if and only if the action does)."""
    details = dict(details or {})
    if bad := FORBIDDEN_DETAILS & {k.lower() for k in details}:
        raise ValueError(f"audit details must not hold {sorted(bad)}")
    trail = trail_of(db)
    if db.get_bind().dialect.name == "postgresql":
        # Plain SQL goes through the session's connection (sqlmodel's exec takes statements it types).
        db.connection().execute(text("SELECT pg_advisory_xact_lock(:id)").bindparams(id=_LOCK_ID))
    last = db.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(1)).first()
    anchor = db.get(AuditAnchor, 1)
    key, starts_keyed = trail.record_key(db, anchor)  # from memory once opened: no key provider call per entry
    prev_hash = last.hash if last else (anchor.hash if anchor is not None else GENESIS)
    at = utcnow()
    entry = AuditEntry(at=at, actor=actor, action=action, target=target, details=details, prev_hash=prev_hash,
                       hash=_mac(key, prev_hash, at, actor, action, target, details))
    db.add(entry)
    db.flush()
    assert entry.id is not None
    if anchor is None:
        anchor = AuditAnchor(id=1, hash=GENESIS)
        db.add(anchor)
    if anchor.mac_from is None and starts_keyed:  # the first keyed entry: the chain before it stays plain
        anchor.mac_from, anchor.mac_tag = entry.id, _start_tag(key, entry.id)
    anchor.head_id, anchor.head_hash = entry.id, entry.hash  # same transaction: lands with the entry
    db.flush()
    trail._schedule(db, entry, anchor)
    return entry


def verify(db: Session, batch: int = 1000) -> Verification:
    """The chain and its latest checkpoint (see ``AuditTrail.verify``)."""
    return trail_of(db).verify(db, batch)


def purge_older_than(db: Session, age: timedelta) -> int:
    """Rolling retention: drop entries older than ``age``; the chain restarts from an anchor (the
    last removed hash), itself recorded, so a removal outside retention still shows."""
    horizon = utcnow() - age
    last_old = db.exec(select(AuditEntry).where(col(AuditEntry.at) < horizon).order_by(col(AuditEntry.id).desc())
                       .limit(1)).first()
    if last_old is None:
        return 0
    assert last_old.id is not None  # a stored entry
    removed = db.exec(delete(AuditEntry).where(col(AuditEntry.id) <= last_old.id)).rowcount
    anchor = db.get(AuditAnchor, 1) or AuditAnchor(id=1, hash=GENESIS)
    anchor.hash, anchor.moved_at = last_old.hash, utcnow()
    db.add(anchor)
    db.flush()
    record(db, actor="system", action="audit.retention", details={"removed": removed, "anchor": last_old.hash})
    return removed
