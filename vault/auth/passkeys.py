"""Passkeys (WebAuthn Level 2/3, with py_webauthn): adding one from "Mon compte", logging in with one.

The relying party is the issuer: RP ID = the issuer's host, origin = the issuer's origin (scheme,
host, port). Challenges are single use, valid five minutes, kept in the database (every replica
sees them) and consumed atomically before the answer is checked, so that a failed answer burns its
challenge too. A passkey login is throttled like a password login (same counters).

amr (RFC 8176): ``swk`` for a backup-eligible credential (a synced, multi-device passkey: the key
is copied between devices by the passkey provider, so it is not bound to one piece of hardware),
``hwk`` otherwise (a device-bound credential: a security key, a phone's or computer's secure
element). The decision uses the BE flag of the authenticator data, which the authenticator signs,
not the authenticator attachment, which the browser reports unsigned. With user verification (PIN,
fingerprint, face) ``user`` and ``mfa`` follow: something held and something known or been.
No HTTP here: the routes are in ``vault/auth/passkey_routes.py``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete
from sqlmodel import Session, col, select
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, parse_client_data_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.parse_authentication_credential_json import parse_authentication_credential_json
from webauthn.helpers.parse_registration_credential_json import parse_registration_credential_json
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from vault import metrics
from vault.auth.exceptions import AuthError, EmailNotVerified, InvalidInput, InvalidOtp, TooManyLoginAttempts
from vault.auth.identity import login_name, normalize_email
from vault.auth.models import Citizen, LoginSession, Passkey, PasskeyChallenge
from vault.auth.service import AccountService, CurrentLogin, LoginResult
from vault.db import utcnow
from vault.settings import Settings
from vault.translation import N_

logger = logging.getLogger(__name__)

CHALLENGE_MINUTES = 5
MAX_PASSKEYS = 20
NAME_MAX = 60


class PasskeyRefused(AuthError):
    """A WebAuthn answer that is not accepted; ``reason`` (a fixed word) goes to the log."""

    code, status = "passkey_refused", 400
    message = N_("La clé d'accès n'a pas pu être vérifiée. Recommencez, ou connectez-vous avec votre mot de passe.")

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or self.message)
        self.reason = reason


CHALLENGE_EXPIRED = N_("Cette demande a expiré ou a déjà servi. Recommencez.")
UNKNOWN_PASSKEY = N_("Cette clé d'accès n'est pas (ou plus) enregistrée sur votre compte. "
                     "Connectez-vous avec votre adresse e-mail et votre mot de passe.")
NOT_THIS_ACCOUNT = N_("Cette clé d'accès n'appartient pas au compte indiqué.")
NOT_YOUR_PASSKEY = N_("Cette clé d'accès n'appartient pas au compte connecté. Utilisez une clé d'accès de ce compte, "
                      "ou votre mot de passe.")
COUNTER_WENT_BACK = N_("Cette clé d'accès semble avoir été copiée : par sécurité, elle est refusée. Connectez-vous "
                       "avec votre mot de passe, puis supprimez-la de votre compte.")
NOT_REGISTERED = N_("La clé d'accès n'a pas pu être enregistrée. Recommencez.")
ALREADY_REGISTERED = N_("Cette clé d'accès est déjà enregistrée.")


@dataclass(frozen=True)
class RelyingParty:
    rp_id: str  # the issuer's host
    origin: str  # the issuer's origin
    name: str

    @classmethod
    def of(cls, settings: Settings) -> RelyingParty:
        parts = urlsplit(settings.issuer)
        return cls(rp_id=parts.hostname or "", origin=f"{parts.scheme}://{parts.netloc}",
                   name=settings.city_name or "Citizen Vault")

    @property
    def usable(self) -> bool:
        """Browsers refuse an IP address as RP ID: passkeys need a host name (``localhost`` included)."""
        try:
            ipaddress.ip_address(self.rp_id)
        except ValueError:
            return bool(self.rp_id)
        return False


def challenge_key(challenge: bytes) -> str:
    return hashlib.sha256(challenge).hexdigest()


def amr_of(passkey: Passkey, *, user_verified: bool) -> str:
    """RFC 8176 values for a login with ``passkey`` (see the module's docstring)."""
    methods = ["swk" if passkey.backup_eligible else "hwk"]
    if user_verified:
        methods += ["user", "mfa"]
    return " ".join(methods)


def _transports(value: str) -> list[AuthenticatorTransport]:
    known = {t.value for t in AuthenticatorTransport}
    return [AuthenticatorTransport(t) for t in value.split() if t in known]


def _failure_reason(exc: Exception) -> str:
    """A fixed word for the log from py_webauthn's message (which may quote what the browser sent)."""
    text = str(exc)
    for start, reason in (("Unexpected client data origin", "wrong_origin"), ("Unexpected RP ID hash", "wrong_rp_id"),
                          ("Client data challenge", "wrong_challenge"), ("Could not verify", "bad_signature"),
                          ("Unexpected client data type", "wrong_type"), ("User was not present", "no_user_presence")):
        if text.startswith(start):
            return reason
    return "invalid_response"


class PasskeyService:
    """The two WebAuthn ceremonies. Holds configuration only; every method takes the DB session."""

    def __init__(self, *, settings: Settings, accounts: AccountService) -> None:
        self.settings = settings
        self.accounts = accounts
        self.rp = RelyingParty.of(settings)

    # ---- challenges ---------------------------------------------------------------------------

    def _store_challenge(self, *, db: Session, challenge: bytes, purpose: str, citizen_id: uuid.UUID | None = None,
                         login_session_id: str | None = None, name: str | None = None) -> None:
        now = utcnow()
        db.exec(delete(PasskeyChallenge).where(col(PasskeyChallenge.expires_at) < now))  # housekeeping
        db.add(PasskeyChallenge(id=challenge_key(challenge), purpose=purpose, citizen_id=citizen_id,
                                login_session_id=login_session_id, name=name, created_at=now,
                                expires_at=now + timedelta(minutes=CHALLENGE_MINUTES)))

    def _consume_challenge(self, *, db: Session, client_data_json: bytes, purpose: str) -> tuple[bytes, PasskeyChallenge]:
        """The challenge the browser signed, taken out of the database: one request only ever gets
        it (the row is deleted by a conditional DELETE). Unknown, used, expired or of another
        ceremony: PasskeyRefused."""
        try:
            challenge = parse_client_data_json(client_data_json).challenge
        except (WebAuthnException, ValueError, TypeError):
            raise PasskeyRefused("malformed") from None
        row = db.get(PasskeyChallenge, challenge_key(challenge))
        if row is None or row.purpose != purpose:
            raise PasskeyRefused("unknown_challenge", CHALLENGE_EXPIRED)
        taken = db.exec(delete(PasskeyChallenge).where(col(PasskeyChallenge.id) == row.id,
                                                       col(PasskeyChallenge.purpose) == purpose))
        if taken.rowcount != 1:
            raise PasskeyRefused("replayed_challenge", CHALLENGE_EXPIRED)
        if row.expires_at <= utcnow():
            raise PasskeyRefused("expired_challenge", CHALLENGE_EXPIRED)
        return challenge, row

    # ---- the fresh proof asked before adding or removing a passkey ------------------------------

    def check_proof(self, *, db: Session, citizen: Citizen, password: str, otp: str, address: str) -> None:
        """The password, and the TOTP code when TOTP is on, checked now (not remembered from an
        earlier step). Failures count in the login throttle. Raises InvalidInput or TooManyLoginAttempts."""
        keys = [self.accounts._account_key(db, login_name(citizen)), self.accounts._address_key(address)]
        if retry_after := self.accounts._locked_for(db=db, keys=keys):
            raise TooManyLoginAttempts(retry_after)
        errors: dict[str, str] = {}
        if not self.accounts.hasher.verify(citizen.password_hash, password or ""):
            errors["password"] = N_("Mot de passe incorrect.")
        elif citizen.totp_enabled_at is not None and not self.accounts.accept_totp(citizen=citizen, code=otp):
            errors["otp"] = InvalidOtp.message
        if errors:
            self.accounts.record_login_failure(db=db, email=login_name(citizen), address=address)
            logger.info("passkey change refused", extra={"citizen_id": str(citizen.id), "reason": "bad_proof"})
            raise InvalidInput(errors)

    # ---- registration --------------------------------------------------------------------------

    def registration_options(self, *, db: Session, citizen: Citizen, login_session: LoginSession, name: str,
                             password: str, otp: str, address: str) -> str:
        """Check the name and the fresh proof, then return the options for
        ``navigator.credentials.create()`` (JSON) and keep their challenge for five minutes."""
        name = " ".join((name or "").split())
        if not name:
            raise InvalidInput({"name": N_("Donnez un nom à cette clé d'accès, par exemple « Téléphone de Marie ».")})
        if len(name) > NAME_MAX:
            raise InvalidInput({"name": N_("Le nom ne doit pas dépasser 60 caractères.")})
        existing = self.accounts.list_passkeys(db=db, citizen_id=citizen.id)
        if len(existing) >= MAX_PASSKEYS:
            raise InvalidInput({"name": N_("Vous avez déjà 20 clés d'accès : supprimez-en une avant d'en ajouter une autre.")})
        self.check_proof(db=db, citizen=citizen, password=password, otp=otp, address=address)
        options = generate_registration_options(
            rp_id=self.rp.rp_id, rp_name=self.rp.name,
            user_id=citizen.id.bytes, user_name=login_name(citizen),
            user_display_name=f"{citizen.given_name.split(' ')[0]} {citizen.family_name}",
            timeout=CHALLENGE_MINUTES * 60 * 1000,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.PREFERRED),
            exclude_credentials=[self._descriptor(p) for p in existing],
        )
        self._store_challenge(db=db, challenge=options.challenge, purpose="register", citizen_id=citizen.id,
                              login_session_id=login_session.id, name=name)
        return options_to_json(options)

    @staticmethod
    def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
        return PublicKeyCredentialDescriptor(id=base64url_to_bytes(passkey.credential_id),
                                             transports=_transports(passkey.transports) or None)

    def register(self, *, db: Session, citizen: Citizen, login_session: LoginSession, credential: Any) -> Passkey:
        """Check the browser's answer to the registration options and keep the new passkey."""
        try:
            parsed = self._parse(credential, parse_registration_credential_json)
            assert isinstance(parsed, RegistrationCredential)
            challenge, row = self._consume_challenge(db=db, client_data_json=parsed.response.client_data_json,
                                                     purpose="register")
            if row.citizen_id != citizen.id or row.login_session_id != login_session.id:
                raise PasskeyRefused("challenge_of_another_session", CHALLENGE_EXPIRED)
            try:
                verified = verify_registration_response(credential=parsed, expected_challenge=challenge,
                                                        expected_rp_id=self.rp.rp_id, expected_origin=self.rp.origin)
            except WebAuthnException as exc:
                raise PasskeyRefused(_failure_reason(exc), NOT_REGISTERED) from None
            credential_id = bytes_to_base64url(verified.credential_id)
            if db.exec(select(Passkey.id).where(Passkey.credential_id == credential_id)).first() is not None:
                raise PasskeyRefused("already_registered", ALREADY_REGISTERED)
        except PasskeyRefused as exc:
            logger.warning("passkey registration refused", extra={"citizen_id": str(citizen.id), "reason": exc.reason})
            raise
        transports = " ".join(t.value for t in (parsed.response.transports or []))
        passkey = Passkey(
            citizen_id=citizen.id, credential_id=credential_id, public_key=verified.credential_public_key,
            sign_count=verified.sign_count, name=row.name or "?",
            backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
            backed_up=verified.credential_backed_up,
            attachment=parsed.authenticator_attachment.value if parsed.authenticator_attachment else None,
            transports=transports[:100], aaguid=verified.aaguid,
        )
        db.add(passkey)
        db.flush()
        logger.info("passkey added", extra={"citizen_id": str(citizen.id), "passkey_id": str(passkey.id),
                                            "backup_eligible": passkey.backup_eligible})
        return passkey

    def remove(self, *, db: Session, citizen: Citizen, passkey_id: uuid.UUID, password: str, otp: str,
               address: str) -> Passkey:
        """Remove one of the citizen's passkeys after the fresh proof. Another citizen's: InvalidInput."""
        passkey = self.get(db=db, citizen=citizen, passkey_id=passkey_id)
        self.check_proof(db=db, citizen=citizen, password=password, otp=otp, address=address)
        db.delete(passkey)
        logger.info("passkey removed", extra={"citizen_id": str(citizen.id), "passkey_id": str(passkey.id)})
        return passkey

    def get(self, *, db: Session, citizen: Citizen, passkey_id: uuid.UUID) -> Passkey:
        passkey = db.get(Passkey, passkey_id)
        if passkey is None or passkey.citizen_id != citizen.id:
            raise PasskeyNotFound()
        return passkey

    # ---- login ----------------------------------------------------------------------------------

    def login_options(self, *, db: Session) -> str:
        """Options for ``navigator.credentials.get()`` (JSON): discoverable credentials, so no list of
        credentials and nothing said about any account."""
        options = generate_authentication_options(rp_id=self.rp.rp_id, timeout=CHALLENGE_MINUTES * 60 * 1000,
                                                  user_verification=UserVerificationRequirement.PREFERRED)
        self._store_challenge(db=db, challenge=options.challenge, purpose="login")
        return options_to_json(options)

    def login(self, *, db: Session, credential: Any, email: str, address: str, user_agent: str) -> LoginResult:
        """Check a login answer and open a session. ``email``: the address typed on the login page,
        if any (the passkey must then be that account's). Every refusal is logged with its reason
        and counted in the login throttle, like a wrong password."""
        try:
            citizen, passkey, amr = self._check_answer(db=db, credential=credential, email=email, address=address)
        except TooManyLoginAttempts:
            metrics.logins.labels(method="passkey", outcome="throttled").inc()
            raise
        except (AuthError, EmailNotVerified) as exc:
            outcome = "email_not_verified" if isinstance(exc, EmailNotVerified) else "bad_credentials"
            metrics.logins.labels(method="passkey", outcome=outcome).inc()
            raise
        metrics.logins.labels(method="passkey", outcome="success").inc()
        token = self.accounts.start_session(db=db, citizen=citizen, amr=amr, user_agent=user_agent)
        logger.info("login", extra={"citizen_id": str(citizen.id), "amr": amr, "passkey_id": str(passkey.id)})
        return LoginResult(token=token, mfa_pending=False, citizen_id=citizen.id)

    def confirm(self, *, db: Session, current: CurrentLogin, credential: Any, address: str) -> None:
        """The confirmation page (step-up) with a passkey: an answer to a login challenge by one of
        the logged-in citizen's passkeys steps the session up. Refusals as for a login."""
        citizen, passkey, _amr = self._check_answer(db=db, credential=credential, email="", address=address,
                                                    citizen_id=current.citizen.id)
        self.accounts.stepped_up(current)
        logger.info("step-up", extra={"citizen_id": str(citizen.id), "proof": "passkey", "passkey_id": str(passkey.id)})

    def _check_answer(self, *, db: Session, credential: Any, email: str, address: str,
                      citizen_id: uuid.UUID | None = None) -> tuple[Citizen, Passkey, str]:
        """A login challenge's answer checked: its citizen (who must be ``citizen_id`` when given),
        the passkey (its counter and last use updated) and the amr it is worth."""
        address_key = self.accounts._address_key(address)
        if retry_after := self.accounts._locked_for(db=db, keys=[address_key]):
            raise TooManyLoginAttempts(retry_after)
        passkey: Passkey | None = None
        citizen: Citizen | None = None
        try:
            parsed = self._parse(credential, parse_authentication_credential_json)
            assert isinstance(parsed, AuthenticationCredential)
            challenge, _ = self._consume_challenge(db=db, client_data_json=parsed.response.client_data_json,
                                                   purpose="login")
            passkey = db.exec(select(Passkey).where(Passkey.credential_id == parsed.id)).first()
            if passkey is None:
                raise PasskeyRefused("unknown_credential", UNKNOWN_PASSKEY)
            citizen = db.get(Citizen, passkey.citizen_id)
            assert citizen is not None  # cascade: a passkey never outlives its citizen
            handle = parsed.response.user_handle
            if handle is not None and handle != citizen.id.bytes:
                raise PasskeyRefused("user_handle_of_another_citizen", NOT_THIS_ACCOUNT)
            if email.strip() and _normalized(email) != citizen.email:
                raise PasskeyRefused("not_the_typed_account", NOT_THIS_ACCOUNT)
            if citizen_id is not None and citizen.id != citizen_id:
                raise PasskeyRefused("not_the_logged_in_account", NOT_YOUR_PASSKEY)
            if retry_after := self.accounts._locked_for(db=db, keys=[self.accounts._account_key(db, login_name(citizen))]):
                raise TooManyLoginAttempts(retry_after)
            try:
                # The counter is compared below, once the signature is known good.
                verified = verify_authentication_response(
                    credential=parsed, expected_challenge=challenge, expected_rp_id=self.rp.rp_id,
                    expected_origin=self.rp.origin, credential_public_key=passkey.public_key,
                    credential_current_sign_count=0)
            except WebAuthnException as exc:
                raise PasskeyRefused(_failure_reason(exc)) from None
            if (verified.new_sign_count or passkey.sign_count) and verified.new_sign_count <= passkey.sign_count:
                logger.warning("passkey sign counter did not increase: possibly a cloned authenticator",
                               extra={"citizen_id": str(citizen.id), "passkey_id": str(passkey.id),
                                      "stored_count": passkey.sign_count, "received_count": verified.new_sign_count})
                raise PasskeyRefused("counter_went_back", COUNTER_WENT_BACK)
            backup_eligible = verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE
            if backup_eligible != passkey.backup_eligible:  # WebAuthn §6.1.3: BE never changes
                raise PasskeyRefused("backup_eligibility_changed")
        except PasskeyRefused as exc:
            logger.warning("passkey login refused", extra={
                "reason": exc.reason, "citizen_id": str(citizen.id) if citizen else None,
                "passkey_id": str(passkey.id) if passkey else None})
            if citizen is not None:
                self.accounts.record_login_failure(db=db, email=login_name(citizen), address=address)
            else:
                self.accounts.record_address_failure(db=db, address=address)
            raise
        if citizen.email_verified_at is None:
            raise EmailNotVerified()
        passkey.sign_count = verified.new_sign_count
        passkey.backed_up = verified.credential_backed_up
        passkey.last_used_at = utcnow()
        return citizen, passkey, amr_of(passkey, user_verified=verified.user_verified)

    @staticmethod
    def _parse(credential: Any, parse: Any) -> RegistrationCredential | AuthenticationCredential:
        """py_webauthn's structure from the browser's JSON (a dict or a string); PasskeyRefused if malformed."""
        try:
            if isinstance(credential, str):
                credential = json.loads(credential)
            if not isinstance(credential, dict):
                raise PasskeyRefused("malformed")
            parsed: RegistrationCredential | AuthenticationCredential = parse(credential)
        except (WebAuthnException, ValueError, TypeError, KeyError):
            raise PasskeyRefused("malformed") from None
        return parsed


class PasskeyNotFound(AuthError):
    code, status = "not_found", 404
    message = N_("Cette clé d'accès n'existe pas ou a déjà été supprimée.")


def _normalized(email: str) -> str:
    try:
        return normalize_email(email)
    except ValueError:
        return email.strip().lower()

