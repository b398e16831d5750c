"""Citizen accounts: registration, email links, login with throttling, sessions, TOTP.

No HTTP here: routes parse and call these functions; the request's unit of work commits.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import threading
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import pyotp
from sqlalchemy import Connection, Engine, delete, func, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from vault import crypto, metrics
from vault.auth.exceptions import (
    AlreadyActivated,
    EmailNotVerified,
    InvalidCredentials,
    InvalidInput,
    InvalidLink,
    InvalidOtp,
    TooManyLoginAttempts,
)
from vault.auth.identity import (
    CODE_ALPHABET,
    LOGIN_ID_LENGTH,
    Identity,
    format_code,
    login_key,
    login_name,
    normalize_email,
    validate_identity,
)
from vault.auth.models import (
    IDENTITY_FIELDS,
    Citizen,
    EmailToken,
    FederatedIdentity,
    FederationRequest,
    LoginSession,
    LoginThrottle,
    Passkey,
    PasskeyChallenge,
    RecoveryCode,
)
from vault.auth.passwords import Hasher, HasherBusy, password_problem
from vault.crypto.rotation import WrappedColumn
from vault.crypto.tokens import new_token, token_hash
from vault.db import make_engine, utcnow
from vault.mail import MailQueue
from vault.settings import Settings
from vault.translation import N_
from vault.web.mails import send_mail

logger = logging.getLogger(__name__)
# A refused login's outcome in the metrics (vault_logins_total).
_LOGIN_OUTCOMES: dict[type[Exception], str] = {
    InvalidCredentials: "bad_credentials", InvalidOtp: "bad_otp", TooManyLoginAttempts: "throttled",
    EmailNotVerified: "email_not_verified"}

Purpose = Literal["verify_email", "reset_password", "change_email", "activate"]
ACTIVATION_LINK_DAYS = 7  # an account opened at the counter with an address: its first password
EMAIL_CHANGE_HOURS = 24
MFA_PENDING_MINUTES = 5
# The account's sensitive pages (TOTP, recovery codes, email, password, passkeys, the export of the
# citizen's data) need a proof of identity (password, TOTP code or passkey) this recent.
STEP_UP_WINDOW = timedelta(minutes=5)
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud at a counter
TOTP_ISSUER_FALLBACK = "Citizen Vault"
# Growing lock after the free failures: 30 s, 1 min, 2 min… capped at one hour.
_FIRST_LOCK_SECONDS = 30
_MAX_LOCK_SECONDS = 3600
_THROTTLE_MEMORY = timedelta(hours=24)


@dataclass(frozen=True)
class Attempt:
    """A try counted on the login throttle before it is checked (``AccountService.begin_attempt``):
    its counters, each with its free failures, in the order they are locked; and the lock this try
    set on each (before, after), so that taking the try back takes back that lock too."""

    counters: list[tuple[str, int]]
    locks: dict[str, tuple[datetime | None, datetime | None]] = dataclass_field(default_factory=dict)


@dataclass(frozen=True)
class LoginResult:
    token: str  # the cookie value
    mfa_pending: bool
    citizen_id: uuid.UUID


class TotpHolder(Protocol):
    """An account with a TOTP second factor: a citizen, or a staff member (vault.gdpr.staff)."""

    id: uuid.UUID
    totp_secret: bytes | None  # wrapped by the KEK
    totp_enabled_at: datetime | None
    totp_last_step: int | None


@dataclass(frozen=True)
class CurrentLogin:
    login_session: LoginSession
    citizen: Citizen
    token: str

    @property
    def stepped_up(self) -> bool:
        """Whether the citizen proved it is them in this session less than 5 minutes ago."""
        at = self.login_session.stepped_up_at
        return at is not None and utcnow() - at <= STEP_UP_WINDOW


class AppGrants(Protocol):
    """What ends with every session of an account (a password reset, "log out everywhere"): the
    apps' tokens (``vault.oidc``, a floor above, supplied by the composition root)."""

    def end_grants(self, *, db: Session, citizen_id: uuid.UUID) -> int: ...


RESET_NEEDS_SECOND_FACTOR = N_(
    "Votre compte est protégé par la double authentification : saisissez le code à 6 chiffres de votre "
    "application, ou l'un de vos codes de secours.")
NO_SECOND_FACTOR = N_(
    "Vous n'avez plus ni votre application ni vos codes de secours ? Présentez-vous au guichet de la mairie avec "
    "une pièce d'identité : après l'avoir vérifiée, un agent désactivera la double authentification de votre compte "
    "et vous recevrez un e-mail. Vous choisirez alors votre nouveau mot de passe avec « Mot de passe oublié », "
    "sans code.")

CERTIFIED_IDENTITY = N_("Cette identité est certifiée par FranceConnect : elle vient de l'état civil et serait "
                        "remplacée à la prochaine connexion par FranceConnect. Une correction se demande à l'état civil.")


def client_network(address: str) -> str:
    """What the per-client limits count under: an IPv6 client by its /64 (one subscriber gets a
    whole /64 and could take a fresh address per request), an IPv4 one (or IPv4 mapped in IPv6) as
    is; anything else (a test client's name) unchanged."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip), 64), strict=False))
    return str(ip)


def mail_budget_target(email: str) -> str:
    """The per-target mail limit's name for ``email``: without a ``+tag`` in the local part, so that
    ``victim+1@``, ``victim+2@``… share ``victim@``'s budget (the account keeps the exact address)."""
    local, at, domain = email.rpartition("@")
    base = local.split("+", 1)[0]
    return f"{base}{at}{domain}" if at and base else email


def mask_email(address: str) -> str:
    """``j***@example.org``: enough for the owner to recognise it, not to read it off a mail."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


class Secrets(Protocol):
    """Where the service secrets live (``oidc.keys.KeyStore``, a floor above, supplied by the
    composition root): a random 256-bit secret per name, created on first use."""

    def secret(self, db: Session, name: str) -> bytes: ...


THROTTLE_SECRET = "login-throttle"  # noqa: S105  (the secret's name, not a secret)


class AccountService:
    """Accounts and sessions. Holds configuration only; every method takes the DB session."""

    def __init__(self, *, settings: Settings, hasher: Hasher, mailer: MailQueue, keys: crypto.KeyProvider,
                 secrets: Secrets) -> None:
        self.settings = settings
        self.hasher = hasher
        self.mailer = mailer
        self.keys = keys
        self.secrets = secrets  # the login throttle's key
        self.app_grants: list[AppGrants] = []
        self._counting_engines: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
        self._counting_lock = threading.Lock()

    # ---- registration and email links ---------------------------------------------------------

    def register(self, *, db: Session, form: dict[str, str], address: str) -> None:
        """Create an unverified account and mail its verification link. The birthplace may be the
        commune's name or postal code (``birthplace_choice``: the one picked among several).

        An email already registered gets the same answer on the page (no account enumeration) after
        the same work; its owner receives a mail saying so, with the way to log in or reset the
        password. Limited per email and per client ``address`` (``allow_mail_request``): over the
        limit, the same answer and nothing done. Raises InvalidInput with every field problem at
        once; nothing is written then.
        """
        errors: dict[str, str] = {}
        try:
            email = normalize_email(form.get("email", ""))
        except ValueError as exc:
            errors["email"], email = str(exc), ""
        password = form.get("password", "")
        identity, identity_errors = validate_identity(form, today=self.settings.today(), by_name=True)
        errors.update(identity_errors)
        if problem := password_problem(password, email=email):
            errors["password"] = problem
        if errors:
            raise InvalidInput(errors)
        if not self.allow_mail_request(db=db, action="register", email=email, address=address):
            return

        password_hash = self.hasher.hash(password)  # also for an existing email: same timing
        existing = db.exec(select(Citizen).where(Citizen.email == email)).first()
        if existing is not None:
            self._mail(db=db, to=email, template="registration_attempted", citizen_id=existing.id)
            logger.info("registration attempted for an existing account", extra={"citizen_id": str(existing.id)})
            return
        citizen = Citizen(email=email, password_hash=password_hash, **identity)
        db.add(citizen)
        db.flush()
        self._send_verification(db=db, citizen=citizen)
        logger.info("citizen registered", extra={"citizen_id": str(citizen.id)})

    def create_citizen(self, *, db: Session, form: dict[str, str], verified: bool) -> Citizen:
        """Operator path (``vault citizen create``): same validation, refuses an existing email."""
        errors: dict[str, str] = {}
        try:
            email = normalize_email(form.get("email", ""))
        except ValueError as exc:
            errors["email"], email = str(exc), ""
        identity, identity_errors = validate_identity(form, today=self.settings.today())
        errors.update(identity_errors)
        if problem := password_problem(form.get("password", ""), email=email):
            errors["password"] = problem
        if email and db.exec(select(Citizen.id).where(Citizen.email == email)).first() is not None:
            errors["email"] = N_("Un compte existe déjà avec cette adresse e-mail.")
        if errors:
            raise InvalidInput(errors)
        citizen = Citizen(
            email=email,
            password_hash=self.hasher.hash(form["password"]),
            email_verified_at=utcnow() if verified else None,
            **identity,
        )
        db.add(citizen)
        db.flush()
        return citizen

    # ---- accounts opened at the counter (vault.counter) ----------------------------------------------

    def open_at_counter(self, *, db: Session, form: dict[str, str]) -> Citizen:
        """An account a counter agent opens for a person present with an identity document: the
        identity validated as at registration (the birthplace by name), an address if the person has
        one, no password. With an address: a link to choose the password (valid 7 days, it also
        confirms the address); without: a login identifier, printed on the activation letter.
        Raises InvalidInput with every field problem at once (an address another account uses is
        one); nothing is written then. The link is queued with the account (vault.mail)."""
        email, identity, errors = self._counter_form(db=db, form=form)
        if errors:
            raise InvalidInput(errors)
        citizen = Citizen(email=email, login_id=None if email else self._new_login_id(db=db), **identity)
        db.add(citizen)
        db.flush()
        if email:
            self.send_activation_link(db=db, citizen=citizen)
        logger.info("account opened at the counter", extra={"citizen_id": str(citizen.id)})
        return citizen

    def counter_form_problems(self, *, db: Session, form: dict[str, str]) -> dict[str, str]:
        """What ``open_at_counter`` would refuse in ``form``, by field (nothing is written)."""
        return self._counter_form(db=db, form=form)[2]

    def _counter_form(self, *, db: Session, form: dict[str, str]) -> tuple[str | None, Identity, dict[str, str]]:
        errors: dict[str, str] = {}
        email = None
        if (form.get("email") or "").strip():
            try:
                email = normalize_email(form["email"])
            except ValueError as exc:
                errors["email"] = str(exc)
        identity, identity_errors = validate_identity(form, today=self.settings.today(), by_name=True)
        errors.update(identity_errors)
        if email and db.exec(select(Citizen.id).where(Citizen.email == email)).first() is not None:
            errors["email"] = N_("Un compte existe déjà avec cette adresse e-mail : cherchez la personne au lieu de lui "
                                 "ouvrir un second compte.")
        return email, identity, errors

    @staticmethod
    def _new_login_id(*, db: Session) -> str:
        """A fresh login identifier, ``K7M2-Q9PX-3H`` (31^10 of them: a clash is only ever retried)."""
        while True:
            login_id = format_code("".join(secrets.choice(CODE_ALPHABET) for _ in range(LOGIN_ID_LENGTH)))
            if db.exec(select(Citizen.id).where(Citizen.login_id == login_id)).first() is None:
                return login_id

    def send_activation_link(self, *, db: Session, citizen: Citizen) -> None:
        """Mail the link that lets a counter-opened account choose its password (and confirms the
        address); an earlier one still waiting dies."""
        db.exec(update(EmailToken).where(col(EmailToken.citizen_id) == citizen.id, col(EmailToken.purpose) == "activate",
                                         col(EmailToken.used_at).is_(None)).values(used_at=utcnow()))
        token = self._issue_link(db=db, citizen=citizen, purpose="activate", ttl=timedelta(days=ACTIVATION_LINK_DAYS))
        self._mail(db=db, to=citizen.email, template="account_opened", citizen_id=citizen.id,
                   first_name=citizen.given_name.split(" ")[0], token=token, days=ACTIVATION_LINK_DAYS)

    def activate_with_link(self, *, db: Session, token: str, password: str) -> Citizen:
        """The first password of a counter-opened account, from its mailed link: the address is
        confirmed by the same stroke. InvalidLink, or InvalidInput for a refused password;
        AlreadyActivated once the account has a password (set by a reset link, say): the link never
        replaces one, which would bypass the second factor a reset asks of an account with TOTP."""
        link = self._find_link(db=db, token=token, purpose="activate")
        citizen = db.get(Citizen, link.citizen_id)
        assert citizen is not None  # cascade: a link never outlives its citizen
        if citizen.password_hash is not None:
            raise AlreadyActivated()
        self._consume_link(db=db, token=token, purpose="activate")  # a refused password rolls back
        self.set_first_password(db=db, citizen=citizen, password=password)
        citizen.email_verified_at = citizen.email_verified_at or utcnow()
        return citizen

    def activated_with_letter(self, *, db: Session, citizen: Citizen) -> None:
        """The letter's code set the first password: the mailed activation link, if any, dies; an
        address still unconfirmed gets its confirmation link (it must be confirmed to log in with)."""
        db.exec(update(EmailToken).where(col(EmailToken.citizen_id) == citizen.id, col(EmailToken.purpose) == "activate",
                                         col(EmailToken.used_at).is_(None)).values(used_at=utcnow()))
        if citizen.email and citizen.email_verified_at is None:
            self._send_verification(db=db, citizen=citizen)

    def set_first_password(self, *, db: Session, citizen: Citizen, password: str) -> None:
        """The password a citizen chooses when activating an account opened at the counter (the
        usual rules; InvalidInput otherwise). Its login counter starts afresh."""
        if problem := password_problem(password, email=citizen.email or ""):
            raise InvalidInput({"password": problem})
        citizen.password_hash = self.hasher.hash(password)
        citizen.updated_at = utcnow()
        self._end_links(db=db, citizen=citizen, purposes=("activate",))
        self._clear_throttle(db=db, key=self._account_key(db, login_name(citizen)))

    def add_email(self, *, db: Session, citizen: Citizen, email: str) -> None:
        """An address for an account that has none (given when activating it): it becomes the
        account's once the confirmation link sent there is opened, as for a change of address.
        An address another account uses gets the same answer, and its owner a mail saying so."""
        try:
            normalized = normalize_email(email)
        except ValueError as exc:
            raise InvalidInput({"email": str(exc)}) from None
        if (other := db.exec(select(Citizen.id).where(Citizen.email == normalized)).first()) is not None:
            self.notify(db=db, to=normalized, template="registration_attempted", citizen_id=other)
            return
        token, digest = new_token()
        db.add(EmailToken(id=digest, citizen_id=citizen.id, purpose="change_email", new_email=normalized,
                          expires_at=utcnow() + timedelta(hours=EMAIL_CHANGE_HOURS)))
        self._mail(db=db, to=normalized, template="email_change_confirm", citizen_id=citizen.id, token=token,
                   hours=EMAIL_CHANGE_HOURS)

    def _send_verification(self, *, db: Session, citizen: Citizen) -> None:
        token = self._issue_link(db=db, citizen=citizen, purpose="verify_email",
                                 ttl=timedelta(hours=self.settings.email_verification_hours))
        self._mail(db=db, to=citizen.email, template="verify_email", citizen_id=citizen.id,
                   first_name=citizen.given_name.split(" ")[0], token=token)

    @staticmethod
    def _find_by_email(*, db: Session, email: str) -> Citizen | None:
        """The account of a typed email, or None; InvalidInput when it is not an email at all."""
        try:
            normalized = normalize_email(email)
        except ValueError as exc:
            raise InvalidInput({"email": str(exc)}) from None
        return db.exec(select(Citizen).where(Citizen.email == normalized)).first()

    def resend_verification(self, *, db: Session, email: str, address: str) -> None:
        """Send a new link if the account exists and is unverified; say nothing either way, after
        the same work (``_same_work``). Limited like a registration."""
        citizen = self._find_by_email(db=db, email=email)
        if not self.allow_mail_request(db=db, action="resend", email=normalize_email(email), address=address):
            return
        if citizen is not None and citizen.email_verified_at is None:
            self._send_verification(db=db, citizen=citizen)
        else:
            self._same_work(db=db, template="verify_email", first_name="Jeanne")

    def verify_email(self, *, db: Session, token: str) -> Citizen:
        link = self._consume_link(db=db, token=token, purpose="verify_email")
        citizen = db.get(Citizen, link.citizen_id)
        assert citizen is not None  # cascade: a link never outlives its citizen
        if citizen.email_verified_at is None:
            citizen.email_verified_at = utcnow()
            citizen.updated_at = utcnow()
        logger.info("email verified", extra={"citizen_id": str(citizen.id)})
        return citizen

    def request_password_reset(self, *, db: Session, email: str, address: str) -> None:
        """Mail a reset link valid 30 minutes if the account exists; the same answer otherwise, after
        the same work (``_same_work``). Limited like a registration."""
        citizen = self._find_by_email(db=db, email=email)
        if not self.allow_mail_request(db=db, action="reset", email=normalize_email(email), address=address):
            return
        if citizen is None:
            self._same_work(db=db, template="password_reset")
            return
        token = self._issue_link(db=db, citizen=citizen, purpose="reset_password",
                                 ttl=timedelta(minutes=self.settings.password_reset_minutes))
        self._mail(db=db, to=citizen.email, template="password_reset", citizen_id=citizen.id, token=token)

    def _same_work(self, *, db: Session, template: str, **context: Any) -> None:
        """What a mailed link costs, for an address without an account: a token made, the mail
        rendered and written to the outbox — then taken back before the commit: the answer takes as
        long as when the account exists, and nothing is kept or sent."""
        token, digest = new_token()
        EmailToken(id=digest, citizen_id=uuid.uuid4(), purpose="reset_password", expires_at=utcnow())
        row = send_mail(self.mailer, self.settings, db=db, to="nobody@invalid", template=template, token=token,
                        **context)
        db.flush()
        db.delete(row)
        db.flush()
        db.info.pop("mail_queued", None)

    def check_link(self, *, db: Session, token: str, purpose: Purpose) -> Citizen:
        """Raise InvalidLink unless the link can still be used (for showing its form); its account."""
        link = self._find_link(db=db, token=token, purpose=purpose)
        citizen = db.get(Citizen, link.citizen_id)
        assert citizen is not None  # cascade: a link never outlives its citizen
        return citizen

    def set_password(self, *, citizen: Citizen, password: str) -> None:
        """An operator's new password for an account (``vault demo seed``); the rules still apply."""
        if problem := password_problem(password, email=citizen.email or ""):
            raise InvalidInput({"password": problem})
        citizen.password_hash = self.hasher.hash(password)
        citizen.updated_at = utcnow()

    def reset_password(self, *, db: Session, token: str, password: str, otp: str = "", address: str = "") -> Citizen:
        """Set a new password from a reset link, then close every session of the account and end
        the apps' grants (``logout_everywhere``). An account with TOTP also needs a code of its
        application or a recovery code (the mailbox alone is not enough to take it over): a wrong
        code counts in the login throttle (counted before it is checked, ``begin_attempt``), the
        link stays usable; TooManyLoginAttempts while locked."""
        link = self._find_link(db=db, token=token, purpose="reset_password")
        citizen = db.get(Citizen, link.citizen_id)
        assert citizen is not None
        if problem := password_problem(password, email=citizen.email or ""):
            raise InvalidInput({"password": problem})
        if citizen.totp_enabled_at is not None:
            if not (otp or "").strip():
                keys = [self._account_key(db, login_name(citizen)), self._address_key(address)]
                if retry_after := self._locked_for(db=db, keys=keys):
                    raise TooManyLoginAttempts(retry_after)
                raise InvalidInput({"otp": RESET_NEEDS_SECOND_FACTOR})
            attempt = self.begin_attempt(db=db, name=login_name(citizen), address=address)
            try:
                self._check_second_factor(db=db, citizen=citizen, code=otp)
            except InvalidOtp:
                raise InvalidInput({"otp": N_("Code incorrect. Saisissez le code à 6 chiffres affiché par votre "
                                              "application, ou l'un de vos codes de secours.")}) from None
            self.attempt_passed(db=db, attempt=attempt)
        self._consume_link(db=db, token=token, purpose="reset_password")
        # Any other reset link of this account dies too, and so does an activation link: once the
        # account has a password, such a link could set another one.
        self._end_links(db=db, citizen=citizen, purposes=("reset_password", "activate"))
        citizen.password_hash = self.hasher.hash(password)
        # Receiving the link proves control of the mailbox.
        citizen.email_verified_at = citizen.email_verified_at or utcnow()
        citizen.updated_at = utcnow()
        self.logout_everywhere(db=db, citizen_id=citizen.id)
        self._clear_throttle(db=db, key=self._account_key(db, login_name(citizen)))
        logger.info("password reset", extra={"citizen_id": str(citizen.id)})
        self.notify(db=db, to=citizen.email, template="password_changed", citizen_id=citizen.id, at=self._local_now(),
                    apps_signed_out=True)
        return citizen

    def change_password(self, *, db: Session, current: CurrentLogin, password: str, new_password: str,
                        address: str) -> None:
        """"Mon compte": the current password (throttled like a login), then the new one, checked by
        the same rules; every other session of the account ends, this one stays; a notice by mail."""
        citizen = current.citizen
        attempt = self.begin_attempt(db=db, name=login_name(citizen), address=address)
        if not self.verify_counted(db=db, attempt=attempt, stored_hash=citizen.password_hash, password=password):
            raise InvalidInput({"password": N_("Mot de passe actuel incorrect.")})
        self.attempt_passed(db=db, attempt=attempt)
        if problem := password_problem(new_password, email=citizen.email or ""):
            raise InvalidInput({"new_password": problem})
        if self.hasher.verify(citizen.password_hash, new_password):
            raise InvalidInput({"new_password": N_("Le nouveau mot de passe doit être différent de l'actuel.")})
        citizen.password_hash = self.hasher.hash(new_password)
        citizen.updated_at = utcnow()
        db.exec(delete(LoginSession).where(col(LoginSession.citizen_id) == citizen.id,
                                           col(LoginSession.id) != current.login_session.id))
        self._end_links(db=db, citizen=citizen, purposes=("reset_password", "activate"))
        logger.info("password changed", extra={"citizen_id": str(citizen.id)})
        self.notify(db=db, to=citizen.email, template="password_changed", citizen_id=citizen.id, at=self._local_now())

    def request_email_change(self, *, db: Session, current: CurrentLogin, password: str, new_email: str,
                             address: str, proven: bool = False) -> None:
        """"Mon compte": the current password (throttled like a login), then a link to the new
        address; nothing changes until it is opened. The old address is told. An address another
        account uses gets the same answer here, and its owner a mail saying someone tried it. The
        mail spends the typed address's budget of mail requests (``allow_mail_request``): over it,
        the same answer and nothing sent. ``proven``: a session opened through FranceConnect, stepped
        up less than 5 minutes ago (the caller checked it): no password is asked."""
        citizen = current.citizen
        keys = [self._account_key(db, login_name(citizen)), self._address_key(address)]
        if retry_after := self._locked_for(db=db, keys=keys):
            raise TooManyLoginAttempts(retry_after)
        try:
            normalized = normalize_email(new_email)
        except ValueError as exc:
            raise InvalidInput({"new_email": str(exc)}) from None
        if normalized == citizen.email:
            raise InvalidInput({"new_email": N_("C'est déjà l'adresse de votre compte.")})
        if not (proven and current.stepped_up):
            attempt = self.begin_attempt(db=db, name=login_name(citizen), address=address)
            if not self.verify_counted(db=db, attempt=attempt, stored_hash=citizen.password_hash, password=password):
                raise InvalidInput({"password": N_("Mot de passe actuel incorrect.")})
            self.attempt_passed(db=db, attempt=attempt)
        # A link mailed to an address typed here spends that address's mail budget (and the client's),
        # as a registration would: over it, the same answer and nothing sent.
        if not self.allow_mail_request(db=db, action="email_change", email=normalized, address=address):
            return
        if (other := db.exec(select(Citizen.id).where(Citizen.email == normalized)).first()) is not None:
            self.notify(db=db, to=normalized, template="registration_attempted", citizen_id=other)
            return
        db.exec(update(EmailToken).where(col(EmailToken.citizen_id) == citizen.id,
                                         col(EmailToken.purpose) == "change_email", col(EmailToken.used_at).is_(None))
                .values(used_at=utcnow()))  # an earlier change waiting dies
        token, digest = new_token()
        db.add(EmailToken(id=digest, citizen_id=citizen.id, purpose="change_email", new_email=normalized,
                          expires_at=utcnow() + timedelta(hours=EMAIL_CHANGE_HOURS)))
        self._mail(db=db, to=normalized, template="email_change_confirm", citizen_id=citizen.id, token=token,
                   hours=EMAIL_CHANGE_HOURS)
        self.notify(db=db, to=citizen.email, template="email_change_requested", citizen_id=citizen.id,
                    new_email=mask_email(normalized))
        logger.info("email change requested", extra={"citizen_id": str(citizen.id)})

    def confirm_email_change(self, *, db: Session, token: str) -> Citizen:
        """The link from the new address: it becomes the account's (verified); the old one is told."""
        link = self._consume_link(db=db, token=token, purpose="change_email")
        citizen = db.get(Citizen, link.citizen_id)
        if citizen is None or not link.new_email:
            raise InvalidLink()
        if db.exec(select(Citizen.id).where(Citizen.email == link.new_email, Citizen.id != citizen.id)).first():
            raise InvalidLink(N_("Cette adresse est déjà utilisée par un autre compte : rien n'a changé."))
        old = citizen.email
        citizen.email, citizen.email_verified_at, citizen.updated_at = link.new_email, utcnow(), utcnow()
        logger.info("email changed", extra={"citizen_id": str(citizen.id)})
        self.notify(db=db, to=old, template="email_changed", citizen_id=citizen.id, new_email=mask_email(link.new_email))
        return citizen

    def _local_now(self) -> datetime:
        return utcnow().astimezone(ZoneInfo(self.settings.timezone))

    def _issue_link(self, *, db: Session, citizen: Citizen, purpose: Purpose, ttl: timedelta) -> str:
        token, digest = new_token()
        db.add(EmailToken(id=digest, citizen_id=citizen.id, purpose=purpose, expires_at=utcnow() + ttl))
        return token

    @staticmethod
    def _end_links(*, db: Session, citizen: Citizen, purposes: tuple[Purpose, ...]) -> None:
        """The account's links of these purposes still waiting die."""
        db.exec(update(EmailToken).where(col(EmailToken.citizen_id) == citizen.id,
                                         col(EmailToken.purpose).in_(purposes), col(EmailToken.used_at).is_(None))
                .values(used_at=utcnow()))

    def _find_link(self, *, db: Session, token: str, purpose: Purpose) -> EmailToken:
        if not token or len(token) > 200:
            raise InvalidLink()
        link = db.get(EmailToken, token_hash(token))
        if link is None or link.purpose != purpose or link.used_at is not None or link.expires_at <= utcnow():
            raise InvalidLink()
        return link

    def _consume_link(self, *, db: Session, token: str, purpose: Purpose) -> EmailToken:
        """Mark a link used, atomically: of two concurrent requests only one succeeds."""
        link = self._find_link(db=db, token=token, purpose=purpose)
        result = db.exec(
            update(EmailToken)
            .where(col(EmailToken.id) == link.id, col(EmailToken.used_at).is_(None))
            .values(used_at=utcnow())
        )
        if result.rowcount != 1:
            raise InvalidLink()
        return link

    def _mail(self, *, db: Session, to: str | None, template: str, citizen_id: uuid.UUID | None = None,
              forget_when_done: bool = False, **context: Any) -> None:
        """Queue a mail in ``db``'s transaction (``vault.mail``): it leaves once the change commits."""
        if to is None:  # an account opened at the counter without an address: nobody to tell
            return
        send_mail(self.mailer, self.settings, db=db, to=to, template=template, citizen_id=citizen_id,
                  forget_when_done=forget_when_done, **context)

    def notify(self, *, db: Session, to: str | None, template: str, citizen_id: uuid.UUID | None = None,
               forget_when_done: bool = False, **context: Any) -> None:
        """A notice the citizen should get (a security change, an erasure), queued with the change
        that causes it: it leaves when the change is committed, and is retried while mail is down."""
        self._mail(db=db, to=to, template=template, citizen_id=citizen_id, forget_when_done=forget_when_done,
                   **context)

    # ---- login and throttling ------------------------------------------------------------------

    def _account_key(self, db: Session, name: str) -> str:
        """The throttle row of an account (or of any name typed at login): a keyed hash (HMAC-SHA256
        under a service secret), so that the table names nobody to whoever reads it, and an
        address cannot be checked against it by hashing guesses."""
        key = self.secrets.secret(db, THROTTLE_SECRET)
        return "account:" + hmac.new(key, name.encode(), hashlib.sha256).hexdigest()

    def _limit_key(self, db: Session, action: str, kind: Literal["target", "address"], value: str) -> str:
        """A limit's counter, ``mail:t:<HMAC>``: keyed like the accounts' (``_account_key``), neither
        the target nor the client address in clear."""
        key = self.secrets.secret(db, THROTTLE_SECRET)
        if kind == "address":
            value = client_network(value)
        return f"{action}:{kind[0]}:" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def _address_key(address: str) -> str:
        """The login throttle's row of a client address (an IPv6 one by its /64: ``client_network``)."""
        return "address:" + client_network(address)[:64]

    def _locked_for(self, *, db: Session, keys: list[str]) -> int:
        now = utcnow()
        seconds = 0
        for key in keys:
            row = db.get(LoginThrottle, key)
            if row is not None and row.locked_until is not None and row.locked_until > now:
                seconds = max(seconds, int((row.locked_until - now).total_seconds()) + 1)
        return seconds

    def _record_failure(self, *, db: Session, key: str, free: int) -> None:
        self._count(self._counter(db=db, key=key), free=free, now=utcnow())

    @staticmethod
    def _counter(*, db: Session, key: str) -> LoginThrottle:
        """The counter ``key``, created if missing, locked for this transaction (the row lock of an
        update on PostgreSQL; SQLite has one writer at a time): concurrent requests count one after
        the other, and two first requests never collide on creating it. One statement (an upsert
        that returns the row): a counter cleared by a concurrent successful login between two
        statements (an insert that found it, a read that no longer does) cannot make it vanish."""
        dialect = db.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        upsert = insert(LoginThrottle).values(key=key, failures=0, last_failure_at=utcnow())
        upsert = upsert.on_conflict_do_update(index_elements=["key"], set_={"failures": col(LoginThrottle.failures)})
        return db.scalars(upsert.returning(LoginThrottle), execution_options={"populate_existing": True}).one()

    @staticmethod
    def _count(row: LoginThrottle, *, free: int, now: datetime) -> None:
        """One more on the counter; from the ``free``-th on, a growing lock (30 s, doubling, 1 h at most)."""
        if now - row.last_failure_at > _THROTTLE_MEMORY:
            row.failures = 0
        row.failures += 1
        row.last_failure_at = now
        if row.failures >= free:
            delay = min(_MAX_LOCK_SECONDS, _FIRST_LOCK_SECONDS * 2 ** (row.failures - free))
            row.locked_until = now + timedelta(seconds=delay)

    def allow(self, *, db: Session, action: str, target: str, address: str, free_per_target: int,
              free_per_address: int) -> bool:
        """A request that costs work or sends mail, limited per target (an email, a link…) and per
        client address, on the login throttle's counters (in the database: every replica shares
        them): each request counts, and from the ``free``-th on the growing lock applies. While either
        counter is locked: False, nothing counted, and the log says which limit (never the address
        or the target)."""
        now = utcnow()
        counters = [
            (self._counter(db=db, key=self._limit_key(db, action, "target", target)), free_per_target, "target"),
            (self._counter(db=db, key=self._limit_key(db, action, "address", address)), free_per_address, "address"),
        ]
        over = [which for row, _, which in counters if row.locked_until is not None and row.locked_until > now]
        if over:
            logger.warning("request over the limit", extra={"action": action, "limit": over[0]})
            return False
        for row, free, _ in counters:
            self._count(row, free=free, now=now)
        return True

    def address_locked(self, *, db: Session, action: str, address: str) -> bool:
        """Whether the client ``address`` is over its limit for ``action`` (failures counted by
        ``count_address_failure``); logged when it is, without the address."""
        if self._locked_for(db=db, keys=[self._limit_key(db, action, "address", address)]):
            logger.warning("request over the limit", extra={"action": action, "limit": "address"})
            return True
        return False

    def count_address_failure(self, *, db: Session, action: str, address: str, free: int) -> None:
        """A failed try of ``action`` from the client ``address`` (a wrong share-link code…): from the
        ``free``-th on, the growing lock."""
        self._record_failure(db=db, key=self._limit_key(db, action, "address", address), free=free)

    def allow_mail_request(self, *, db: Session, action: str, email: str, address: str) -> bool:
        """A request that mails ``email`` (registration, reset, a new confirmation link): one budget
        per address, whatever the request (``VAULT_MAIL_REQUESTS_FREE_PER_EMAIL``), and one per client
        address (``VAULT_MAIL_REQUESTS_FREE_PER_ADDRESS``). ``action`` only names it in the log. The
        email counts without its ``+tag`` (``mail_budget_target``); a client address by its network
        (``client_network``)."""
        allowed = self.allow(db=db, action="mail", target=mail_budget_target(email), address=address,
                             free_per_target=self.settings.mail_requests_free_per_email,
                             free_per_address=self.settings.mail_requests_free_per_address)
        if not allowed:
            logger.warning("mail request refused", extra={"request": action})
        return allowed

    def _clear_throttle(self, *, db: Session, key: str) -> None:
        db.exec(delete(LoginThrottle).where(col(LoginThrottle.key) == key))

    def _own_transaction(self, db: Session, work: Callable[[Session], None]) -> None:
        """``work`` in a short transaction of its own, committed at once: what it counts survives
        whatever becomes of the request, and its row locks last milliseconds, not the request. Its
        connection is not taken from the requests' pool (``_counting_engine``): a burst that holds
        every pooled connection never waits for a second one. On SQLite, when the request's
        transaction holds the one write lock already, the work joins that transaction instead (a
        second connection would wait for it)."""
        bind = db.get_bind()
        engine = bind.engine if isinstance(bind, Connection) else bind
        if engine.dialect.name == "sqlite" and db.in_transaction() and _sqlite_writing(db):
            work(db)
            return
        with Session(self._counting_engine(engine), expire_on_commit=False) as own:
            work(own)
            own.commit()

    def _counting_engine(self, engine: Engine) -> Engine:
        """The same database without a pool: one connection per count, closed after it."""
        with self._counting_lock:
            counting = self._counting_engines.get(engine)
            if counting is None:
                counting = self._counting_engines[engine] = make_engine(engine.url, pooled=False)
            return counting

    def begin_attempt(self, *, db: Session, name: str, address: str) -> Attempt:
        """Before a password or a code is checked: the counters of the account ``name`` and of the
        client address are taken (``FOR UPDATE``), their lock checked (TooManyLoginAttempts, nothing
        counted), and this try counted as a failure, committed at once. Concurrent tries thus count
        one after the other: no burst gets more checks than the free failures allow. A try that
        succeeds calls ``attempt_passed``; one that fails has nothing more to record."""
        attempt = Attempt(counters=sorted([
            (self._account_key(db, name), self.settings.login_free_failures_per_account),
            (self._address_key(address), self.settings.login_free_failures_per_address)]))

        def count(session: Session) -> None:
            now = utcnow()
            rows = [(self._counter(db=session, key=key), free) for key, free in attempt.counters]  # one order: no deadlock
            locked = [row.locked_until for row, _ in rows if row.locked_until is not None and row.locked_until > now]
            if locked:
                raise TooManyLoginAttempts(int((max(locked) - now).total_seconds()) + 1)
            for (key, _), (row, free) in zip(attempt.counters, rows, strict=True):
                before = row.locked_until
                self._count(row, free=free, now=now)
                attempt.locks[key] = (before, row.locked_until)

        self._own_transaction(db, count)
        return attempt

    def verify_counted(self, *, db: Session, attempt: Attempt, stored_hash: str | None, password: str) -> bool:
        """The password of a try counted by ``begin_attempt``; when no argon2id turn comes
        (``HasherBusy``: 503, nothing checked) the try is taken back, as nothing was tried."""
        try:
            return self.hasher.verify(stored_hash, password or "")
        except HasherBusy:
            self.attempt_passed(db=db, attempt=attempt, clear_account=False)
            raise

    def attempt_passed(self, *, db: Session, attempt: Attempt, clear_account: bool = True) -> None:
        """The try counted by ``begin_attempt`` was right: the account's counter starts afresh
        (``clear_account``; otherwise, as for a login that still waits for its second factor, the
        try is only taken back), the address's takes the try back (and its lock, if the try set it)."""

        def undo(session: Session) -> None:
            for key, free in attempt.counters:
                if key.startswith("account:") and clear_account:
                    self._clear_throttle(db=session, key=key)
                    continue
                row = self._counter(db=session, key=key)
                row.failures = max(0, row.failures - 1)
                before, after = attempt.locks.get(key, (None, None))
                if row.failures < free:
                    row.locked_until = None
                elif (after is not None and after != before and row.locked_until is not None
                      and abs(row.locked_until - after) < timedelta(milliseconds=1)):
                    # Past its free failures (an older lock, expired but remembered for a day), the
                    # counter was locked by this very try: the lock goes with the try.
                    row.locked_until = before

        self._own_transaction(db, undo)

    def login(self, *, db: Session, email: str, password: str, otp: str | None, address: str,
              user_agent: str) -> LoginResult:
        """Check the credentials (RFC 9106 argon2id) and open a session. ``email``: what the citizen
        typed, an address or the login identifier of an account opened at the counter.

        Unknown email or identifier, wrong password, malformed email: the same InvalidCredentials after the
        same work. While an account or address is locked, the same TooManyLoginAttempts, even
        with the right password. Each try is counted before the password is checked
        (``begin_attempt``), and taken back when it was right.
        """
        try:
            result = self._login(db=db, email=email, password=password, otp=otp, address=address,
                                 user_agent=user_agent)
        except (InvalidCredentials, InvalidOtp, TooManyLoginAttempts, EmailNotVerified) as exc:
            metrics.logins.labels(method="password", outcome=_LOGIN_OUTCOMES[type(exc)]).inc()
            raise
        metrics.logins.labels(method="password", outcome="totp_required" if result.mfa_pending else "success").inc()
        return result

    def _login(self, *, db: Session, email: str, password: str, otp: str | None, address: str,
               user_agent: str) -> LoginResult:
        normalized, citizen = self.find_for_login(db=db, typed=email)
        attempt = self.begin_attempt(db=db, name=normalized, address=address)
        password_ok = self.verify_counted(db=db, attempt=attempt, stored_hash=citizen.password_hash if citizen else None,
                                          password=password)
        if not password_ok or citizen is None:
            logger.info("login failed", extra={"reason": "bad_credentials"})
            raise InvalidCredentials()
        if citizen.email is not None and citizen.email_verified_at is None:
            self.attempt_passed(db=db, attempt=attempt, clear_account=False)
            raise EmailNotVerified()
        if citizen.password_hash and self.hasher.needs_rehash(citizen.password_hash):
            citizen.password_hash = self.hasher.hash(password)
        amr = "pwd"
        if citizen.totp_enabled_at is not None:
            if not otp:
                self.attempt_passed(db=db, attempt=attempt, clear_account=False)
                token = self._open_session(db=db, citizen=citizen, amr="pwd", user_agent=user_agent,
                                           mfa_pending=True)
                return LoginResult(token=token, mfa_pending=True, citizen_id=citizen.id)
            self._check_second_factor(db=db, citizen=citizen, code=otp)
            amr = "pwd otp mfa"
        self.attempt_passed(db=db, attempt=attempt)
        citizen.last_login_at = utcnow()
        token = self._open_session(db=db, citizen=citizen, amr=amr, user_agent=user_agent)
        logger.info("login", extra={"citizen_id": str(citizen.id), "amr": amr})
        return LoginResult(token=token, mfa_pending=False, citizen_id=citizen.id)

    def find_for_login(self, *, db: Session, typed: str) -> tuple[str, Citizen | None]:
        """The account a login form's first field names (an address, or a login identifier) and the
        name its throttle counts under: the account's own (``login_name``) once found, whatever
        names it, so that its identifier and its address share one counter; what was typed for an
        unknown one (see ``identity.login_key``)."""
        name, login_id = login_key(typed)
        if login_id is not None:
            citizen = db.exec(select(Citizen).where(Citizen.login_id == login_id)).first()
        else:
            citizen = db.exec(select(Citizen).where(Citizen.email == name)).first() if name else None
        return (login_name(citizen) if citizen is not None else name), citizen

    def record_login_failure(self, *, db: Session, email: str, address: str) -> None:
        self._record_failure(db=db, key=self._account_key(db, email),
                             free=self.settings.login_free_failures_per_account)
        self._record_failure(db=db, key=self._address_key(address),
                             free=self.settings.login_free_failures_per_address)

    def record_address_failure(self, *, db: Session, address: str) -> None:
        """A failed login that names no account (a passkey nobody registered, say)."""
        self._record_failure(db=db, key=self._address_key(address), free=self.settings.login_free_failures_per_address)

    def start_session(self, *, db: Session, citizen: Citizen, amr: str, user_agent: str) -> str:
        """A login another way than the password (a passkey): the account's counter is cleared, the
        login dated, a new session opened; its token returned."""
        self._clear_throttle(db=db, key=self._account_key(db, login_name(citizen)))
        citizen.last_login_at = utcnow()
        return self._open_session(db=db, citizen=citizen, amr=amr, user_agent=user_agent)

    def complete_mfa(self, *, db: Session, pending_token: str, otp: str, address: str,
                     user_agent: str) -> LoginResult:
        """Second step: the TOTP (or a recovery code) upgrades a pending session into a new one."""
        try:
            result = self._complete_mfa(db=db, pending_token=pending_token, otp=otp, address=address,
                                        user_agent=user_agent)
        except (InvalidOtp, TooManyLoginAttempts) as exc:
            metrics.logins.labels(method="otp", outcome=_LOGIN_OUTCOMES[type(exc)]).inc()
            raise
        metrics.logins.labels(method="otp", outcome="success").inc()
        return result

    def _complete_mfa(self, *, db: Session, pending_token: str, otp: str, address: str,
                      user_agent: str) -> LoginResult:
        pending = db.get(LoginSession, token_hash(pending_token)) if pending_token else None
        if (pending is None or not pending.mfa_pending
                or utcnow() - pending.created_at > timedelta(minutes=MFA_PENDING_MINUTES)):
            raise InvalidLink("Votre connexion a expiré. Saisissez de nouveau votre adresse e-mail et votre mot de passe.")
        citizen = db.get(Citizen, pending.citizen_id)
        assert citizen is not None
        attempt = self.begin_attempt(db=db, name=login_name(citizen), address=address)
        self._check_second_factor(db=db, citizen=citizen, code=otp)
        db.delete(pending)
        self.attempt_passed(db=db, attempt=attempt)
        citizen.last_login_at = utcnow()
        token = self._open_session(db=db, citizen=citizen, amr="pwd otp mfa", user_agent=user_agent)
        logger.info("login", extra={"citizen_id": str(citizen.id), "amr": "pwd otp mfa"})
        return LoginResult(token=token, mfa_pending=False, citizen_id=citizen.id)

    def _check_second_factor(self, *, db: Session, citizen: Citizen, code: str) -> None:
        """A TOTP code or a recovery code; InvalidOtp otherwise (the try was counted by ``begin_attempt``)."""
        if self.accept_totp(citizen=citizen, code=code) or self._use_recovery_code(db=db,
                                                                                    citizen=citizen, code=code):
            return
        logger.info("login failed", extra={"reason": "bad_otp", "citizen_id": str(citizen.id)})
        raise InvalidOtp()

    # ---- sessions ----------------------------------------------------------------------------

    def _open_session(self, *, db: Session, citizen: Citizen, amr: str, user_agent: str,
                      mfa_pending: bool = False, federation: str | None = None,
                      federation_id_token: str | None = None) -> str:
        """Always a new session id at login (no fixation); the token only ever lives in the cookie."""
        token, digest = new_token()
        now = utcnow()
        db.add(LoginSession(id=digest, citizen_id=citizen.id, created_at=now, last_seen_at=now, auth_time=now,
                            amr=amr, mfa_pending=mfa_pending, user_agent=(user_agent or "")[:200],
                            federation=federation, federation_id_token=federation_id_token,
                            stepped_up_at=None if mfa_pending else now))
        return token

    def open_session(self, *, db: Session, citizen: Citizen, amr: str, user_agent: str, federation: str,
                     federation_id_token: str) -> str:
        """A session opened by an identity federation (vault.auth.franceconnect), which checked the person."""
        logger.info("login", extra={"citizen_id": str(citizen.id), "amr": amr})
        metrics.logins.labels(method="federation", outcome="success").inc()
        return self._open_session(db=db, citizen=citizen, amr=amr, user_agent=user_agent, federation=federation,
                                  federation_id_token=federation_id_token)

    def check_credentials(self, *, db: Session, citizen: Citizen, password: str, otp: str, address: str) -> None:
        """The account's password, and its TOTP code when two-factor login is on, throttled like a
        login (TooManyLoginAttempts, InvalidCredentials, InvalidOtp): the try is counted before
        anything is checked (``begin_attempt``), and taken back when it was right."""
        attempt = self.begin_attempt(db=db, name=login_name(citizen), address=address)
        if not self.hasher.verify(citizen.password_hash, password or ""):
            raise InvalidCredentials()
        if citizen.totp_enabled_at is not None:
            self._check_second_factor(db=db, citizen=citizen, code=otp or "")
        self.attempt_passed(db=db, attempt=attempt)

    # ---- step-up: a recent proof before the account's sensitive pages ---------------------------

    def step_up(self, *, db: Session, current: CurrentLogin, password: str, otp: str, address: str) -> None:
        """The confirmation page: the password, or a code of the TOTP application when the account
        has one, throttled like a login (TooManyLoginAttempts; InvalidInput for a wrong proof, whose
        try is counted before it is checked, ``begin_attempt``). The session is stepped up for 5 minutes."""
        citizen = current.citizen
        if not password and not otp:
            keys = [self._account_key(db, login_name(citizen)), self._address_key(address)]
            if retry_after := self._locked_for(db=db, keys=keys):
                raise TooManyLoginAttempts(retry_after)
            field = "otp" if citizen.totp_enabled_at is not None and not citizen.password_hash else "password"
            raise InvalidInput({field: N_("Saisissez votre mot de passe ou un code de votre application.")
                                if citizen.totp_enabled_at is not None else N_("Saisissez votre mot de passe.")})
        attempt = self.begin_attempt(db=db, name=login_name(citizen), address=address)
        if password:
            ok = self.verify_counted(db=db, attempt=attempt, stored_hash=citizen.password_hash, password=password)
            field = "password"
            message = N_("Mot de passe incorrect.")
        else:
            ok, field = self.accept_totp(citizen=citizen, code=otp), "otp"
            message = InvalidOtp.message
        if not ok:
            logger.info("step-up refused", extra={"citizen_id": str(citizen.id), "proof": field})
            raise InvalidInput({field: message})
        self.attempt_passed(db=db, attempt=attempt)
        self.stepped_up(current)
        logger.info("step-up", extra={"citizen_id": str(citizen.id), "proof": field})

    @staticmethod
    def stepped_up(current: CurrentLogin) -> None:
        """The citizen just proved it is them another way (a form that asks for the password, a
        passkey): the session counts as stepped up for 5 minutes."""
        current.login_session.stepped_up_at = utcnow()

    def resolve_session(self, *, db: Session, token: str | None) -> CurrentLogin | None:
        """Return the live session for a cookie, or None (unknown, pending MFA, idle or too old)."""
        if not token or len(token) > 200:
            return None
        row = db.get(LoginSession, token_hash(token))
        if row is None or row.mfa_pending:
            return None
        now = utcnow()
        idle = timedelta(minutes=self.settings.session_idle_minutes)
        absolute = timedelta(hours=self.settings.session_absolute_hours)
        if now - row.last_seen_at > idle or now - row.created_at > absolute:
            db.delete(row)
            return None
        if now - row.last_seen_at > timedelta(seconds=60):  # one write a minute, not one a request
            row.last_seen_at = now
        citizen = db.get(Citizen, row.citizen_id)
        if citizen is None:
            return None
        return CurrentLogin(login_session=row, citizen=citizen, token=token)

    def logout(self, *, db: Session, token: str | None) -> None:
        if token and len(token) <= 200:
            db.exec(delete(LoginSession).where(col(LoginSession.id) == token_hash(token)))

    def logout_everywhere(self, *, db: Session, citizen_id: uuid.UUID) -> int:
        """Every login session of the account ends, and so do the apps' grants (their access and
        refresh tokens, their codes not yet exchanged); the consents given to apps stay. How many
        login sessions ended."""
        result = db.exec(delete(LoginSession).where(col(LoginSession.citizen_id) == citizen_id))
        grants = sum(apps.end_grants(db=db, citizen_id=citizen_id) for apps in self.app_grants)
        logger.info("all sessions closed", extra={"citizen_id": str(citizen_id), "count": result.rowcount,
                                                  "app_tokens": grants})
        return result.rowcount

    def end_session(self, *, db: Session, login_session: LoginSession) -> None:
        db.delete(login_session)

    def end_sessions_by_sid(self, *, db: Session, sid: str) -> int:
        """End the login session an app knows by its ``sid`` (OpenID Connect logout); how many ended."""
        return db.exec(delete(LoginSession).where(col(LoginSession.sid) == sid)).rowcount

    def list_sessions(self, *, db: Session, citizen_id: uuid.UUID, include_pending: bool = False) -> list[LoginSession]:
        """The citizen's login sessions, most recently used first; ``include_pending``: also those
        still waiting for their TOTP code."""
        query = select(LoginSession).where(LoginSession.citizen_id == citizen_id)
        if not include_pending:
            query = query.where(col(LoginSession.mfa_pending).is_(False))
        return list(db.exec(query.order_by(col(LoginSession.last_seen_at).desc())))

    # ---- passkeys (the ceremonies are in vault/auth/passkeys.py) -----------------------------------

    def list_passkeys(self, *, db: Session, citizen_id: uuid.UUID) -> list[Passkey]:
        """The citizen's passkeys, oldest first."""
        return list(db.exec(select(Passkey).where(Passkey.citizen_id == citizen_id).order_by(col(Passkey.created_at))))

    # ---- rectification, retention and erasure (driven by vault.gdpr) ------------------------------

    def rectify_identity(self, *, citizen: Citizen, changes: dict[str, str]) -> list[str]:
        """Apply the identity changes that validate (GDPR Art. 16); return the names of the fields
        that changed. Raises InvalidInput, nothing changed, when a value is refused — and for an
        identity certified by FranceConnect: it comes from the civil registry and would be replaced
        at the next login through FranceConnect (a correction goes to the civil registry)."""
        current = {f: str(getattr(citizen, f) or "") for f in IDENTITY_FIELDS}
        if citizen.identity_certified_at is not None and any(
                k in current and v != current[k] for k, v in changes.items()):
            raise InvalidInput({"identity": CERTIFIED_IDENTITY})
        merged = {**current, **{k: v for k, v in changes.items() if k in current and v is not None}}
        clean, errors = validate_identity(merged, today=self.settings.today(),
                                          known_places_only=citizen.identity_certified_at is None)
        if errors:
            raise InvalidInput(errors)
        changed = {k: v for k, v in clean.items() if str(v or "") != current[k]}
        for field, value in changed.items():
            setattr(citizen, field, value)
        citizen.updated_at = utcnow()
        return sorted(changed)

    def federated_identities(self, *, db: Session, citizen_id: uuid.UUID) -> list[dict[str, object]]:
        """The identity federations the account is linked to (FranceConnect), for the export."""
        rows = db.exec(select(FederatedIdentity).where(FederatedIdentity.citizen_id == citizen_id))
        return [{"fournisseur": r.provider, "relie_le": r.linked_at, "derniere_connexion": r.last_login_at} for r in rows]

    def get_citizen(self, *, db: Session, citizen_id: uuid.UUID | None) -> Citizen | None:
        return db.get(Citizen, citizen_id) if citizen_id is not None else None

    def notice_sent(self, citizen: Citizen, *, at: datetime) -> None:
        """The "your unused account will be deleted" mail left at ``at``."""
        citizen.retention_notice_at = at

    def unused_accounts(self, *, db: Session, inactive_before: datetime) -> list[Citizen]:
        """Accounts whose last login (or creation, for those never used) is older than the date."""
        activity = func.coalesce(Citizen.last_login_at, Citizen.created_at)
        return list(db.exec(select(Citizen).where(activity < inactive_before)))

    def forget(self, *, db: Session, citizen: Citizen) -> None:
        """Erasure's last stage for accounts: the citizen's row and what hangs on it (mailed links,
        recovery codes, login sessions, links to FranceConnect, passkeys and their pending challenges)
        and their login counters (under every name the account was throttled by). The other domains
        forget theirs first."""
        for table in (EmailToken, RecoveryCode, LoginSession, FederatedIdentity, Passkey, PasskeyChallenge):
            db.exec(delete(table).where(col(table.citizen_id) == citizen.id))
        names = {login_name(citizen), f"citizen:{citizen.id}", f"letter:{citizen.id}"}
        if citizen.login_id:
            names.add(f"login:{citizen.login_id}")
        db.exec(delete(LoginThrottle).where(col(LoginThrottle.key).in_([self._account_key(db, n) for n in names])))
        db.delete(citizen)

    def purge_expired(self, *, db: Session, now: datetime) -> dict[str, int]:
        """Retention housekeeping: mailed links and login counters idle for a day, federated logins
        that were never finished."""
        day_ago = now - timedelta(days=1)
        return {
            "mailed_links": db.exec(delete(EmailToken).where(col(EmailToken.expires_at) < day_ago)).rowcount,
            "login_counters": db.exec(delete(LoginThrottle).where(col(LoginThrottle.last_failure_at) < day_ago)).rowcount,
            "federated_logins": db.exec(delete(FederationRequest).where(col(FederationRequest.expires_at) < now)).rowcount,
        }

    # ---- TOTP (RFC 6238) and recovery codes ----------------------------------------------------

    def totp_context(self, holder: TotpHolder) -> bytes:
        return b"totp:" + holder.id.bytes

    def begin_totp(self, *, citizen: Citizen) -> tuple[str, str]:
        """Store a new (not yet active) seed, wrapped by the KEK; return (secret, otpauth URI)."""
        if citizen.totp_enabled_at is not None:
            raise InvalidInput({"otp": N_("La double authentification est déjà activée.")})
        secret = pyotp.random_base32()
        citizen.totp_secret = crypto.wrap(self.keys, secret.encode(), context=self.totp_context(citizen))
        citizen.totp_last_step = None
        return secret, self._provisioning_uri(citizen, secret)

    def pending_totp(self, *, citizen: Citizen) -> tuple[str, str] | None:
        """The seed being enrolled (to show the QR code again), or None."""
        if citizen.totp_secret is None or citizen.totp_enabled_at is not None:
            return None
        secret = self.totp_seed(citizen)
        return secret, self._provisioning_uri(citizen, secret)

    def _provisioning_uri(self, citizen: Citizen, secret: str) -> str:
        issuer = self.settings.city_name or TOTP_ISSUER_FALLBACK
        return pyotp.TOTP(secret).provisioning_uri(name=citizen.email, issuer_name=issuer)

    def confirm_totp(self, *, db: Session, citizen: Citizen, code: str) -> list[str]:
        """Activate TOTP once the citizen typed a valid code; return new recovery codes (shown once)."""
        if citizen.totp_secret is None or citizen.totp_enabled_at is not None:
            raise InvalidInput({"otp": N_("Commencez par afficher le QR code, puis saisissez le code de l'application.")})
        if not self.accept_totp(citizen=citizen, code=code, enrolling=True):
            raise InvalidInput({"otp": InvalidOtp.message})
        citizen.totp_enabled_at = utcnow()
        citizen.updated_at = utcnow()
        logger.info("totp enabled", extra={"citizen_id": str(citizen.id)})
        codes = self.regenerate_recovery_codes(db=db, citizen=citizen)
        self.notify(db=db, to=citizen.email, template="totp_enabled", citizen_id=citizen.id)
        return codes

    def disable_totp(self, *, db: Session, citizen: Citizen) -> None:
        """TOTP off and the recovery codes gone (the page asked for a recent proof); a notice by mail."""
        self._remove_totp(db=db, citizen=citizen)
        logger.info("totp disabled", extra={"citizen_id": str(citizen.id)})
        self.notify(db=db, to=citizen.email, template="totp_disabled", citizen_id=citizen.id)

    def disable_totp_at_counter(self, *, db: Session, citizen: Citizen, service: str) -> int:
        """At the town hall's counter (``service``), for a person who lost both their application and
        their recovery codes, their identity checked in person by the caller: TOTP off, the recovery
        codes gone, every session and the apps' grants ended (``logout_everywhere``); a notice by
        mail naming the counter. The person then sets a new password with "Mot de passe oublié".
        How many login sessions ended."""
        self._remove_totp(db=db, citizen=citizen)
        ended = self.logout_everywhere(db=db, citizen_id=citizen.id)
        logger.info("totp disabled at the counter", extra={"citizen_id": str(citizen.id)})
        self.notify(db=db, to=citizen.email, template="totp_disabled_at_counter", citizen_id=citizen.id,
                    service=service, at=self._local_now())
        return ended

    @staticmethod
    def _remove_totp(*, db: Session, citizen: Citizen) -> None:
        citizen.totp_secret = None
        citizen.totp_enabled_at = None
        citizen.totp_last_step = None
        citizen.updated_at = utcnow()
        db.exec(delete(RecoveryCode).where(col(RecoveryCode.citizen_id) == citizen.id))

    def regenerate_recovery_codes(self, *, db: Session, citizen: Citizen) -> list[str]:
        db.exec(delete(RecoveryCode).where(col(RecoveryCode.citizen_id) == citizen.id))
        codes = []
        for _ in range(RECOVERY_CODES):
            raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(12))
            codes.append(f"{raw[:4]}-{raw[4:8]}-{raw[8:]}")
            db.add(RecoveryCode(citizen_id=citizen.id, code_hash=_recovery_hash(raw)))
        return codes

    def remaining_recovery_codes(self, *, db: Session, citizen_id: uuid.UUID) -> int:
        return db.exec(
            select(func.count()).select_from(RecoveryCode)
            .where(RecoveryCode.citizen_id == citizen_id, col(RecoveryCode.used_at).is_(None))
        ).one()

    def totp_seed(self, holder: TotpHolder) -> str:
        assert holder.totp_secret is not None
        return crypto.unwrap(self.keys, holder.totp_secret, context=self.totp_context(holder)).decode()

    def accept_totp(self, *, citizen: TotpHolder, code: str, enrolling: bool = False) -> bool:
        """RFC 6238 with ±1 step of clock drift; a step already used is refused (no replay).
        ``citizen``: any holder of the ``totp_*`` fields (citizens and staff)."""
        digits = "".join((code or "").split())
        if citizen.totp_secret is None or (citizen.totp_enabled_at is None and not enrolling):
            return False
        if len(digits) != 6 or not digits.isdigit():
            return False
        totp = pyotp.TOTP(self.totp_seed(citizen))
        now_step = totp.timecode(datetime.now(UTC))
        for step in (now_step - 1, now_step, now_step + 1):
            if secrets.compare_digest(totp.generate_otp(step), digits):
                if citizen.totp_last_step is not None and step <= citizen.totp_last_step:
                    return False
                citizen.totp_last_step = step
                return True
        return False

    def _use_recovery_code(self, *, db: Session, citizen: Citizen, code: str) -> bool:
        raw = "".join(ch for ch in (code or "").lower() if ch.isalnum())
        if len(raw) != 12:
            return False
        result = db.exec(
            update(RecoveryCode)
            .where(col(RecoveryCode.citizen_id) == citizen.id, col(RecoveryCode.code_hash) == _recovery_hash(raw),
                   col(RecoveryCode.used_at).is_(None))
            .values(used_at=utcnow())
        )
        if result.rowcount == 1:
            logger.info("recovery code used", extra={"citizen_id": str(citizen.id)})
            return True
        return False

    def wrapped_columns(self) -> list[WrappedColumn]:
        """What this service stores wrapped by the KEK (``vault keys kek rewrap``): TOTP seeds."""
        return [WrappedColumn("citizen TOTP seeds", Citizen.id, Citizen.totp_secret,  # type: ignore[arg-type]
                              context=lambda citizen_id: b"totp:" + citizen_id.bytes)]

    # ---- queries for the operator CLI ------------------------------------------------------------

    def list_citizens(self, *, db: Session, limit: int = 100, offset: int = 0) -> list[Citizen]:
        return list(db.exec(select(Citizen).order_by(col(Citizen.created_at)).offset(offset).limit(limit)))


def _sqlite_writing(db: Session) -> bool:
    """Whether the request's SQLite connection has begun writing (holds the database's write lock)."""
    return bool(getattr(db.connection().connection.dbapi_connection, "in_transaction", False))


def _recovery_hash(raw: str) -> str:
    return hashlib.sha256(b"recovery:" + raw.encode()).hexdigest()
