"""Share links' pages: the citizen's ("Mes liens de partage": create, list, revoke) and the
public ones under ``/s/<secret>`` (the code, then the documents), which never open the account."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from vault.storage.exceptions import InvalidShareInput, WrongShareCode
from vault.storage.models import DOCUMENT_TYPES
from vault.storage.routes import Documents, PageActor, serve_content
from vault.storage.sharing import (
    DEFAULT_LIFETIME_HOURS,
    LIFETIMES,
    MAX_WRONG_CODES,
    ShareService,
    format_code,
)
from vault.translation import N_
from vault.web.dependencies import Db, FormFields, redirect
from vault.web.pages import client_address, cookie_name, form_values, notice_key, render
from vault.web.state import app_service, app_settings

pages = APIRouter(include_in_schema=False)

PASS_COOKIE = "share"  # noqa: S105  (a cookie's name, not a secret)
PUBLIC_HEADERS = {"X-Robots-Tag": "noindex, nofollow"}  # a link's pages are never indexed


def shares(request: Request) -> ShareService:
    return app_service(request, "shares", ShareService)


Shares = Annotated[ShareService, Depends(shares)]

NOTICES = {"revoked": N_("Le lien a été désactivé : il n'ouvre plus rien.")}
STATES = {
    "active": N_("actif"),
    "expired": N_("expiré"),
    "revoked": N_("désactivé"),
    "locked": N_("verrouillé (codes erronés)"),
    "emptied": N_("documents supprimés"),
}


# ---- the citizen ----------------------------------------------------------------------------------------------


@pages.get("/shares")
def shares_page(request: Request, db: Db, service: Shares, actor: PageActor) -> Response:
    return render(request, "shares.html", {
        "title": N_("Mes liens de partage"), "links": service.links_of(db, actor.citizen_id), "states": STATES,
        "notice": NOTICES.get(notice_key(request)),
    })


def _new_share_page(request: Request, db: Db, documents: Documents, actor: PageActor, *, chosen: set[str],
                    hours: str, label: str, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    items, _ = documents.list_documents(db, actor=actor, limit=200)
    return render(request, "share_new.html", {
        "title": N_("Partager des documents"), "documents": items, "chosen": chosen, "lifetimes": LIFETIMES,
        "types": DOCUMENT_TYPES, "hours": hours, "values": {"label": label}, "errors": errors or {},
    }, status=status)


@pages.get("/shares/new")
def share_new(request: Request, db: Db, documents: Documents, actor: PageActor) -> Response:
    return _new_share_page(request, db, documents, actor, chosen=set(request.query_params.getlist("document")),
                           hours=str(DEFAULT_LIFETIME_HOURS), label="")


@pages.post("/shares/new")
def share_create(request: Request, form: FormFields, db: Db, service: Shares, documents: Documents,
                 actor: PageActor) -> Response:
    chosen = form_values(request, "document")
    try:
        created = service.create(db, citizen_id=actor.citizen_id, document_ids=chosen, hours=form.get("hours", ""),
                                 label=form.get("label"))
    except InvalidShareInput as exc:
        return _new_share_page(request, db, documents, actor, chosen=set(chosen), hours=form.get("hours", ""),
                               label=form.get("label", ""), errors=exc.fields, status=422)
    settings = app_settings(request)
    # Shown once: the secret and the code exist nowhere else (the page is never cached: no-store).
    return render(request, "share_created.html", {
        "title": N_("Votre lien de partage est prêt"), "link": created.link,
        "url": f"{settings.issuer}/s/{created.secret}", "code": format_code(created.code),
        "documents": service.links_of(db, actor.citizen_id)[0].documents, "max_wrong": MAX_WRONG_CODES,
    }, status=201)


@pages.post("/shares/{link_id}/revoke")
def share_revoke(link_id: uuid.UUID, form: FormFields, db: Db, service: Shares, actor: PageActor) -> Response:
    service.revoke(db, citizen_id=actor.citizen_id, link_id=link_id)
    return redirect("/shares?notice=revoked")


# ---- the person holding the link --------------------------------------------------------------------------------


def _open_page(request: Request, *, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    response = render(request, "share_open.html", {
        "title": N_("Documents partagés avec vous"), "errors": errors or {}, "max_wrong": MAX_WRONG_CODES,
    }, status=status)
    response.headers.update(PUBLIC_HEADERS)
    return response


@pages.get("/s/{secret}")
def share_link(request: Request, secret: str, db: Db, service: Shares) -> Response:
    """The code form (for a link that does not exist too: the same page), or the documents once the
    browser holds this link's pass; 410 for a link that ended."""
    admitted = service.admitted(db, secret=secret, pass_value=request.cookies.get(cookie_name(app_settings(request),
                                                                                               PASS_COOKIE)))
    if admitted is None:
        return _open_page(request)
    link, documents = admitted
    response = render(request, "share_documents.html", {
        "title": N_("Documents partagés avec vous"), "link": link, "documents": documents, "secret": secret,
    })
    response.headers.update(PUBLIC_HEADERS)
    return response


@pages.post("/s/{secret}")
def share_link_code(request: Request, secret: str, form: FormFields, db: Db, service: Shares) -> Response:
    try:
        opening = service.open(db, secret=secret, entered=form.get("code", ""), address=client_address(request))
    except WrongShareCode as exc:
        return _open_page(request, errors={"code": exc.message}, status=exc.status)
    response = redirect(f"/s/{secret}")
    settings = app_settings(request)
    response.set_cookie(cookie_name(settings, PASS_COOKIE), opening.pass_value, max_age=opening.pass_max_age,
                        path="/", secure=settings.https, httponly=True, samesite="lax")
    return response


@pages.get("/s/{secret}/documents/{document_id}")
def share_link_download(request: Request, secret: str, document_id: uuid.UUID, db: Db, service: Shares,
                        documents: Documents) -> Response:
    admitted = service.admitted(db, secret=secret, pass_value=request.cookies.get(cookie_name(app_settings(request),
                                                                                               PASS_COOKIE)))
    if admitted is None:
        return redirect(f"/s/{secret}")  # the code first
    link, shared = admitted
    response = serve_content(request, db, documents, service.actor(link, shared), document_id)
    response.headers.update(PUBLIC_HEADERS)
    return response
