"""Validation of the pivot identity and of emails, with French messages per form field.

Formats are FranceConnect's: ``birthdate`` ``YYYY-MM-DD``; ``gender``
``male``/``female``; ``birthplace`` a 5-character INSEE commune code, empty when born abroad;
``birthcountry`` a 5-digit INSEE country code, France = ``99100``. Both codes must be in
``vault.geo``'s lists (a commune that exists or existed, a country of INSEE's list); the
registration form also takes the commune's name or postal code (``resolve_birthplace``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Literal, TypedDict

from email_validator import EmailNotValidError, validate_email

from vault import geo
from vault.dates import OLDEST_DATE, DateFormatError, NoSuchDate, parse_date
from vault.translation import N_, Message

if TYPE_CHECKING:
    from vault.auth.models import Citizen

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
        raise ValueError(N_("Indiquez votre adresse e-mail."))
    if len(candidate) > 254:
        raise ValueError(N_("Cette adresse e-mail est trop longue."))
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError:
        raise ValueError(N_("Cette adresse e-mail n'est pas valide. Exemple : prenom.nom@exemple.fr")) from None
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
    """A birthdate typed any way ``vault.dates`` reads (31/07/1984, 31071984, 31 juillet 1984,
    1984-07-31…), neither in the future nor before 1900; ValueError with the message for the form
    otherwise."""
    if not (raw or "").strip():
        raise ValueError(N_("Indiquez votre date de naissance."))
    try:
        value = parse_date(raw)
    except NoSuchDate:
        raise ValueError(N_("Cette date de naissance n'existe pas dans le calendrier.")) from None
    except DateFormatError as exc:
        if exc.short_year:
            raise ValueError(N_("Écrivez l'année de naissance en entier, avec ses 4 chiffres : par exemple "
                                "31/07/1984.")) from None
        raise ValueError(N_("Cette date de naissance n'est pas reconnue. Écrivez-la par exemple 31/07/1984, "
                            "31071984 ou 31 juillet 1984.")) from None
    if value > today:
        raise ValueError(N_("La date de naissance ne peut pas être dans le futur."))
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


def validate_identity(form: dict[str, str], *, today: date, by_name: bool = False,
                      known_places_only: bool = True) -> tuple[Identity, dict[str, str]]:
    """Check the identity fields of ``form``; return (clean values, errors by field name).
    ``today``: the city's date (a birthdate after it is refused). ``by_name``: ``birthplace`` may be
    a commune's name or postal code (the registration form; ``birthplace_choice`` is the one the
    citizen picked among several). ``known_places_only=False``: a well-formed code missing from
    ``vault.geo``'s lists is accepted (FranceConnect's identity comes from the civil registry,
    whose history of communes is longer than the lists)."""
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
        errors["gender"] = N_("Choisissez « Féminin » ou « Masculin », comme sur votre acte de naissance.")
    clean["gender"] = gender

    country = (form.get("birthcountry") or "").strip()
    if not country:
        errors["birthcountry"] = N_("Choisissez votre pays de naissance.")
    elif not _COUNTRY.match(country) or country == "99000":
        errors["birthcountry"] = N_("Le pays de naissance doit être un code INSEE à 5 chiffres commençant par 99 "
                                    "(France : 99100).")
    elif known_places_only and geo.country(country) is None:
        errors["birthcountry"] = Message(N_("Le code %(code)s n'est pas dans la liste des pays de l'INSEE : "
                                            "choisissez votre pays de naissance dans la liste."), code=country)
    clean["birthcountry"] = country

    place = (form.get("birthplace") or "").strip()
    if by_name and country == FRANCE and place:
        resolved = resolve_birthplace(place, (form.get("birthplace_choice") or "").strip())
        if resolved.problem:
            errors["birthplace"] = resolved.problem
        place = resolved.code or place
    place = place.upper()
    if "birthplace" in errors:
        pass
    elif country == FRANCE:
        if not place:
            errors["birthplace"] = N_("Indiquez votre commune de naissance.")
        elif not _COMMUNE.match(place) or place.endswith("000"):
            errors["birthplace"] = ("Ce code de commune INSEE n'est pas valide : 5 caractères, par exemple 69123 (Lyon) ou "
                                    "2A004 (Ajaccio).")
        elif known_places_only and geo.commune(place) is None:
            errors["birthplace"] = commune_code_problem(place)
    elif place and "birthcountry" not in errors:
        errors["birthplace"] = N_("Laissez la commune de naissance vide si vous êtes né(e) hors de France.")
    clean["birthplace"] = place if country == FRANCE else ""
    return clean, errors


def commune_code_problem(code: str) -> str:
    """Why ``code`` is not a commune code, naming the right one when it is a postal code."""
    served = geo.communes_with_postal_code(code)
    if len(served) == 1:
        return Message(N_("%(code)s est un code postal : %(name)s a le code commune %(commune)s."),
                       code=code, name=served[0].name, commune=served[0].code)
    if served:
        names = ", ".join(f"{c.name} ({c.code})" for c in served[:6]) + ("…" if len(served) > 6 else "")
        return Message(N_("%(code)s est un code postal, pas un code de commune. Les communes qu'il dessert : "
                          "%(names)s."), code=code, names=names)
    return Message(N_("Aucune commune n'a le code %(code)s dans le Code officiel géographique de l'INSEE."), code=code)


@dataclass(frozen=True)
class Resolution:
    """What a typed birthplace names: the commune's code, or the choices, or why neither."""

    code: str
    choices: list[geo.Commune]
    problem: str


def resolve_birthplace(text: str, choice: str = "") -> Resolution:
    """The commune a citizen typed: its name, its postal code or its INSEE code. One match: its
    code; several: the choices (``choice``, one of their codes, settles it); none: the problem."""
    text = " ".join((text or "").split())
    code_like = re.fullmatch(r"\d[\dAB]\d{3}", text.upper()) is not None
    choices: list[geo.Commune] = []
    if code_like:
        choices = geo.communes_with_postal_code(text)
        own = geo.commune(text)
        if own is not None and own.code not in {c.code for c in choices}:
            choices.insert(0, own)
    else:
        choices = geo.search_communes(text)
    if choice and choice in {c.code for c in choices}:
        return Resolution(code=choice, choices=[], problem="")
    if len(choices) == 1:
        return Resolution(code=choices[0].code, choices=[], problem="")
    if len(choices) > geo.MAX_CHOICES:
        return Resolution(code="", choices=[], problem=Message(
            N_("Plus de %(count)s communes commencent par « %(text)s » : tapez davantage de son nom."),
            count=geo.MAX_CHOICES, text=text))
    if choices:
        return Resolution(code="", choices=choices, problem=Message(
            N_("Plusieurs communes correspondent à « %(text)s » : choisissez la vôtre dans la liste."), text=text))
    if code_like:
        return Resolution(code="", choices=[], problem=commune_code_problem(text.upper()))
    return Resolution(code="", choices=[], problem=Message(
        N_("Aucune commune ne s'appelle « %(text)s ». Vérifiez l'orthographe, ou tapez son code postal."), text=text))


def login_name(citizen: Citizen) -> str:
    """What keys an account's login throttle: its address, or its login identifier for an account
    opened at the counter without one (as ``login_key`` reads what was typed at login)."""
    if citizen.email:
        return citizen.email
    return f"login:{citizen.login_id}" if citizen.login_id else f"citizen:{citizen.id}"


# The alphabet of login identifiers and activation codes: no 0/O, 1/I/L, read aloud or typed
# from a letter without mistakes.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
LOGIN_ID_LENGTH = 10


def format_code(raw: str) -> str:
    """``K7M2Q9PX3H`` as ``K7M2-Q9PX-3H``: groups of four, easier to copy."""
    return "-".join(raw[i:i + 4] for i in range(0, len(raw), 4))


def compact_code(typed: str) -> str:
    """What was typed, without spaces or dashes, in capitals (``k7m2 q9px-3h`` → ``K7M2Q9PX3H``)."""
    return "".join(ch for ch in (typed or "").upper() if ch.isalnum())[:40]


def login_key(typed: str) -> tuple[str, str | None]:
    """What a login form's first field names: (the throttle's name, the login identifier or None).
    An address (it has an ``@``) names itself, normalized; anything else is a login identifier."""
    if "@" in (typed or ""):
        try:
            return normalize_email(typed), None
        except ValueError:
            return (typed or "").strip().lower()[:254], None
    login_id = format_code(compact_code(typed))
    return f"login:{login_id}", login_id or None
