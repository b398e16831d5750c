"""The counter agents' pages under ``/agent/``. Thin: authorize, call the services, shape the page.
Anyone but a counter agent gets 404 here (the section is not advertised), except ``/agent/stats``,
which is the administrators'."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from vault.counter.models import DURATIONS, IDENTITY_DOCUMENTS, PROCEDURES, CounterEnrolment
from vault.counter.service import CounterService, is_active
from vault.dates import parse_past_date
from vault.gdpr.routes import INVALID_DATE, Gdpr, NotStaff, StaffSvc, any_staff
from vault.gdpr.staff import StaffCurrent
from vault.translation import N_
from vault.web.dependencies import Db, redirect
from vault.web.pages import render
from vault.web.state import app_service, app_settings

pages = APIRouter(include_in_schema=False)


def counter_service(request: Request) -> CounterService:
    return app_service(request, "counter", CounterService)


Counter = Annotated[CounterService, Depends(counter_service)]


def current_agent(request: Request, db: Db, service: StaffSvc) -> StaffCurrent:
    """A counter agent (with the service its mandates name); 404 for anyone else."""
    current = any_staff(request, db, service)
    if current.staff.role != "agent" or not current.staff.service:
        raise NotStaff()
    return current


def current_admin(request: Request, db: Db, service: StaffSvc) -> StaffCurrent:
    """An administrator (the city's statistics); 404 for anyone else."""
    current = any_staff(request, db, service)
    if current.staff.role != "admin":
        raise NotStaff()
    return current


AgentUser = Annotated[StaffCurrent, Depends(current_agent)]
AdminUser = Annotated[StaffCurrent, Depends(current_admin)]


@pages.get("/agent/login")
def agent_login() -> Response:
    """Agents log in on the staff login page, and land back here."""
    return redirect("/dpo/login")


@pages.get("/agent/")
def agent_home(request: Request, db: Db, gdpr: Gdpr, current: AgentUser) -> Response:
    """Find a citizen by name, birth date or email (every criterion given must match)."""
    params = request.query_params
    typed = {k: params.get(k, "").strip()[:200] for k in ("q_name", "q_birthdate", "q_email")}
    errors: dict[str, str] = {}
    matches = None
    if any(typed.values()):
        birthdate = None
        if typed["q_birthdate"]:
            try:
                birthdate = parse_past_date(typed["q_birthdate"], today=app_settings(request).today())
            except ValueError:
                errors["q_birthdate"] = INVALID_DATE
        if not errors:
            matches = gdpr.search_citizens(db, name=typed["q_name"], birthdate=birthdate, email=typed["q_email"])
    return render(request, "counter/home.html", {
        "title": N_("Accueil du guichet"), "staff": current.staff, "matches": matches,
        "errors": errors, "values": typed}, status=400 if errors else 200)


@pages.get("/agent/citizens/{citizen_id}")
def agent_citizen(request: Request, citizen_id: uuid.UUID, db: Db, counter: Counter, current: AgentUser) -> Response:
    """A citizen's file at the counter: who they are, how their account was opened, this counter's
    mandates. What an agent may do for them needs a mandate (each section checks it)."""
    citizen = counter.citizen(db, citizen_id)
    service = current.staff.service or ""
    mandates = counter.mandates_of(db, citizen.id, service=service)
    return render(request, "counter/citizen.html", {
        "title": N_("Dossier au guichet"), "staff": current.staff, "citizen": citizen,
        "enrolment": db.get(CounterEnrolment, citizen.id),
        "active": [m for m in mandates if is_active(m)], "past": [m for m in mandates if not is_active(m)],
        "procedures": PROCEDURES, "durations": DURATIONS, "identity_documents": IDENTITY_DOCUMENTS})
