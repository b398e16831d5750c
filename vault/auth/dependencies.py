"""Request dependencies about the citizen: the account service, the login session read from the
cookie (``OptionalLogin``), and pages that need one (``LoggedIn``: a redirect to the login page
otherwise)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from vault.auth.service import AccountService, CurrentLogin
from vault.web.dependencies import Db
from vault.web.pages import get_cookie

SESSION_COOKIE = "session"


def accounts(request: Request) -> AccountService:
    return request.app.state.services.accounts


Accounts = Annotated[AccountService, Depends(accounts)]


class LoginRequired(Exception):
    """The page needs a logged-in citizen; answered by a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class ApiUnauthenticated(Exception):
    """An API route needs a logged-in citizen."""


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
