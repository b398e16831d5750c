"""Counter agents: how they are created, where they land, what they may (not) open."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from tests.factories import COUNTER, make_citizen, make_staff, staff_browser
from vault.auth.exceptions import InvalidInput
from vault.gdpr.models import AuditEntry


def test_an_agent_needs_a_counter_service(app) -> None:
    services = app.state.services
    with Session(services.engine) as db:
        with pytest.raises(InvalidInput) as refused:
            services.staff.create(db, email="agent@ville.example.fr", name="A", role="agent",
                                  password="un mot de passe assez long")
        assert "service" in refused.value.fields
        with pytest.raises(InvalidInput) as refused:
            services.staff.create(db, email="dpo2@ville.example.fr", name="D", role="dpo",
                                  password="un mot de passe assez long", service="Guichet")
        assert "service" in refused.value.fields


def test_an_agent_lands_at_the_counter_and_never_sees_the_register(app) -> None:
    agent = make_staff(app, role="agent", name="Dominique Accueil")
    with staff_browser(app, agent) as browser:
        home = browser.get("/agent/")
        assert home.status_code == 200
        assert "Dominique Accueil" in home.text and COUNTER in home.text  # the staff header names the counter
        for path in ("/dpo/", "/dpo/requests.csv", "/agent/stats"):
            assert browser.get(path).status_code == 404, path


def test_the_counter_does_not_exist_for_the_dpo_or_citizens(app) -> None:
    with staff_browser(app, role="dpo") as browser:
        assert browser.get("/agent/").status_code == 404
    with staff_browser(app, make_staff(app, role="agent")) as browser:
        login = browser.get("/dpo/login")
        assert login.status_code == 200


def test_an_agent_finds_a_citizen_by_name_birthdate_or_email(app) -> None:
    make_citizen(app, email="jeanne.martin@example.org", given_name="Jeanne Marie", family_name="Martin",
                 birthdate="1942-03-12")
    make_citizen(app, email="paul.martin@example.org", given_name="Paul", family_name="Martin", birthdate="1950-01-01")
    with staff_browser(app, make_staff(app, role="agent")) as browser:
        by_name = browser.get("/agent/", params={"q_name": "martin"})
        assert "Jeanne Marie" in by_name.text and "Paul" in by_name.text
        by_date = browser.get("/agent/", params={"q_name": "martin", "q_birthdate": "12031942"})
        assert "Jeanne Marie" in by_date.text and "Paul" not in by_date.text
        by_email = browser.get("/agent/", params={"q_email": "paul.mar"})
        assert "Paul" in by_email.text and "Jeanne" not in by_email.text
        bad = browser.get("/agent/", params={"q_birthdate": "31/02/1942"})
        assert bad.status_code == 400 and 'aria-invalid="true"' in bad.text
    with Session(app.state.services.engine) as db:
        assert db.exec(select(AuditEntry).where(AuditEntry.action == "staff.login")).first() is not None


def test_a_citizens_file_at_the_counter(app) -> None:
    citizen = make_citizen(app, given_name="Jeanne Marie", family_name="Martin")
    with staff_browser(app, make_staff(app, role="agent")) as browser:
        page = browser.get(f"/agent/citizens/{citizen.id}")
        assert page.status_code == 200 and "Jeanne Marie Martin" in page.text
        assert "Aucun mandat en cours" in page.text and "Ouvert en ligne" in page.text
        assert browser.get("/agent/citizens/00000000-0000-0000-0000-000000000000").status_code == 404
