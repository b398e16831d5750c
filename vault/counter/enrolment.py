"""Accounts opened at the counter, their activation letters and the citizen's activation; and, for a
person who lost their second factor, two-factor login turned off at the counter (``turn_off_totp``).

An agent checks an identity document in person and opens the account (``open_account``); the
person then chooses a password with the mailed link (an account with an address) or with the
one-time code of a printed letter (``print_letter``, then ``activate`` at ``/activate``). The code
is shown on the letter only: stored as an argon2id hash, never logged, never kept in clear.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlmodel import Session, col, select

from vault.auth.exceptions import InvalidInput, TooManyLoginAttempts
from vault.auth.identity import CODE_ALPHABET, compact_code, format_code, normalize_email, parse_birthdate
from vault.auth.models import Citizen
from vault.auth.service import AccountService
from vault.counter.models import IDENTITY_DOCUMENTS, ActivationCode, CounterEnrolment
from vault.db import utcnow
from vault.errors import VaultError
from vault.gdpr import audit
from vault.gdpr.models import AuditEntry, StaffAccount
from vault.gdpr.service import GdprService
from vault.translation import N_

logger = logging.getLogger(__name__)

ACTIVATION_CODE_LENGTH = 12
ACTIVATION_CODE_DAYS = 30
# The first letter, printed by the agent who just opened the account, rests on the opening's check.
FIRST_LETTER_WINDOW = timedelta(minutes=30)
LETTERS_PER_DAY = 3
TOTP_OFF_PER_DAY = 3  # two-factor login turned off at the counter, per account and 24 hours
TOTP_OFF_ACTION = "counter.totp_disabled"
BAD_CODE = N_("Identifiant ou code incorrect, ou code expiré.")


class SamePerson(VaultError):
    """The counter's form names a person who may already have an account: the agent looks first."""

    code, status = "same_person", 409

    def __init__(self, matches: list[Citizen]) -> None:
        super().__init__("same person")
        self.matches = matches


class BadActivationCode(VaultError):
    """Any refused activation (unknown identifier, wrong, expired, voided or used code): one answer."""

    code, status = "bad_code", 400
    message = BAD_CODE


class NotEnrollingService(VaultError):
    """An agent of another service than the one that opened the account: 403, audited."""

    code, status = "forbidden", 403
    title = N_("Réservé au guichet qui a ouvert le compte")
    message = N_("Seul le guichet qui a ouvert ce compte peut imprimer sa lettre d'activation ou enregistrer un "
                 "mandat signé. Orientez la personne vers ce guichet.")
    link = ("/agent/", N_("Retour au guichet"))


class TooManyLetters(VaultError):
    code, status = "too_many_letters", 429
    title = N_("Trop de lettres imprimées")
    message = N_("Trois lettres d'activation ont déjà été imprimées pour cette personne depuis 24 heures. "
                 "Vous pourrez en imprimer une nouvelle demain.")
    link = ("/agent/", N_("Retour au guichet"))


class NoTotp(VaultError):
    code, status = "no_totp", 409
    title = N_("Pas de double authentification")
    message = N_("Ce compte n'a pas de double authentification : il n'y a rien à désactiver. La personne peut "
                 "choisir un nouveau mot de passe avec « Mot de passe oublié ».")
    link = ("/agent/", N_("Retour au guichet"))


class TooManyTotpOff(VaultError):
    code, status = "too_many_totp_off", 429
    title = N_("Trop de désactivations")
    message = N_("La double authentification de ce compte a déjà été désactivée trois fois au guichet depuis "
                 "24 heures. Vous pourrez le refaire demain ; en attendant, prévenez votre responsable.")
    link = ("/agent/", N_("Retour au guichet"))


def identity_check(form: dict[str, str], *, unchecked: str) -> str:
    """The identity document the agent checked just now, the person present (a key of
    IDENTITY_DOCUMENTS, and the ticked box whose refusal says ``unchecked``); InvalidInput otherwise."""
    errors: dict[str, str] = {}
    kind = form.get("document_kind", "")
    if kind not in IDENTITY_DOCUMENTS:
        errors["document_kind"] = N_("Choisissez la pièce d'identité que vous avez vérifiée.")
    if form.get("checked") != "yes":
        errors["checked"] = unchecked
    if errors:
        raise InvalidInput(errors)
    return kind


LETTER_UNCHECKED = N_("Cochez cette case seulement après avoir vérifié la pièce, la personne présente.")
TOTP_NOT_ASKED = N_("Cochez cette case seulement si la personne vous demande elle-même de désactiver la double "
                    "authentification de son compte.")
SIGNED_UNCHECKED = N_("Cochez cette case seulement si la personne est présente, a montré sa pièce et a signé "
                      "devant vous.")


@dataclass(frozen=True)
class Letter:
    """One printing of an activation letter: what it shows. ``code`` exists only in this object,
    for the page and the PDF of this printing."""

    citizen: Citizen
    code: str  # formatted, ``ABCD-EFGH-JKMN``
    expires_on: date


class EnrolmentService:
    """Opening accounts at the counter and activating them. Built once (``vault.services``)."""

    def __init__(self, *, accounts: AccountService, gdpr: GdprService) -> None:
        self.accounts = accounts
        self.gdpr = gdpr

    def _target(self, db: Session, citizen_id: uuid.UUID) -> str:
        return f"subject:{self.gdpr.subject(db, citizen_id)}"

    # ---- opening ------------------------------------------------------------------------------------

    def same_person(self, db: Session, form: dict[str, str]) -> list[Citizen]:
        """Accounts with the same birth name, first names and birthdate as the form (letter case and
        accents as typed aside), to show before opening a second one."""
        try:
            birthdate = parse_birthdate(form.get("birthdate", ""), today=self.accounts.settings.today())
        except ValueError:
            return []
        given, family = (" ".join((form.get(k) or "").split()).casefold() for k in ("given_name", "family_name"))
        rows = db.exec(select(Citizen).where(Citizen.birthdate == birthdate)).all()
        return [c for c in rows if c.family_name.casefold() == family and c.given_name.casefold() == given]

    def open_account(self, db: Session, *, agent: StaffAccount, form: dict[str, str]) -> Citizen:
        """Open the account of a person present at the counter: the identity document the agent
        checked (required, and the agent's word that it was checked in person), the identity, an
        optional address. ``SamePerson`` when an account with the same names and birthdate exists,
        unless the form says it is someone else (``other_person``). InvalidInput for every problem."""
        errors: dict[str, str] = {}
        kind = form.get("document_kind", "")
        try:
            identity_check(form, unchecked=LETTER_UNCHECKED)
        except InvalidInput as exc:
            errors.update(exc.fields)
        errors.update(self.accounts.counter_form_problems(db=db, form=form))
        if errors:
            raise InvalidInput(errors)
        if form.get("other_person") != "yes" and (matches := self.same_person(db, form)):
            raise SamePerson(matches)
        citizen = self.accounts.open_at_counter(db=db, form=form)
        db.add(CounterEnrolment(citizen_id=citizen.id, document_kind=kind, checked_by=agent.id,
                                service=agent.service or ""))
        audit.record(db, actor=f"staff:{agent.id}", action="counter.account_opened",
                     target=self._target(db, citizen.id),
                     details={"document_kind": kind, "service": agent.service or "", "with_email": bool(citizen.email)})
        return citizen

    # ---- the activation letter ------------------------------------------------------------------------

    def enrolling_service(self, db: Session, *, agent: StaffAccount, citizen: Citizen, what: str) -> CounterEnrolment:
        """The account's opening, when the agent's service opened it; else ``NotEnrollingService``,
        audited (``what`` the agent tried) and committed before it is raised."""
        enrolment = db.get(CounterEnrolment, citizen.id)
        if enrolment is not None and agent.role == "agent" and agent.service and enrolment.service == agent.service:
            return enrolment
        audit.record(db, actor=f"staff:{agent.id}", action="counter.refused", target=self._target(db, citizen.id),
                     details={"reason": "not_enrolling_service", "what": what, "service": agent.service or ""})
        db.commit()  # the refusal stays in the chain though the request ends in an error
        logger.info("counter action refused", extra={"staff_id": str(agent.id), "reason": "not_enrolling_service"})
        raise NotEnrollingService()

    def first_letter_covered(self, db: Session, *, agent: StaffAccount, citizen: Citizen) -> bool:
        """The first letter of an account the same agent opened less than 30 minutes ago: the
        identity check of the opening covers it (the same visit)."""
        enrolment = db.get(CounterEnrolment, citizen.id)
        return (enrolment is not None and enrolment.checked_by == agent.id
                and utcnow() - enrolment.checked_at < FIRST_LETTER_WINDOW
                and db.exec(select(ActivationCode.id).where(ActivationCode.citizen_id == citizen.id)).first() is None)

    def print_letter(self, db: Session, *, agent: StaffAccount, citizen: Citizen,
                     form: dict[str, str] | None = None) -> Letter:
        """A new one-time code for the citizen's activation letter (valid 30 days); the codes of
        earlier printings are voided. Only for an account without a password yet, by an agent of
        the service that opened it (``NotEnrollingService``), at most ``LETTERS_PER_DAY`` a day
        (``TooManyLetters``), the person present with an identity document checked now (``form``:
        ``document_kind``, ``checked``; InvalidInput otherwise) — except the first letter right
        after the opening (``first_letter_covered``). Audited with the document's kind."""
        if citizen.password_hash is not None:
            raise InvalidInput({"letter": N_("Ce compte a déjà un mot de passe : il n'a plus besoin de lettre "
                                             "d'activation.")})
        enrolment = self.enrolling_service(db, agent=agent, citizen=citizen, what="letter")
        now = utcnow()
        printed = db.exec(select(ActivationCode.id).where(ActivationCode.citizen_id == citizen.id,
                                                          col(ActivationCode.created_at) > now - timedelta(days=1)))
        if len(printed.all()) >= LETTERS_PER_DAY:
            raise TooManyLetters()
        form = form or {}
        if not form.get("document_kind") and self.first_letter_covered(db, agent=agent, citizen=citizen):
            kind, check = enrolment.document_kind, "at_opening"
        else:
            kind, check = identity_check(form, unchecked=LETTER_UNCHECKED), "now"
        db.exec(update(ActivationCode).where(col(ActivationCode.citizen_id) == citizen.id,
                                             col(ActivationCode.used_at).is_(None),
                                             col(ActivationCode.voided_at).is_(None)).values(voided_at=now))
        raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(ACTIVATION_CODE_LENGTH))
        expires_at = now + timedelta(days=ACTIVATION_CODE_DAYS)
        db.add(ActivationCode(citizen_id=citizen.id, code_hash=self.accounts.hasher.hash(raw), created_by=agent.id,
                              created_at=now, expires_at=expires_at))
        audit.record(db, actor=f"staff:{agent.id}", action="counter.letter_printed",
                     target=self._target(db, citizen.id),
                     details={"service": agent.service or "", "document_kind": kind, "identity_check": check})
        return Letter(citizen=citizen, code=format_code(raw), expires_on=self._local_date(expires_at))

    def reprint(self, db: Session, *, agent: StaffAccount, citizen: Citizen, code: str) -> Letter:
        """The PDF of the printing that made ``code``, when that code is still the live one, for the
        service that opened the account. Throttled per citizen like a password (a wrong code counts,
        ``TooManyLoginAttempts`` while locked); every answer audited. A refusal
        (``BadActivationCode``) is recorded in the caller's unit of work, which must commit."""
        self.enrolling_service(db, agent=agent, citizen=citizen, what="letter_pdf")
        key = self.accounts._account_key(db, f"letter:{citizen.id}")
        target = self._target(db, citizen.id)
        if retry_after := self.accounts._locked_for(db=db, keys=[key]):
            audit.record(db, actor=f"staff:{agent.id}", action="counter.letter_pdf_refused", target=target,
                         details={"service": agent.service or "", "reason": "locked"})
            raise TooManyLoginAttempts(retry_after)
        live = self._live_code(db, citizen.id)
        if not self.accounts.hasher.verify(live.code_hash if live else None, compact_code(code)) or live is None:
            self.accounts._record_failure(db=db, key=key, free=self.accounts.settings.login_free_failures_per_account)
            audit.record(db, actor=f"staff:{agent.id}", action="counter.letter_pdf_refused", target=target,
                         details={"service": agent.service or "", "reason": "bad_code"})
            raise BadActivationCode()
        audit.record(db, actor=f"staff:{agent.id}", action="counter.letter_pdf", target=target,
                     details={"service": agent.service or ""})
        return Letter(citizen=citizen, code=format_code(compact_code(code)), expires_on=self._local_date(live.expires_at))

    def live_letter(self, db: Session, citizen_id: uuid.UUID) -> ActivationCode | None:
        """The code of the letter printed last, while it can still be used; None otherwise."""
        return self._live_code(db, citizen_id)

    @staticmethod
    def _live_code(db: Session, citizen_id: uuid.UUID) -> ActivationCode | None:
        return db.exec(select(ActivationCode).where(
            ActivationCode.citizen_id == citizen_id, col(ActivationCode.used_at).is_(None),
            col(ActivationCode.voided_at).is_(None), col(ActivationCode.expires_at) > utcnow(),
        ).order_by(col(ActivationCode.created_at).desc())).first()

    def _local_date(self, at: datetime) -> date:
        return at.astimezone(ZoneInfo(self.accounts.settings.timezone)).date()

    # ---- two-factor login turned off, the person present ----------------------------------------------

    def totp_off_today(self, db: Session, citizen_id: uuid.UUID) -> int:
        """How many times the counter turned off the account's two-factor login in the last 24 hours
        (the audit chain is the record)."""
        return len(db.exec(select(AuditEntry.id).where(
            AuditEntry.action == TOTP_OFF_ACTION, AuditEntry.target == self._target(db, citizen_id),
            col(AuditEntry.at) > utcnow() - timedelta(days=1))).all())

    def turn_off_totp(self, db: Session, *, agent: StaffAccount, citizen: Citizen, form: dict[str, str]) -> None:
        """For a person present who has neither their application nor their recovery codes: any
        counter agent, after checking an identity document now (``document_kind``, ``checked``) and
        with the person's own request (``asked``; InvalidInput otherwise, nothing changed), turns
        their two-factor login off through the account service (recovery codes gone, every session
        and the apps' grants ended, a notice by mail). ``NoTotp`` for an account without it; at most
        ``TOTP_OFF_PER_DAY`` a day (``TooManyTotpOff``), counted under a lock on the citizen's row.
        Audited with the service and the document's kind, never a name. The agent's recent
        re-authentication is the caller's to check (the route)."""
        # The citizen's row locked first, then read again: of concurrent requests one goes on at a
        # time, and each counts the turn-offs the ones before it committed (PostgreSQL; SQLite has a
        # single writer).
        citizen = db.exec(select(Citizen).where(Citizen.id == citizen.id).with_for_update()
                          .execution_options(populate_existing=True)).one()
        if citizen.totp_enabled_at is None:
            raise NoTotp()
        if self.totp_off_today(db, citizen.id) >= TOTP_OFF_PER_DAY:
            raise TooManyTotpOff()
        errors: dict[str, str] = {}
        kind = form.get("document_kind", "")
        try:
            identity_check(form, unchecked=LETTER_UNCHECKED)
        except InvalidInput as exc:
            errors.update(exc.fields)
        if form.get("asked") != "yes":
            errors["asked"] = TOTP_NOT_ASKED
        if errors:
            raise InvalidInput(errors)
        ended = self.accounts.disable_totp_at_counter(db=db, citizen=citizen, service=agent.service or "")
        audit.record(db, actor=f"staff:{agent.id}", action=TOTP_OFF_ACTION, target=self._target(db, citizen.id),
                     details={"service": agent.service or "", "document_kind": kind, "identity_check": "now",
                              "sessions_ended": ended})

    # ---- activation by the citizen -----------------------------------------------------------------

    def activate(self, db: Session, *, login: str, code: str, password: str, confirmation: str, email: str,
                 address: str) -> Citizen:
        """``/activate``: the letter's code sets the first password. Unknown identifier, wrong,
        expired, voided or used code: the same ``BadActivationCode`` after the same work, throttled
        like a login (``TooManyLoginAttempts`` while locked, even with the right code; each try
        counted before the code is checked, in a transaction of its own). A refused
        password (or confirmation, or address): InvalidInput, the code stays usable. For an account
        without an address, ``email`` (optional) is sent a confirmation link."""
        name, citizen = self.accounts.find_for_login(db=db, typed=login)
        # Counted before the code is checked (a transaction of its own): a burst of guesses gets no
        # more checks than the free failures, of the identifier and of the client address.
        attempt = self.accounts.begin_attempt(db=db, name=name, address=address)
        live = self._live_code(db, citizen.id) if citizen is not None else None
        typed = compact_code(code)
        code_ok = self.accounts.verify_counted(db=db, attempt=attempt, stored_hash=live.code_hash if live else None,
                                               password=typed)  # the same work when unknown
        # An account whose password was set meanwhile (a reset link) needs no letter any more.
        if citizen is None or live is None or not code_ok or citizen.password_hash is not None:
            logger.info("activation failed", extra={"reason": "bad_code"})
            raise BadActivationCode()  # the try stays counted
        self.accounts.attempt_passed(db=db, attempt=attempt)
        # Used at once, atomically: of two concurrent requests only one goes on. A refused password
        # below makes the caller roll back, and the code is usable again.
        result = db.exec(update(ActivationCode).where(col(ActivationCode.id) == live.id,
                                                      col(ActivationCode.used_at).is_(None)).values(used_at=utcnow()))
        if result.rowcount != 1:
            raise BadActivationCode()
        errors: dict[str, str] = {}
        if email.strip() and citizen.email is None:
            try:
                normalize_email(email)
            except ValueError as exc:
                errors["email"] = str(exc)
        try:
            self.accounts.set_first_password(db=db, citizen=citizen, password=password)
        except InvalidInput as exc:
            errors.update(exc.fields)
        if "password" not in errors and confirmation != password:
            errors["password_confirm"] = N_("Les deux mots de passe ne sont pas identiques : retapez-le.")
        if errors:
            raise InvalidInput(errors)
        if email.strip() and citizen.email is None:
            self.accounts.add_email(db=db, citizen=citizen, email=email)
        self.accounts.activated_with_letter(db=db, citizen=citizen)
        subject = f"subject:{self.gdpr.subject(db, citizen.id)}"
        audit.record(db, actor=subject, action="account.activated", target=subject, details={"with": "letter"})
        logger.info("account activated", extra={"citizen_id": str(citizen.id)})
        return citizen

    def activated_by_link(self, db: Session, citizen: Citizen) -> None:
        """The mailed link set the first password: a letter printed meanwhile is voided, the chain told."""
        db.exec(update(ActivationCode).where(col(ActivationCode.citizen_id) == citizen.id,
                                             col(ActivationCode.used_at).is_(None),
                                             col(ActivationCode.voided_at).is_(None)).values(voided_at=utcnow()))
        subject = f"subject:{self.gdpr.subject(db, citizen.id)}"
        audit.record(db, actor=subject, action="account.activated", target=subject, details={"with": "email"})
