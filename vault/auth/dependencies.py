"""Request dependencies about the citizen: the account service, the login session read from the
cookie (``OptionalLogin``), and pages that need one (``LoggedIn``: a redirect to the login page
otherwise)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from sqlmodel import Session

from vault.auth.service import AccountService, CurrentLogin
from vault.errors import VaultError
from vault.web.dependencies import Db
from vault.web.errors import LoginRequired, StepUpRequired
from vault.web.pages import get_cookie
from vault.web.state import app_service

SESSION_COOKIE = "session"


def accounts(request: Request) -> AccountService:
    return app_service(request, "accounts", AccountService)


async def _accounts(request: Request) -> AccountService:  # async: no I/O, no thread hop
    return accounts(request)


Accounts = Annotated[AccountService, Depends(_accounts)]


class PendingApps(Protocol):
    """What the login page asks of the OpenID provider (a floor above, supplied by the composition
    root): the name of the app whose authorization request waits for this login."""

    def pending_client_name(self, *, db: Session, pending_id: str) -> str | None: ...


def pending_apps(request: Request) -> PendingApps:
    return app_service(request, "oidc", PendingApps)  # type: ignore[type-abstract]  # a protocol, not a class


class AlertSwitch(Protocol):
    kind: str
    label: str  # French; translated when shown
    on: bool


class AlertSwitches(Protocol):
    """What "Mon compte" shows of the alert mails (``vault.alerts``, a floor above, supplied by the
    composition root): each kind, its label and whether it is on."""

    def switches(self, *, db: Session, citizen_id: uuid.UUID) -> Sequence[AlertSwitch]: ...


def alert_switches(request: Request) -> AlertSwitches:
    return app_service(request, "alerts", AlertSwitches)  # type: ignore[type-abstract]  # a protocol, not a class


class ApiUnauthenticated(VaultError):
    """An API route needs a logged-in citizen."""

    code, status = "unauthenticated", 401
    message = "Log in first (session cookie)."


def current_login(request: Request, db: Db, service: Accounts) -> CurrentLogin | None:
    current = service.resolve_session(db=db, token=get_cookie(request, SESSION_COOKIE))
    request.state.current = current
    return current


OptionalLogin = Annotated[CurrentLogin | None, Depends(current_login)]


def require_login(request: Request, current: OptionalLogin) -> CurrentLogin:
    if current is None:
        raise LoginRequired(request.url.path)
    return current


LoggedIn = Annotated[CurrentLogin, Depends(require_login)]


def _step_up(back: str | Callable[[Request], str] | None) -> Any:
    def require_step_up(request: Request, current: LoggedIn) -> CurrentLogin:
        if not current.stepped_up:
            if back is not None:
                raise StepUpRequired(back if isinstance(back, str) else back(request))
            query = request.url.query
            raise StepUpRequired(request.url.path + (f"?{query}" if query else ""))
        return current

    return Depends(require_step_up)


def stepped_up(back: str | Callable[[Request], str] | None = None) -> Any:
    """A page that needs a proof of identity less than 5 minutes old in this session (the password,
    a TOTP code or a passkey): otherwise the confirmation page, then back to this page (a GET), or
    to ``back`` (the page of a form sent by POST: the citizen sends it again, knowingly; a function
    of the request when that page depends on it). Under ``/api/`` the answer is a 403
    ``step_up_required`` whose ``location`` is the confirmation page."""
    return _step_up(back)


SteppedUp = Annotated[CurrentLogin, _step_up(None)]
