"""Alert pages: the switches of "Mon compte" (saved here; shown by the account page) and the
one-click unsubscribe of the alert mails (RFC 8058). Thin: parse, call the service, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from vault.alerts.service import UNSUBSCRIBE_PATH, AlertService
from vault.auth.dependencies import LoggedIn
from vault.translation import N_
from vault.web.dependencies import Db, FormFields, redirect
from vault.web.pages import form_values, message_page, render
from vault.web.state import app_service

router = APIRouter()


def alerts(request: Request) -> AlertService:
    return app_service(request, "alerts", AlertService)


Alerts = Annotated[AlertService, Depends(alerts)]


@router.post("/account/alerts", include_in_schema=False)
def save_switches(request: Request, form: FormFields, db: Db, service: Alerts, current: LoggedIn) -> Response:
    """The form of "Mon compte": a ticked box is a kind on; a kind left unticked is off."""
    service.set_switches(db=db, citizen_id=current.citizen.id, on=form_values(request, "alert"))
    return redirect("/account?notice=alerts_saved#alerts-title")


# The token rides in the query string: the access log writes paths, never query strings.
@router.get(UNSUBSCRIBE_PATH, include_in_schema=False)
def unsubscribe_page(request: Request, db: Db, service: Alerts, token: str = "") -> Response:
    """What the link would turn off, and one button: mail scanners open links, a GET changes nothing."""
    switch = service.check_unsubscribe(db=db, token=token)
    return render(request, "unsubscribe.html", {"title": N_("Ne plus recevoir cette alerte"), "switch": switch,
                                                "token": token})


@router.post(UNSUBSCRIBE_PATH, include_in_schema=False)
def unsubscribe(request: Request, db: Db, service: Alerts, token: str = "") -> Response:
    """RFC 8058 one-click: mail clients post ``List-Unsubscribe=One-Click`` here, with no session
    and no CSRF token; the link's own token is the proof (it can do nothing else)."""
    service.unsubscribe(db=db, token=token)
    return message_page(request, title=N_("C'est fait"),
                        message=N_("Vous ne recevrez plus ce type d'alerte. Vos autres alertes ne changent pas. "
                                   "Vous pouvez les activer ou les arrêter à tout moment dans « Mon compte »."),
                        link=("/account", N_("Mon compte")))
