"""The DPO's (and the counter agents') search of citizens by name: accents, case, apostrophes and
hyphens aside, as people type names on a keyboard, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from sqlmodel import Session

from tests.factories import make_citizen, make_staff, staff_browser


def names(app, text: str) -> set[str]:
    services = app.state.services
    with Session(services.engine) as db:
        return {f"{c.given_name} {c.family_name}" for c in services.gdpr.search_citizens(db, name=text)}


def test_a_name_is_found_without_its_accents_apostrophes_or_hyphens(app) -> None:
    make_citizen(app, given_name="Hélène", family_name="Lefèvre")
    make_citizen(app, given_name="Seán", family_name="O'Connor")
    make_citizen(app, given_name="Jean-François", family_name="Çelik-Øster")
    make_citizen(app, given_name="Helen", family_name="Martin")

    assert names(app, "Helene") == {"Hélène Lefèvre"}
    assert names(app, "HÉLÈNE lefevre") == {"Hélène Lefèvre"}
    assert names(app, "lefèvre") == {"Hélène Lefèvre"}
    assert names(app, "OCONNOR") == names(app, "o'connor") == names(app, "O’Connor") == {"Seán O'Connor"}
    assert names(app, "sean") == {"Seán O'Connor"}
    assert names(app, "jean francois celik") == names(app, "Jean-François") == {"Jean-François Çelik-Øster"}
    assert names(app, "oster") == {"Jean-François Çelik-Øster"}
    assert names(app, "helen") == {"Hélène Lefèvre", "Helen Martin"}
    assert names(app, "100%") == set() and names(app, "h_l") == set()  # wildcards are letters


def test_the_dpo_finds_helene_by_typing_helene(app) -> None:
    make_citizen(app, given_name="Hélène", family_name="Garnier")
    staff = make_staff(app, role="dpo")
    with staff_browser(app, staff) as browser:
        page = browser.get("/dpo/", params={"q_name": "helene garnier"})
        assert page.status_code == 200 and "Hélène" in page.text and "Garnier" in page.text
