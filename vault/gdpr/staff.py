"""Staff accounts (the DPO, administrators): password + TOTP always, and a fresh re-authentication
(less than 5 minutes old) before an export or an erasure."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import pyotp
from sqlmodel import Session, col, select

from vault import crypto
from vault.auth.exceptions import InvalidCredentials, InvalidInput
from vault.auth.identity import normalize_email
from vault.auth.passwords import password_problem
from vault.auth.service import AccountService
from vault.crypto.rotation import WrappedColumn
from vault.crypto.tokens import new_token, token_hash
from vault.db import utcnow
from vault.gdpr import audit
from vault.gdpr.models import StaffAccount, StaffSession

logger = logging.getLogger(__name__)

REAUTH_WINDOW = timedelta(minutes=5)
ROLES = ("dpo", "admin", "agent")  # the DPO, administrators, counter agents
# What each role may do: the DPO runs the GDPR register, exports, erasures and legal holds;
# administrators manage staff accounts, apps (clients) and see the statistics; agents work at the counter.
ROLE_NAMES = {"dpo": "the DPO", "admin": "an administrator", "agent": "a counter agent"}


@dataclass(frozen=True)
class StaffCurrent:
    staff_session: StaffSession
    staff: StaffAccount
    token: str

    @property
    def recently_reauthenticated(self) -> bool:
        at = self.staff_session.reauth_at
        return at is not None and utcnow() - at <= REAUTH_WINDOW


class StaffLogoutListener(Protocol):
    """What ends with a staff session when its holder logs out (the counter's assisted sessions, a
    floor above, supplied by the composition root)."""

    def staff_session_ending(self, db: Session, staff_session_id: str) -> None: ...


class StaffService:
    """Reuses the citizens' hasher, TOTP checks and throttling; sessions are separate."""

    def __init__(self, accounts: AccountService) -> None:
        self.accounts = accounts
        self.logout_listeners: list[StaffLogoutListener] = []

    def wrapped_columns(self) -> list[WrappedColumn]:
        """What this service stores wrapped by the KEK (``vault keys kek rewrap``): staff TOTP seeds."""
        return [WrappedColumn("staff TOTP seeds", StaffAccount.id, StaffAccount.totp_secret,  # type: ignore[arg-type]
                              context=lambda staff_id: b"totp:" + staff_id.bytes)]

    def create(self, db: Session, *, email: str, name: str, role: str, password: str,
               service: str = "") -> tuple[StaffAccount, str, str]:
        """Create a staff account with TOTP already on; return it, the TOTP secret and its otpauth URI.
        A counter agent belongs to a service (the counter mandates are granted to)."""
        errors: dict[str, str] = {}
        service = " ".join(service.split())
        if role == "agent" and not service:
            errors["service"] = "required for an agent: the counter the agent works at (mandates name it)"
        elif role != "agent" and service:
            errors["service"] = "only an agent belongs to a counter service"
        elif len(service) > 200:
            errors["service"] = "at most 200 characters"
        try:
            email = normalize_email(email)
        except ValueError as exc:
            errors["email"] = str(exc)
        if role not in ROLES:
            errors["role"] = f"one of {', '.join(ROLES)}"
        if not name.strip():
            errors["name"] = "required"
        if problem := password_problem(password, email=email):
            errors["password"] = problem
        if not errors.get("email") and db.exec(select(StaffAccount.id).where(StaffAccount.email == email)).first():
            errors["email"] = "Un compte existe déjà avec cette adresse."
        if errors:
            raise InvalidInput(errors)
        staff = StaffAccount(email=email, name=name.strip()[:200], role=role, service=service or None,
                             password_hash=self.accounts.hasher.hash(password), totp_enabled_at=utcnow())
        secret = pyotp.random_base32()
        staff.totp_secret = crypto.wrap(self.accounts.keys, secret.encode(), context=self.accounts.totp_context(staff))
        db.add(staff)
        db.flush()
        space = "guichet" if role == "agent" else "DPO"
        uri = pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=f"{self.accounts.settings.city_name} ({space})")
        logger.info("staff account created", extra={"staff_id": str(staff.id), "role": role})
        return staff, secret, uri

    def has_active(self, db: Session, *, role: str) -> bool:
        """Whether any active staff member holds ``role``."""
        return db.exec(select(StaffAccount.id).where(StaffAccount.role == role,
                                                     col(StaffAccount.disabled_at).is_(None))).first() is not None

    def acting(self, db: Session, *, email: str, role: str) -> StaffAccount:
        """The staff member an operator's command acts as (``--as``): an active account of ``role``;
        InvalidInput otherwise (the DPO's commands are the DPO's, the administrators' theirs)."""
        try:
            normalized = normalize_email(email)
        except ValueError as exc:
            raise InvalidInput({"as": str(exc)}) from None
        staff = db.exec(select(StaffAccount).where(StaffAccount.email == normalized)).first()
        if staff is None or staff.disabled_at is not None:
            raise InvalidInput({"as": "no active staff account with this email (see `vault staff create`)"})
        if staff.role != role:
            raise InvalidInput({"as": f"this staff member is {ROLE_NAMES[staff.role]}: the command is for "
                                      f"{ROLE_NAMES[role]}"})
        return staff

    def login(self, db: Session, *, email: str, password: str, otp: str, address: str) -> str:
        """Password and TOTP in one step (staff have no way around the second factor). Each try is
        counted before it is checked (``begin_attempt``: concurrent tries get no more checks than
        the free failures), and taken back when it was right; while the account or the client
        address is locked, TooManyLoginAttempts whatever was typed."""
        try:
            normalized = normalize_email(email)
        except ValueError:
            normalized = (email or "").strip().lower()[:254]
        attempt = self.accounts.begin_attempt(db=db, name="staff:" + normalized, address=address)
        staff = db.exec(select(StaffAccount).where(StaffAccount.email == normalized)).first() if normalized else None
        ok = self.accounts.verify_counted(db=db, attempt=attempt, stored_hash=staff.password_hash if staff else None,
                                          password=password)
        if not ok or staff is None or staff.disabled_at is not None or not self.accounts.accept_totp(citizen=staff, code=otp):
            raise InvalidCredentials("Adresse e-mail, mot de passe ou code incorrect.")  # the try stays counted
        self.accounts.attempt_passed(db=db, attempt=attempt)
        return self.open_session(db, staff, how="password otp")

    def open_session(self, db: Session, staff: StaffAccount, *, how: str) -> str:
        """A staff session once both factors were checked (here, or password + TOTP by ProConnect)."""
        token, digest = new_token()
        now = utcnow()
        db.add(StaffSession(id=digest, staff_id=staff.id, created_at=now, last_seen_at=now, mfa_done=True, reauth_at=now))
        audit.record(db, actor=f"staff:{staff.id}", action="staff.login", details={"how": how})
        logger.info("staff login", extra={"staff_id": str(staff.id), "how": how})
        return token

    def resolve(self, db: Session, token: str | None) -> StaffCurrent | None:
        if not token or len(token) > 200:
            return None
        staff_session = db.get(StaffSession, token_hash(token))
        if staff_session is None or not staff_session.mfa_done:
            return None
        now = utcnow()
        settings = self.accounts.settings
        if (now - staff_session.last_seen_at > timedelta(minutes=settings.session_idle_minutes)
                or now - staff_session.created_at > timedelta(hours=settings.session_absolute_hours)):
            db.delete(staff_session)
            return None
        staff = db.get(StaffAccount, staff_session.staff_id)
        if staff is None or staff.disabled_at is not None:
            return None
        staff_session.last_seen_at = now
        return StaffCurrent(staff_session=staff_session, staff=staff, token=token)

    def reauthenticate(self, db: Session, current: StaffCurrent, *, password: str, otp: str, address: str) -> None:
        staff = current.staff
        # The same throttle as the login: a stolen staff session must not become a way to guess
        # the password and the TOTP code without limit.
        attempt = self.accounts.begin_attempt(db=db, name="staff:" + staff.email, address=address)
        if not (self.accounts.verify_counted(db=db, attempt=attempt, stored_hash=staff.password_hash, password=password)
                and self.accounts.accept_totp(citizen=staff, code=otp)):
            raise InvalidCredentials("Mot de passe ou code incorrect.")  # the try stays counted
        self.accounts.attempt_passed(db=db, attempt=attempt)
        current.staff_session.reauth_at = utcnow()
        audit.record(db, actor=f"staff:{staff.id}", action="staff.reauthenticated")

    def logout(self, db: Session, token: str | None) -> None:
        if token and len(token) <= 200 and (staff_session := db.get(StaffSession, token_hash(token))) is not None:
            for listener in self.logout_listeners:
                listener.staff_session_ending(db, staff_session.id)
            db.flush()  # their journal lines first: the staff session's rows go with it
            db.delete(staff_session)
