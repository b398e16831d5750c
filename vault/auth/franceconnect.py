""""S'identifier avec FranceConnect": a citizen logs in (or opens an account) with the identity the
state vouches for.

- A first login creates an account from FranceConnect's pivot identity — unless an account already
  uses that email: then it is linked only after the citizen proves it is theirs (its password, and
  its TOTP code when two-factor login is on).
- The identity is then **certified**: refreshed from FranceConnect at each login through it, not
  editable by the citizen. The ID tokens this provider issues say so (``identity_certified``) and
  how the citizen logged in (``amr``: ``fc``).
- Logging out here logs out at FranceConnect too (its ``end_session_endpoint``), then comes back.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from vault.auth.exceptions import InvalidInput
from vault.auth.federation import (
    FederatedLogin,
    FederationClient,
    FederationError,
    FederationRequests,
    IdentityProvider,
)
from vault.auth.identity import normalize_email, validate_identity
from vault.auth.models import IDENTITY_FIELDS, Citizen, FederatedIdentity, LoginSession
from vault.auth.service import AccountService
from vault.db import utcnow
from vault.settings import Settings
from vault.translation import N_

logger = logging.getLogger(__name__)

PROVIDER = "franceconnect"
SCOPE = "openid given_name family_name birthdate gender birthplace birthcountry email preferred_username"
CANCELLED = N_("Vous avez annulé la connexion avec FranceConnect. Rien n'a été créé ni relié.")


@dataclass(frozen=True)
class LoggedIn:
    token: str  # the new session's cookie
    next: str


@dataclass(frozen=True)
class NeedLink:
    """An account already uses FranceConnect's email: the citizen proves it is theirs first."""

    cookie: str  # names the waiting link (its row is keyed by the hash)
    email: str


def provider_of(settings: Settings) -> IdentityProvider | None:
    if not (settings.franceconnect_issuer and settings.franceconnect_client_id and settings.franceconnect_client_secret):
        return None
    return IdentityProvider(name=PROVIDER, label="FranceConnect", issuer=settings.franceconnect_issuer,
                            client_id=settings.franceconnect_client_id,
                            client_secret=settings.franceconnect_client_secret.get_secret_value(),
                            scope=SCOPE, acr_values="eidas1")


class FranceConnectLogin:
    def __init__(self, *, settings: Settings, accounts: AccountService) -> None:
        self.settings = settings
        self.accounts = accounts
        provider = provider_of(settings)
        self.client = FederationClient(provider) if provider else None
        self.requests = FederationRequests(PROVIDER)

    @property
    def enabled(self) -> bool:
        return self.client is not None

    @property
    def redirect_uri(self) -> str:
        return f"{self.settings.issuer}/login/franceconnect/callback"

    @property
    def logged_out_uri(self) -> str:
        return f"{self.settings.issuer}/logout/franceconnect/callback"

    def _client(self) -> FederationClient:
        if self.client is None:
            raise FederationError("FranceConnect is not configured")
        return self.client

    # ---- login ------------------------------------------------------------------------------------

    def begin(self, db: Session, *, next_path: str) -> str:
        """The URL of FranceConnect's authorization endpoint for a new login."""
        nonce = secrets.token_urlsafe(32)
        state = self.requests.new(db, purpose="login", nonce=nonce, next=next_path)
        return self._client().authorization_url(state=state, nonce=nonce, redirect_uri=self.redirect_uri)

    def complete(self, db: Session, *, params: dict[str, str], user_agent: str) -> LoggedIn | NeedLink:
        """FranceConnect's callback: a session, or the step that links an existing account."""
        row = self.requests.consume(db, params.get("state"), "login")
        if error := params.get("error"):
            message = CANCELLED if error == "access_denied" else None
            raise FederationError(f"FranceConnect answered {error[:40]}", message=message)
        code = params.get("code")
        if not code:
            raise FederationError("callback without code")
        assert row.nonce is not None
        login = self._client().complete(code=code, redirect_uri=self.redirect_uri, nonce=row.nonce,
                                        iss=params.get("iss"))
        identity, email = self._pivot(login)
        link = db.get(FederatedIdentity, (PROVIDER, login.subject))
        citizen = db.get(Citizen, link.citizen_id) if link else None
        if link is not None and citizen is not None:
            link.last_login_at = utcnow()
            return LoggedIn(token=self._log_in(db, citizen, identity, login, user_agent), next=row.next)
        existing = db.exec(select(Citizen).where(Citizen.email == email)).first() if email else None
        if existing is not None:
            waiting = {k: str(v or "") for k, v in identity.items()}  # validated again when linked
            cookie = self.requests.new(db, purpose="link", subject=login.subject, account_id=existing.id,
                                       claims=waiting, id_token=login.id_token, amr=" ".join(login.amr), next=row.next)
            logger.info("franceconnect login waits for the account's proof", extra={"citizen_id": str(existing.id)})
            return NeedLink(cookie=cookie, email=existing.email or email)
        citizen = self._create(db, identity, email)
        db.add(FederatedIdentity(provider=PROVIDER, subject=login.subject, citizen_id=citizen.id,
                                 last_login_at=utcnow()))
        logger.info("account opened through franceconnect", extra={"citizen_id": str(citizen.id)})
        return LoggedIn(token=self._log_in(db, citizen, identity, login, user_agent), next=row.next)

    def pending_link_email(self, db: Session, cookie: str | None) -> str | None:
        row = self.requests.find(db, cookie, "link")
        if row is None or row.account_id is None:
            return None
        citizen = db.get(Citizen, row.account_id)
        return citizen.email if citizen else None

    def link(self, db: Session, *, cookie: str | None, password: str, otp: str, address: str,
             user_agent: str) -> LoggedIn:
        """The citizen proved the existing account is theirs: link it, certify it, log in. A wrong
        password or code counts like a failed login (the caller commits); the request stays."""
        row = self.requests.find(db, cookie, "link")
        if row is None or row.account_id is None:
            raise FederationError("unknown or expired link step")
        citizen = db.get(Citizen, row.account_id)
        if citizen is None:
            raise FederationError("the account to link is gone")
        self.accounts.check_credentials(db=db, citizen=citizen, password=password, otp=otp, address=address)
        db.delete(row)
        identity, errors = validate_identity(dict(row.claims or {}), today=self.settings.today(),
                                             known_places_only=False)
        if errors:
            raise FederationError("the identity waiting to be linked no longer validates")
        db.add(FederatedIdentity(provider=PROVIDER, subject=row.subject or "", citizen_id=citizen.id,
                                 last_login_at=utcnow()))
        login = FederatedLogin(subject=row.subject or "", claims={}, id_token=row.id_token or "", amr=row.amr.split())
        logger.info("account linked to franceconnect", extra={"citizen_id": str(citizen.id)})
        return LoggedIn(token=self._log_in(db, citizen, dict(identity), login, user_agent), next=row.next)

    def _pivot(self, login: FederatedLogin) -> tuple[dict[str, Any], str]:
        """FranceConnect's pivot identity as an account's identity (validated like any), and its email."""
        claims = login.claims
        form = {name: str(claims.get(name) or "") for name in IDENTITY_FIELDS}
        if form["birthcountry"] != "99100":
            form["birthplace"] = ""  # FranceConnect: empty when born abroad
        identity, errors = validate_identity(form, today=self.settings.today(), known_places_only=False)
        if errors:
            raise FederationError(f"FranceConnect identity refused: {', '.join(sorted(errors))}")
        try:
            email = normalize_email(str(claims.get("email") or ""))
        except ValueError:
            email = ""
        if not email:
            raise FederationError("FranceConnect gave no usable email")
        return dict(identity), email

    def _create(self, db: Session, identity: dict[str, Any], email: str) -> Citizen:
        """A new account from the pivot identity: its email as FranceConnect gives it (the identity
        provider's), verified; a password nobody knows (the citizen may set one: "Mot de passe oublié")."""
        form = {**{k: str(v) for k, v in identity.items()}, "email": email, "password": secrets.token_urlsafe(32)}
        try:
            return self.accounts.create_citizen(db=db, form=form, verified=True)
        except InvalidInput as exc:
            raise FederationError(f"account not created: {', '.join(sorted(exc.fields))}") from None

    def _log_in(self, db: Session, citizen: Citizen, identity: dict[str, Any], login: FederatedLogin,
                user_agent: str) -> str:
        for name, value in identity.items():  # certified: FranceConnect's word replaces the citizen's
            setattr(citizen, name, value)
        now = utcnow()
        citizen.identity_source, citizen.identity_certified_at = PROVIDER, now
        citizen.updated_at = citizen.last_login_at = now
        amr = "fc" + (" mfa" if "mfa" in login.amr else "")
        return self.accounts.open_session(db=db, citizen=citizen, amr=amr, user_agent=user_agent,
                                          federation=PROVIDER, federation_id_token=login.id_token)

    # ---- logout -----------------------------------------------------------------------------------

    def logout_url(self, db: Session, login_session: LoginSession, *, then: str) -> str | None:
        """Where to send the browser to log out at FranceConnect too (then back to ``then``), or None."""
        if self.client is None or login_session.federation != PROVIDER or not login_session.federation_id_token:
            return None
        state = self.requests.new(db, purpose="logout", next=then)
        try:
            return self.client.end_session_url(id_token=login_session.federation_id_token, state=state,
                                               post_logout_redirect_uri=self.logged_out_uri)
        except FederationError as exc:  # FranceConnect unreachable: logged out here all the same
            logger.warning("franceconnect logout skipped", extra={"reason": exc.reason})
            return None

    def logged_out(self, db: Session, *, state: str | None) -> str:
        """Back from FranceConnect's logout: where the logout was going ("/" when the state is unknown)."""
        try:
            return self.requests.consume(db, state, "logout").next or "/"
        except FederationError:
            return "/?notice=logged_out"
