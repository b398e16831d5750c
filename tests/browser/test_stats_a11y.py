"""The city's statistics in a real browser, reached as an administrator reaches them (staff login
with the TOTP code, the header's link, the period form): axe-core's WCAG 2.0/2.1 A and AA rules at
1280 px, and nothing scrolling sideways at 320 px (the narrowest phone the city supports), with
figures in every table, small counts hidden, and with a refused period."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlmodel import Session, col, update

from tests.browser.conftest import staff_log_in
from tests.factories import COUNTER, make_oidc_app, make_staff
from vault.auth.models import Citizen
from vault.counter.models import CounterEnrolment, Mandate
from vault.db import utcnow


def test_statistics_with_figures_and_with_a_refused_period(site, open_context, audit) -> None:
    agent = make_staff(site.app, role="agent")
    admin = make_staff(site.app, role="admin", name="Dominique Administratrice")
    people = [site.citizen() for _ in range(7)]
    last_week = utcnow() - timedelta(days=7)
    services = site.app.state.services
    schools = make_oidc_app(site.engine, name="Inscriptions scolaires et périscolaires de la ville")
    with Session(site.engine) as db:
        db.exec(update(Citizen).where(col(Citizen.id).in_([p.id for p in people[:6]])).values(created_at=last_week))
        for person in people[:2]:
            db.add(CounterEnrolment(citizen_id=person.id, document_kind="cni", checked_by=agent.id, service=COUNTER))
            db.add(Mandate(citizen_id=person.id, service=COUNTER, procedures=["social", "logement"], duration="1m",
                           granted_with="password", created_by=agent.id, ends_at=utcnow() + timedelta(days=30)))
        for person in people:
            services.oidc.logins.app_login(db, client_id=schools.client_id, citizen_id=person.id)
        db.commit()

    context = open_context()
    page = context.new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    staff_log_in(page, admin)
    page.get_by_role("link", name="Statistiques").click()
    page.get_by_role("heading", name="Comptes ouverts").wait_for()
    assert page.get_by_role("cell", name="< 5").count() > 0
    assert page.get_by_role("columnheader", name="Inscriptions scolaires et périscolaires de la ville").count() == 1
    audit(page, "the statistics of the last 12 weeks")

    page.get_by_role("textbox", name="Du (facultatif)").fill("31/02/2026")
    page.get_by_role("button", name="Afficher").click()
    page.get_by_role("alert").wait_for()
    assert page.get_by_role("textbox", name="Du (facultatif)").input_value() == "31/02/2026"
    audit(page, "a refused period, the form as typed")

    page.get_by_role("textbox", name="Du (facultatif)").fill("")
    page.get_by_role("button", name="Afficher").click()
    page.wait_for_url(re.compile(r"/agent/stats\?"))
    page.get_by_role("heading", name="Demandes RGPD").wait_for()
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Télécharger ces chiffres")).click()
    assert re.fullmatch(r"statistiques-\d{4}-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}\.csv", download.value.suggested_filename)
    audit.assert_clean()
