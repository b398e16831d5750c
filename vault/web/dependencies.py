"""Request dependencies every domain's routes use: the request's database session (its unit of
work), a posted form (CSRF checked), and the redirect that answers a successful POST."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from vault.db import request_db
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
