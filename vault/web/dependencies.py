"""Request dependencies every domain's routes use: the request's database session (its unit of
work), a posted form (CSRF checked), the redirect that answers a successful POST, and the guard
every route runs first (``refuse_nul``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from vault.db import request_db
from vault.errors import OAuthError
from vault.web.pages import flash_notice, read_form

# scope="function": the commit happens when the route returns, before the response is sent.
Db = Annotated[Session, Depends(request_db, scope="function")]
FormFields = Annotated[dict[str, str], Depends(read_form)]


def redirect(url: str) -> RedirectResponse:
    """303 See Other: the browser follows with a GET (Post/Redirect/Get). A page of this site with a
    ``notice`` ("/account?notice=password_changed") shows it once: see ``flash_notice``."""
    response = RedirectResponse(url, status_code=303)
    flash_notice(response, url)
    return response


async def refuse_nul(request: Request) -> None:
    """No field of the service holds a NUL character (PostgreSQL cannot store one; SQLite would):
    a path or query parameter carrying one is refused here, before any route reads it, with the
    same 400 on every database (an OAuth error on the OAuth endpoints, a page elsewhere). Forms
    are checked where they are read (``read_form``, the OAuth endpoints' own reader).

    ``async`` (it does no I/O) so that FastAPI runs it on the event loop, not in a worker thread:
    the same holds for every dependency that only reads the request or the application."""
    scope = request.scope  # the decoded path (``%00`` is a NUL there), without building a URL
    if "\x00" in scope["path"] or (scope.get("query_string") and any(
            "\x00" in key or "\x00" in value for key, value in request.query_params.multi_items())):
        raise OAuthError("The request contains a NUL character.", code="invalid_request")
