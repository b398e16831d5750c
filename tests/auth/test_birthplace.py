"""Birthplace, country and birthdate as a citizen types them: a commune by its name or postal code
(homonyms offered with their department), a postal code typed as a commune code refused with the
right code, names instead of codes on "Mon compte", birthdates written any reasonable way."""

from __future__ import annotations

import re
from datetime import date

import pytest
from sqlmodel import Session, select

from tests.support import IDENTITY, PASSWORD, Browser, Outbox
from vault import geo
from vault.auth.identity import validate_identity
from vault.auth.models import Citizen
from vault.dates import DateFormatError, parse_date

TODAY = date(2026, 6, 1)


def _birthplace(engine) -> str:
    with Session(engine) as db:
        return db.exec(select(Citizen.birthplace)).one()


def _form(**changes: str) -> dict[str, str]:
    return {**IDENTITY, **changes}


# ---- the codes: what every path (vault citizen create, the DPO's rectification) checks -----------------


def test_a_postal_code_given_as_a_commune_code_is_refused_with_the_right_code() -> None:
    _, errors = validate_identity(_form(birthplace="75001"), today=TODAY)
    assert errors == {"birthplace": "75001 est un code postal : Paris 1er Arrondissement a le code commune 75101."}


def test_a_postal_code_of_several_communes_lists_them() -> None:
    _, errors = validate_identity(_form(birthplace="01470"), today=TODAY)
    assert "01470 est un code postal, pas un code de commune" in errors["birthplace"]
    assert "Seillonnaz (01400)" in errors["birthplace"]


def test_commune_codes_that_exist_or_existed_are_accepted() -> None:
    for code in ("75101", "69381", "2A004", "97411",  # today's communes and arrondissements
                 "01120",   # Cordieux, a commune associée of Montluel
                 "69232",   # a code Lyon absorbed in 1963
                 "75066"):  # Saint-Denis in the Seine department, before 1968
        clean, errors = validate_identity(_form(birthplace=code, birthdate="1950-01-01"), today=TODAY)
        assert errors == {} and clean["birthplace"] == code


def test_unknown_codes_are_refused() -> None:
    assert "Aucune commune n'a le code 01999" in validate_identity(_form(birthplace="01999"), today=TODAY)[1]["birthplace"]
    assert "pas dans la liste des pays" in validate_identity(_form(birthcountry="99999", birthplace=""),
                                                             today=TODAY)[1]["birthcountry"]


def test_franceconnect_codes_are_kept_even_outside_the_lists() -> None:
    clean, errors = validate_identity(_form(birthplace="01999"), today=TODAY, known_places_only=False)
    assert errors == {} and clean["birthplace"] == "01999"


# ---- the registration form: names and postal codes ---------------------------------------------------


def test_a_postal_code_resolves_to_its_commune(browser: Browser, engine) -> None:
    assert browser.register("paris@example.org", birthplace="75001").status_code == 200
    assert _birthplace(engine) == "75101"


def test_a_name_resolves_to_its_commune(browser: Browser, engine) -> None:
    assert browser.register("seillonnaz@example.org", birthplace="seillonnaz").status_code == 200
    assert _birthplace(engine) == "01400"


def test_a_former_commune_is_found_by_its_name(browser: Browser, engine) -> None:
    assert browser.register("cordieux@example.org", birthplace="Cordieux", birthdate="12/03/1942").status_code == 200
    assert _birthplace(engine) == "01120"


def test_homonyms_are_offered_with_their_department(browser: Browser, engine) -> None:
    page = browser.register("homonym@example.org", birthplace="Saint-Denis")
    assert page.status_code == 400
    assert "Plusieurs communes correspondent à « Saint-Denis » : choisissez la vôtre dans la liste." in page.text
    radios = re.findall(r'<input type="radio" name="birthplace_choice" value="([0-9AB]{5})"', page.text)
    assert {"11339", "30247", "93066", "97411"} <= set(radios)
    for label in ("Saint-Denis (Aude)", "Saint-Denis (Gard)", "Saint-Denis (Seine-Saint-Denis)",
                  "Saint-Denis (La Réunion)"):
        assert label in page.text
    assert browser.register("homonym@example.org", birthplace="Saint-Denis",
                            birthplace_choice="97411").status_code == 200
    assert _birthplace(engine) == "97411"


def test_paris_offers_its_arrondissements(browser: Browser) -> None:
    page = browser.register("paris@example.org", birthplace="paris")
    assert page.status_code == 400 and 'value="75101"' in page.text and 'value="75120"' in page.text


def test_a_postal_code_that_is_also_a_commune_code_asks(browser: Browser) -> None:
    page = browser.register("ambiguous@example.org", birthplace="69001")
    assert page.status_code == 400
    assert 'value="69001"' in page.text and 'value="69381"' in page.text  # Affoux, and Lyon 1er
    assert "Lyon 1er Arrondissement (Rhône)" in page.text and "Affoux (Rhône)" in page.text


def test_no_such_commune(browser: Browser, engine) -> None:
    page = browser.register("nowhere@example.org", birthplace="Xyzzyville")
    assert page.status_code == 400
    assert "Aucune commune ne s&#39;appelle « Xyzzyville »" in page.text or \
        "Aucune commune ne s'appelle « Xyzzyville »" in page.text


def test_the_country_is_chosen_by_name_france_first(browser: Browser) -> None:
    page = browser.get("/register")
    options = re.findall(r'<option value="(99\d{3})"[^>]*>([^<]+)</option>', page.text)
    assert options[0] == ("99100", "France")
    assert ("99134", "Espagne") in options and ("99115", "Tchécoslovaquie") in options
    assert '<option value="99100" selected>' in page.text


def test_account_page_shows_names(browser: Browser, outbox: Outbox) -> None:
    assert browser.register("lyon@example.org", birthplace="75002").status_code == 200
    link = outbox.last("lyon@example.org").path()
    browser.submit(link, {"token": link.split("token=", 1)[1]}, action="/verify-email")
    browser.login("lyon@example.org", PASSWORD)
    account = browser.get("/account").text
    assert "Paris 2e Arrondissement (Paris)" in account and "75102" in account
    assert "France" in account


def test_english_messages(browser: Browser) -> None:
    browser.get("/register?lang=en")
    page = browser.register("english@example.org", birthplace="Saint-Denis", birthdate="12/03/42")
    assert "Several communes match “Saint-Denis”: choose yours from the list." in page.text
    assert "Write the year of birth in full, with its 4 digits" in page.text
    page = browser.register("english@example.org", birthplace="Xyzzyville", birthdate="1942-03-12")
    assert "No commune is called “Xyzzyville”" in page.text


def test_english_hint_for_a_postal_code() -> None:
    from vault.web.i18n import translations
    _, errors = validate_identity(_form(birthplace="75001"), today=TODAY)
    message = errors["birthplace"]
    english = translations("en").gettext(message.msgid) % message.params  # type: ignore[attr-defined]
    assert english == "75001 is a postal code: Paris 1er Arrondissement has the commune code 75101."


# ---- birthdates ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["12031942", "12/03/1942", "12-03-1942", "12.03.1942", "12 mars 1942",
                                   "12 MARS 1942", "1942-03-12", " 12 / 03 / 1942 ", "12 Mars 1942"])
def test_birthdates_typed_any_reasonable_way(typed: str) -> None:
    assert parse_date(typed) == date(1942, 3, 12)
    clean, errors = validate_identity(_form(birthdate=typed), today=TODAY)
    assert errors == {} and clean["birthdate"] == date(1942, 3, 12)


def test_first_of_the_month_and_months_in_words() -> None:
    assert parse_date("1er mars 1942") == date(1942, 3, 1)
    assert parse_date("3 février 1950") == parse_date("3 fevrier 1950") == date(1950, 2, 3)
    assert parse_date("15 août 1960") == parse_date("15 aout 1960") == date(1960, 8, 15)
    assert parse_date("2 sept. 1970") == date(1970, 9, 2)


def test_eight_digits_are_always_day_month_year() -> None:
    assert parse_date("03121942") == date(1942, 12, 3)


@pytest.mark.parametrize(("typed", "message"), [
    ("12/03/42", "Écrivez l'année de naissance en entier"),
    ("120342", "Écrivez l'année de naissance en entier"),
    ("12 mars 42", "Écrivez l'année de naissance en entier"),
    ("12 brumaire 1942", "Cette date de naissance n'est pas reconnue"),
    ("13131942", "n'existe pas dans le calendrier"),
    ("30 février 1942", "n'existe pas dans le calendrier"),
])
def test_birthdates_refused_clearly(typed: str, message: str) -> None:
    _, errors = validate_identity(_form(birthdate=typed), today=TODAY)
    assert message in errors["birthdate"]


def test_two_digit_years_are_never_guessed() -> None:
    with pytest.raises(DateFormatError):
        parse_date("12/03/42")


def test_every_commune_of_today_has_a_name_and_department() -> None:
    assert geo.commune("75056") is not None and geo.commune_label("75056") == "Paris (Paris)"
    assert geo.country_label("99100") == "France"
