"""ProConnect for staff: a member of staff logs in with their professional identity instead of the
password. The staff account must already exist (`vault staff create`): it is found by the
ProConnect ``sub`` linked at an earlier login, else by email (then the ``sub`` is linked). The TOTP
code is still asked unless ProConnect's ``amr`` says a second factor was used (``mfa``).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from sqlmodel import Session, select

from vault.auth.exceptions import InvalidCredentials
from vault.auth.federation import FederationClient, FederationError, FederationRequests, IdentityProvider
from vault.auth.identity import normalize_email
from vault.gdpr.models import StaffAccount
from vault.gdpr.staff import StaffService
from vault.settings import Settings
from vault.translation import N_

logger = logging.getLogger(__name__)

PROVIDER = "proconnect"
SCOPE = "openid email given_name usual_name"
NO_STAFF = N_("Aucun compte du personnel ne correspond à cette identité ProConnect. Demandez à un administrateur "
              "de créer votre compte avec votre adresse professionnelle.")


@dataclass(frozen=True)
class StaffLoggedIn:
    token: str


@dataclass(frozen=True)
class NeedOtp:
    cookie: str  # names the waiting login


def provider_of(settings: Settings) -> IdentityProvider | None:
    if not (settings.proconnect_issuer and settings.proconnect_client_id and settings.proconnect_client_secret):
        return None
    return IdentityProvider(name=PROVIDER, label="ProConnect", issuer=settings.proconnect_issuer,
                            client_id=settings.proconnect_client_id,
                            client_secret=settings.proconnect_client_secret.get_secret_value(),
                            scope=SCOPE, acr_values="eidas1", request_amr=True)


class ProConnectLogin:
    def __init__(self, *, settings: Settings, staff: StaffService) -> None:
        self.settings = settings
        self.staff = staff
        provider = provider_of(settings)
        self.client = FederationClient(provider) if provider else None
        self.requests = FederationRequests(PROVIDER)

    @property
    def enabled(self) -> bool:
        return self.client is not None

    @property
    def redirect_uri(self) -> str:
        return f"{self.settings.issuer}/dpo/login/proconnect/callback"

    def _client(self) -> FederationClient:
        if self.client is None:
            raise FederationError("ProConnect is not configured")
        return self.client

    def begin(self, db: Session) -> str:
        nonce = secrets.token_urlsafe(32)
        state = self.requests.new(db, purpose="staff_login", nonce=nonce)
        return self._client().authorization_url(state=state, nonce=nonce, redirect_uri=self.redirect_uri)

    def complete(self, db: Session, *, params: dict[str, str]) -> StaffLoggedIn | NeedOtp:
        row = self.requests.consume(db, params.get("state"), "staff_login")
        if error := params.get("error"):
            raise FederationError(f"ProConnect answered {error[:40]}")
        if not params.get("code") or row.nonce is None:
            raise FederationError("callback without code")
        login = self._client().complete(code=params["code"], redirect_uri=self.redirect_uri, nonce=row.nonce,
                                        iss=params.get("iss"))
        staff = db.exec(select(StaffAccount).where(StaffAccount.proconnect_sub == login.subject)).first()
        if staff is None:
            try:
                email = normalize_email(str(login.claims.get("email") or ""))
            except ValueError:
                email = ""
            staff = db.exec(select(StaffAccount).where(StaffAccount.email == email)).first() if email else None
            if staff is not None and staff.proconnect_sub is None:
                staff.proconnect_sub = login.subject  # linked at this first ProConnect login
            elif staff is not None:
                staff = None  # that account is linked to another ProConnect identity
        if staff is None or staff.disabled_at is not None:
            raise FederationError("no staff account for this ProConnect identity", message=NO_STAFF)
        if "mfa" in login.amr:  # ProConnect says a second factor was used
            return StaffLoggedIn(token=self.staff.open_session(db, staff, how="proconnect mfa"))
        return NeedOtp(cookie=self.requests.new(db, purpose="staff_otp", account_id=staff.id))

    def waiting(self, db: Session, cookie: str | None) -> StaffAccount | None:
        row = self.requests.find(db, cookie, "staff_otp")
        if row is None or row.account_id is None:
            return None
        return db.get(StaffAccount, row.account_id)

    def complete_otp(self, db: Session, *, cookie: str | None, otp: str, address: str) -> StaffLoggedIn:
        """The TOTP code after a ProConnect login without a second factor; throttled like the login."""
        staff = self.waiting(db, cookie)
        if staff is None or staff.disabled_at is not None:
            raise FederationError("no ProConnect login waiting for its code")
        accounts = self.staff.accounts
        attempt = accounts.begin_attempt(db=db, name="staff:" + staff.email, address=address)
        if not accounts.accept_totp(citizen=staff, code=otp):
            raise InvalidCredentials(N_("Code incorrect."))  # the try stays counted
        accounts.attempt_passed(db=db, attempt=attempt)
        self.requests.consume(db, cookie, "staff_otp")
        return StaffLoggedIn(token=self.staff.open_session(db, staff, how="proconnect otp"))
