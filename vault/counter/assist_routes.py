"""The agent's assisted session pages: start one for a citizen, see the apps to open, end it.
What an app receives is the OpenID provider's (``vault.oidc.delegation``)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from vault.counter.assist import AssistService
from vault.counter.routes import AgentUser, Counter
from vault.counter.service import is_active
from vault.oidc.delegation import ASSISTED_COOKIE
from vault.translation import N_
from vault.web.dependencies import Db, FormFields, redirect
from vault.web.pages import clear_cookie, get_cookie, render, set_cookie
from vault.web.state import app_service, app_settings

pages = APIRouter(include_in_schema=False)


def assist_service(request: Request) -> AssistService:
    return app_service(request, "assist", AssistService)


Assist = Annotated[AssistService, Depends(assist_service)]


@pages.post("/agent/citizens/{citizen_id}/assist")
def assist_start(request: Request, citizen_id: uuid.UUID, form: FormFields, db: Db, assist: Assist,
                 current: AgentUser) -> Response:
    """Start an assisted session (any active mandate of the agent's service; 403 otherwise)."""
    token, row = assist.start(db, current, citizen_id)
    response = redirect(f"/agent/citizens/{citizen_id}/assist")
    # SameSite=Lax: an app's top-level redirection to /authorize must carry it.
    set_cookie(response, app_settings(request), ASSISTED_COOKIE, token,
               max_age=int((row.expires_at - row.created_at).total_seconds()), samesite="lax")
    return response


@pages.get("/agent/citizens/{citizen_id}/assist")
def assist_page(request: Request, citizen_id: uuid.UUID, db: Db, counter: Counter, assist: Assist,
                current: AgentUser) -> Response:
    """The live assisted session: the apps that accept delegated logins, and its end."""
    citizen = counter.citizen(db, citizen_id)
    counter.require_mandate(db, current.staff, citizen.id, None)
    session = assist.current(db, get_cookie(request, ASSISTED_COOKIE), current, citizen.id)
    mandates = counter.mandates_of(db, citizen.id, service=current.staff.service or "")
    return render(request, "counter/assist.html", {
        "title": N_("Session assistée"), "staff": current.staff, "citizen": citizen, "session": session,
        "apps": assist.apps(db) if session else [], "active": [m for m in mandates if is_active(m)]})


@pages.post("/agent/citizens/{citizen_id}/assist/end")
def assist_end(request: Request, citizen_id: uuid.UUID, form: FormFields, db: Db, assist: Assist,
               current: AgentUser) -> Response:
    """End this browser's assisted session (journal: ``session.ended``) and forget its cookie."""
    assist.end(db, get_cookie(request, ASSISTED_COOKIE), current)
    response = redirect(f"/agent/citizens/{citizen_id}")
    clear_cookie(response, app_settings(request), ASSISTED_COOKIE)
    return response
