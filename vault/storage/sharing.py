"""Share links: a citizen gives someone without an account (a landlord, another administration's
counter) chosen documents, behind a link and an access code, until the link expires.

- The link carries a 192-bit random secret; the row keeps its SHA-256 only.
- The access code (8 characters from an alphabet without look-alikes, read aloud easily) is shown
  once and kept as an argon2id hash. Five wrong codes lock the link for good.
- A wrong code, or any code on a link that does not exist, gets the same answer (and the same
  argon2 work): a link cannot be told from a non-link until it is locked.
- Once the code is right, the browser holds a pass (a cookie, 30 minutes at most, bound to the link
  by an HMAC keyed with the code's hash: a server-side secret the link's holder never sees).
- Every opening and download goes to the citizen's access log. A link never opens the account.

No HTTP here; ``vault.storage.share_pages`` serves it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, or_
from sqlmodel import Session, col, select

from vault.alerts.service import AlertService
from vault.auth.passwords import Hasher
from vault.auth.service import AccountService
from vault.crypto.tokens import token_hash
from vault.db import utcnow
from vault.storage.exceptions import InvalidShareInput, ShareLinkGone, ShareLinkNotFound, WrongShareCode
from vault.storage.models import AccessLogEntry, Document, ShareLink, ShareLinkDocument
from vault.storage.service import Actor
from vault.translation import N_

logger = logging.getLogger(__name__)

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: nothing to confuse when read aloud
CODE_LENGTH = 8  # 31**8 ≈ 2**39.6, with 5 tries per link
MAX_WRONG_CODES = 5
LIFETIMES = {1: N_("1 heure"), 24: N_("1 jour"), 72: N_("3 jours"), 168: N_("7 jours"), 336: N_("14 jours"),
             720: N_("30 jours")}  # hours
DEFAULT_LIFETIME_HOURS = 168
MIN_LIFETIME, MAX_LIFETIME = timedelta(hours=1), timedelta(days=30)
MAX_DOCUMENTS = 50  # the error messages say these numbers
MAX_LABEL = 100
PASS_LIFETIME = timedelta(minutes=30)
KEPT_AFTER_END = timedelta(days=30)  # an ended link still answers "expired" this long, then retention removes it


def format_code(code: str) -> str:
    """``ABCD-EFGH``: two groups of four, as shown and read aloud."""
    return f"{code[:4]}-{code[4:]}"


def normalize_code(entered: str) -> str | None:
    """The code as typed (lower case, spaces, dashes, full-width characters) in canonical form; None
    when it cannot be a code at all (wrong length, a character outside the alphabet)."""
    text = unicodedata.normalize("NFKC", entered).upper()
    text = "".join(ch for ch in text if ch not in " -.\t")
    if len(text) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in text):
        return None
    return text


@dataclass(frozen=True)
class NewShareLink:
    link: ShareLink
    secret: str  # goes in the URL: shown once, never stored
    code: str  # shown once, never stored


@dataclass(frozen=True)
class ShareLinkView:
    """A link as the citizen's list and the export show it."""

    link: ShareLink
    state: str  # "active" | "expired" | "revoked" | "locked" | "emptied"
    documents: list[Document]


@dataclass(frozen=True)
class Opening:
    link: ShareLink
    first: bool  # the first opening ever (the citizen may be told)
    pass_value: str  # the pass cookie's value
    pass_max_age: int  # seconds


class ShareService:
    def __init__(self, *, hasher: Hasher, alerts: AlertService, accounts: AccountService) -> None:
        self.hasher = hasher
        self.alerts = alerts
        self.accounts = accounts  # the limit on wrong codes per client address (the login throttle's counters)

    # ---- the citizen ---------------------------------------------------------------------------

    def create(self, db: Session, *, citizen_id: uuid.UUID, document_ids: list[str], hours: str,
               label: str | None) -> NewShareLink:
        """A new link to the citizen's ``document_ids`` for ``hours`` hours (1 to 720)."""
        errors: dict[str, str] = {}
        wanted: set[uuid.UUID] = set()
        for raw in document_ids:
            try:
                wanted.add(uuid.UUID(raw))
            except ValueError:
                errors["document"] = N_("Un des documents choisis n'existe pas.")
        documents = list(db.exec(select(Document).where(Document.owner_id == citizen_id,
                                                        col(Document.id).in_(wanted)))) if wanted else []
        if not wanted and "document" not in errors:
            errors["document"] = N_("Choisissez au moins un document à partager.")
        elif len(documents) != len(wanted):
            errors["document"] = N_("Un des documents choisis n'existe pas.")  # another citizen's: as unknown
        elif len(documents) > MAX_DOCUMENTS:
            errors["document"] = N_("Un lien peut partager au plus 50 documents.")
        lifetime: timedelta | None = None
        try:
            lifetime = timedelta(hours=int((hours or str(DEFAULT_LIFETIME_HOURS)).strip()))
        except ValueError:
            pass
        if lifetime is None or not MIN_LIFETIME <= lifetime <= MAX_LIFETIME:
            errors["hours"] = N_("Choisissez une durée entre 1 heure et 30 jours.")
        note = " ".join("".join(ch for ch in (label or "") if unicodedata.category(ch)[0] != "C").split())
        if len(note) > MAX_LABEL:
            errors["label"] = N_("La note ne doit pas dépasser 100 caractères.")
        if errors:
            raise InvalidShareInput(errors)
        assert lifetime is not None
        secret = secrets.token_urlsafe(24)  # 192 bits
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        now = utcnow()
        link = ShareLink(citizen_id=citizen_id, secret_hash=token_hash(secret), code_hash=self.hasher.hash(code),
                         label=note or None, created_at=now, expires_at=now + lifetime)
        db.add(link)
        db.flush()
        for document in documents:
            db.add(ShareLinkDocument(link_id=link.id, document_id=document.id))
        logger.info("share link created", extra={"link_id": str(link.id), "documents": len(documents)})
        return NewShareLink(link=link, secret=secret, code=code)

    def links_of(self, db: Session, citizen_id: uuid.UUID) -> list[ShareLinkView]:
        """The citizen's links, newest first, with their state and the documents they still give."""
        links = list(db.exec(select(ShareLink).where(ShareLink.citizen_id == citizen_id)
                             .order_by(col(ShareLink.created_at).desc())))
        shared = self._documents(db, [link.id for link in links])
        now = utcnow()
        return [ShareLinkView(link=link, state=self.state(link, now, bool(shared.get(link.id))),
                              documents=shared.get(link.id, [])) for link in links]

    def revoke(self, db: Session, *, citizen_id: uuid.UUID, link_id: uuid.UUID) -> ShareLink:
        link = db.get(ShareLink, link_id)
        if link is None or link.citizen_id != citizen_id:
            raise ShareLinkNotFound()
        if link.revoked_at is None:
            link.revoked_at = utcnow()
            logger.info("share link revoked", extra={"link_id": str(link.id)})
        return link

    # ---- the person holding the link -------------------------------------------------------------

    @staticmethod
    def state(link: ShareLink, now: datetime, has_documents: bool = True) -> str:
        if link.revoked_at is not None:
            return "revoked"
        if link.locked_at is not None:
            return "locked"
        if not has_documents:
            return "emptied"  # every document it gave was deleted
        if link.expires_at <= now:
            return "expired"
        return "active"

    def find(self, db: Session, secret: str) -> ShareLink | None:
        """The link a secret opens; None for no link."""
        if not secret or len(secret) > 64:
            return None
        return db.exec(select(ShareLink).where(ShareLink.secret_hash == token_hash(secret))).first()

    def usable(self, db: Session, secret: str) -> ShareLink | None:
        """The link when it may still be opened; None when there is no such link; ShareLinkGone
        when it expired, was revoked, locked or emptied."""
        link = self.find(db, secret)
        if link is None:
            return None
        state = self.state(link, utcnow(), bool(self._documents(db, [link.id]).get(link.id)))
        if state != "active":
            raise ShareLinkGone(state)
        return link

    def open(self, db: Session, *, secret: str, entered: str, address: str) -> Opening:
        """Check the access code. A malformed code is refused without counting a try; a wrong code
        counts (the fifth locks the link), and answers as if the link did not exist. Wrong codes and
        unknown links count for the client ``address`` too, over every link: past
        ``VAULT_SHARE_CODE_FREE_FAILURES_PER_ADDRESS`` the same answer, and no code is checked while
        the growing lock lasts. The failures are committed even though this raises."""
        code = normalize_code(entered)
        if code is None:
            raise WrongShareCode(malformed=True)
        if self.accounts.address_locked(db=db, action="share", address=address):
            raise WrongShareCode()
        link = self.usable(db, secret)
        if link is None:
            self.hasher.verify(None, code)  # the same work as for a real link
            self._count_failure(db, address)
            raise WrongShareCode()
        # One check at a time per link: concurrent guesses cannot pass the limit.
        link = db.exec(select(ShareLink).where(ShareLink.id == link.id).with_for_update()
                       .execution_options(populate_existing=True)).one()
        if link.locked_at is not None:
            raise ShareLinkGone("locked")
        if not self.hasher.verify(link.code_hash, code):
            self._count_failure(db, address)
            link.failed_codes += 1
            if link.failed_codes >= MAX_WRONG_CODES:
                link.locked_at = utcnow()
                logger.warning("share link locked after wrong codes", extra={"link_id": str(link.id)})
                db.commit()
                raise ShareLinkGone("locked")
            db.commit()
            raise WrongShareCode()
        now = utcnow()
        first = link.first_opened_at is None
        if first:
            link.first_opened_at = now
        link.openings += 1
        self.log(db, link, "open", None)
        if first:  # the citizen is told (unless they turned that alert off)
            shared = self._documents(db, [link.id]).get(link.id, [])
            self.alerts.share_link_opened(db, citizen_id=link.citizen_id, label=link.label, opened_at=now,
                                          documents=[d.title for d in shared])
        until = min(now + PASS_LIFETIME, link.expires_at)
        return Opening(link=link, first=first, pass_value=self._pass(link, until),
                       pass_max_age=max(1, int((until - now).total_seconds())))

    def _count_failure(self, db: Session, address: str) -> None:
        self.accounts.count_address_failure(db=db, action="share", address=address,
                                            free=self.accounts.settings.share_code_free_failures_per_address)

    def admitted(self, db: Session, *, secret: str, pass_value: str | None) -> tuple[ShareLink, list[Document]] | None:
        """The link and its documents when the browser's pass opens it (None: ask for the code).
        ShareLinkGone when the link ended, pass or not."""
        link = self.usable(db, secret)
        if link is None or not pass_value:
            return None
        try:
            link_id, until, _ = pass_value.split(".", 2)
            expires = datetime.fromtimestamp(int(until), tz=UTC)
        except (ValueError, OverflowError, OSError):
            return None
        if link_id != link.id.hex or expires <= utcnow() or not hmac.compare_digest(pass_value, self._pass(link, expires)):
            return None
        return link, self._documents(db, [link.id]).get(link.id, [])

    def actor(self, link: ShareLink, documents: list[Document]) -> Actor:
        """Who reads through the link, for the document service and the access log."""
        return Actor(kind="link", citizen_id=link.citizen_id, actor_id=str(link.id), name=link.label or "",
                     granted=frozenset(d.id for d in documents))

    @staticmethod
    def _pass(link: ShareLink, until: datetime) -> str:
        stamp = str(int(until.timestamp()))
        mac = hmac.new(link.code_hash.encode(), f"share-pass|{link.id.hex}|{stamp}".encode(), hashlib.sha256).hexdigest()
        return f"{link.id.hex}.{stamp}.{mac}"

    def log(self, db: Session, link: ShareLink, action: str, document: Document | None) -> None:
        db.add(AccessLogEntry(citizen_id=link.citizen_id, actor_kind="link", actor_id=str(link.id),
                              actor_name=link.label or "", action=action,
                              document_id=document.id if document else None,
                              document_title=document.title if document else None))

    # ---- GDPR and retention -----------------------------------------------------------------------

    def forget(self, db: Session, citizen_id: uuid.UUID) -> int:
        """Erasure: the citizen's links are deleted (they open nothing from here); how many."""
        return db.exec(delete(ShareLink).where(col(ShareLink.citizen_id) == citizen_id)).rowcount

    def purge_ended(self, db: Session, now: datetime) -> int:
        """Links that ended (expired, revoked, locked, or giving no document any more) more than
        30 days ago; how many were removed."""
        horizon = now - KEPT_AFTER_END
        emptied = ~select(ShareLinkDocument.link_id).where(ShareLinkDocument.link_id == ShareLink.id).exists()
        ended = or_(col(ShareLink.expires_at) < horizon, col(ShareLink.revoked_at) < horizon,
                    col(ShareLink.locked_at) < horizon, (col(ShareLink.created_at) < horizon) & emptied)
        return db.exec(delete(ShareLink).where(ended)).rowcount

    def _documents(self, db: Session, link_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Document]]:
        if not link_ids:
            return {}
        rows = db.exec(select(ShareLinkDocument.link_id, Document).join(
            Document, col(Document.id) == ShareLinkDocument.document_id)
            .where(col(ShareLinkDocument.link_id).in_(link_ids), col(Document.owner_id).is_not(None))
            .order_by(col(Document.created_at)))
        shared: dict[uuid.UUID, list[Document]] = {}
        for link_id, document in rows:
            shared.setdefault(link_id, []).append(document)
        return shared

    def count_active(self, db: Session, citizen_id: uuid.UUID) -> int:
        return int(db.exec(select(func.count()).select_from(ShareLink).where(
            ShareLink.citizen_id == citizen_id, col(ShareLink.revoked_at).is_(None), col(ShareLink.locked_at).is_(None),
            col(ShareLink.expires_at) > utcnow())).one())
