"""Validation of the pivot identity and of emails, with French messages per form field.

Formats are FranceConnect's: ``birthdate`` ``YYYY-MM-DD``; ``gender``
``male``/``female``; ``birthplace`` a 5-character INSEE commune code, empty when born abroad;
``birthcountry`` a 5-digit INSEE country code, France = ``99100``.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Literal, TypedDict

from email_validator import EmailNotValidError, validate_email

from vault.dates import OLDEST_DATE, DateFormatError, NoSuchDate, parse_date

FRANCE = "99100"
GENDERS = {"male": "Masculin", "female": "Féminin"}

# Department part: 01–19, 21–95, 2A/2B (Corsica); overseas 971–978, 984–989.
_COMMUNE = re.compile(r"^(?:(?:0[1-9]|1\d|[3-8]\d|9[0-5]|2[1-9]|2[AB])\d{3}|9[78]\d{3})$")
_COUNTRY = re.compile(r"^99\d{3}$")
_NAME = re.compile(r"^[^\W\d_]+(?:[ '\-][^\W\d_]+)*$")
MAX_NAME = 100


def normalize_email(raw: str) -> str:
    """Return the email lowercased and checked; raise ValueError with a French message."""
    candidate = (raw or "").strip()
    if not candidate:
        raise ValueError("Indiquez votre adresse e-mail.")
    if len(candidate) > 254:
        raise ValueError("Cette adresse e-mail est trop longue.")
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError:
        raise ValueError("Cette adresse e-mail n'est pas valide. Exemple : prenom.nom@exemple.fr") from None
    return result.normalized.lower()


def _clean_name(raw: str) -> str:
    text = unicodedata.normalize("NFC", raw or "").replace("\u2019", "'")
    return " ".join(text.split())


def _name_problem(value: str, label: str) -> str | None:
    if not value:
        return f"Indiquez votre {label}."
    if len(value) > MAX_NAME:
        return f"Votre {label} ne doit pas dépasser {MAX_NAME} caractères."
    if not _NAME.match(value):
        return f"Votre {label} ne peut contenir que des lettres, des espaces, des tirets et des apostrophes."
    return None


def parse_birthdate(raw: str, *, today: date) -> date:
    """A birthdate (``AAAA-MM-JJ`` or ``JJ/MM/AAAA``, see ``vault.dates``), neither in the future
    nor before 1900; ValueError with the message for the form otherwise."""
    if not (raw or "").strip():
        raise ValueError("Indiquez votre date de naissance.")
    try:
        value = parse_date(raw)
    except NoSuchDate:
        raise ValueError("Cette date de naissance n'existe pas dans le calendrier.") from None
    except DateFormatError:
        raise ValueError("La date de naissance doit être au format JJ/MM/AAAA, par exemple 31/07/1984.") from None
    if value > today:
        raise ValueError("La date de naissance ne peut pas être dans le futur.")
    if value < OLDEST_DATE:
        raise ValueError(f"La date de naissance doit être postérieure à {OLDEST_DATE.year}.")
    return value


class Identity(TypedDict, total=False):
    """The identity's clean values, as the ``citizen`` columns take them (every one is there when
    no field has an error; ``birthdate`` is missing when it has one)."""

    given_name: str
    family_name: str
    preferred_username: str | None
    birthdate: date
    gender: str
    birthcountry: str
    birthplace: str


def validate_identity(form: dict[str, str], *, today: date) -> tuple[Identity, dict[str, str]]:
    """Check the identity fields of ``form``; return (clean values, errors by field name).
    ``today``: the city's date (a birthdate after it is refused)."""
    errors: dict[str, str] = {}
    clean: Identity = {}

    names: tuple[tuple[Literal["given_name", "family_name"], str], ...] = (
        ("given_name", "prénom (ou vos prénoms)"), ("family_name", "nom de naissance"))
    for field, label in names:
        value = _clean_name(form.get(field, ""))
        if problem := _name_problem(value, label):
            errors[field] = problem
        clean[field] = value

    usage = _clean_name(form.get("preferred_username", ""))
    if usage and (problem := _name_problem(usage, "nom d'usage")):
        errors["preferred_username"] = problem
    clean["preferred_username"] = usage or None

    try:
        clean["birthdate"] = parse_birthdate(form.get("birthdate", ""), today=today)
    except ValueError as exc:
        errors["birthdate"] = str(exc)

    gender = (form.get("gender") or "").strip()
    if gender not in GENDERS:
        errors["gender"] = "Choisissez « Féminin » ou « Masculin », comme sur votre acte de naissance."
    clean["gender"] = gender

    country = (form.get("birthcountry") or "").strip()
    if not _COUNTRY.match(country) or country == "99000":
        errors["birthcountry"] = "Le pays de naissance doit être un code INSEE à 5 chiffres commençant par 99 (France : 99100)."
    clean["birthcountry"] = country

    place = (form.get("birthplace") or "").strip().upper()
    if country == FRANCE:
        if not place:
            errors["birthplace"] = ("Indiquez le code INSEE de votre commune de naissance (5 caractères, par exemple 75056 "
                                    "pour Paris).")
        elif not _COMMUNE.match(place) or place.endswith("000"):
            errors["birthplace"] = ("Ce code de commune INSEE n'est pas valide : 5 caractères, par exemple 69123 (Lyon) ou "
                                    "2A004 (Ajaccio).")
    elif place and "birthcountry" not in errors:
        errors["birthplace"] = "Laissez la commune de naissance vide si vous êtes né(e) hors de France."
    clean["birthplace"] = place if country == FRANCE else ""
    return clean, errors
