"""The audit log: append-only and tamper-evident.

Each entry's ``hash`` is SHA-256 over the previous entry's hash and the entry's own fields
(canonical JSON), so an edited, deleted, inserted or reordered entry breaks the chain from there
on; the newest entry's id and hash are kept apart (``audit_anchor``), so removing the newest
entries shows too; ``vault audit verify`` walks it. Writers are serialised (a PostgreSQL advisory lock; SQLite
has a single writer) and ``prev_hash`` is unique, so the chain can never fork.

It records who did what to which data — never document contents, passwords or tokens; people are
named by a keyed hash of their internal id (see ``subject_of``), which survives their erasure
without naming them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, text
from sqlmodel import Session, col, select

from vault.db import utcnow
from vault.gdpr.models import AuditAnchor, AuditEntry

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
_LOCK_ID = 0x7661756C74  # "vault": the advisory lock serialising audit writers on PostgreSQL
LOGIN_ACTION = "oidc.login"  # a code issued to an app: one login to it
FORBIDDEN_DETAILS = {"password", "token", "secret", "content", "otp", "code", "cookie"}


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


def _digest(prev_hash: str, at: datetime, actor: str, action: str, target: str, details: dict[str, Any]) -> str:
    canonical = json.dumps([prev_hash, at.isoformat(timespec="microseconds"), actor, action, target, details],
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def record(db: Session, *, actor: str, action: str, target: str = "", details: dict[str, Any] | None = None) -> AuditEntry:
    """Append an entry in the caller's transaction (it lands if and only if the action does)."""
    details = dict(details or {})
    if bad := FORBIDDEN_DETAILS & {k.lower() for k in details}:
        raise ValueError(f"audit details must not hold {sorted(bad)}")
    if db.get_bind().dialect.name == "postgresql":
        # Plain SQL goes through the session's connection (sqlmodel's exec takes statements it types).
        db.connection().execute(text("SELECT pg_advisory_xact_lock(:id)").bindparams(id=_LOCK_ID))
    last = db.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(1)).first()
    prev_hash = last.hash if last else _anchor(db)
    at = utcnow()
    entry = AuditEntry(at=at, actor=actor, action=action, target=target, details=details, prev_hash=prev_hash,
                       hash=_digest(prev_hash, at, actor, action, target, details))
    db.add(entry)
    db.flush()
    anchor = db.get(AuditAnchor, 1)
    if anchor is None:
        anchor = AuditAnchor(id=1, hash=GENESIS)
        db.add(anchor)
    anchor.head_id, anchor.head_hash = entry.id, entry.hash  # same transaction: lands with the entry
    db.flush()
    return entry


def _anchor(db: Session) -> str:
    """Where the chain starts: GENESIS, or the hash of the last entry removed by retention."""
    row = db.get(AuditAnchor, 1)
    return row.hash if row is not None else GENESIS


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    first_bad_id: int | None = None
    problem: str | None = None


def verify(db: Session, batch: int = 1000) -> Verification:
    """Walk the chain: every hash recomputed, every link checked, in id order."""
    anchor = db.get(AuditAnchor, 1)
    expected_prev = anchor.hash if anchor is not None else GENESIS
    count = 0
    last_id = 0
    while True:
        rows = db.exec(select(AuditEntry).where(col(AuditEntry.id) > last_id).order_by(col(AuditEntry.id))
                       .limit(batch)).all()
        if not rows:
            if anchor is not None and anchor.head_hash is not None and expected_prev != anchor.head_hash:
                return Verification(ok=False, entries=count, first_bad_id=anchor.head_id,
                                    problem="the newest entries were removed (the chain ends before its recorded head)")
            return Verification(ok=True, entries=count)
        for row in rows:
            if row.prev_hash != expected_prev:
                return Verification(ok=False, entries=count, first_bad_id=row.id,
                                    problem="an entry before this one was removed, inserted or reordered")
            if _digest(row.prev_hash, row.at, row.actor, row.action, row.target, row.details) != row.hash:
                return Verification(ok=False, entries=count, first_bad_id=row.id, problem="this entry was edited")
            expected_prev = row.hash
            count += 1
            last_id = row.id or last_id


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
