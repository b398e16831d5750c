"""Dates as people type them: ``AAAA-MM-JJ`` (ISO 8601, the claims' format), ``JJ/MM/AAAA``
(how people in France write them; ``.``, ``-`` or a space also separate), ``JJMMAAAA`` (what a
numeric keypad invites: always day, month, year — ``03121942`` is 3 December) and the month in
words (``12 mars 1942``, ``1er mars 1942``, any case, with or without accents, ``sept.``…). A
two-digit year is refused, never guessed (DateFormatError's ``short_year``). One parser for every
date the service reads; each use adds its own rules on top (a birthdate is never in the future,
a request was not received in the future…)."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FRENCH = re.compile(r"^(\d{1,2})\s*[/.\- ]\s*(\d{1,2})\s*[/.\- ]\s*(\d{4})$")
_DIGITS = re.compile(r"^(\d{2})(\d{2})(\d{4})$")
_WORDS = re.compile(r"^(\d{1,2})(?:er)?\s*([a-z]+)\.?\s*(\d{4})$")
_SHORT_YEAR = re.compile(r"^\d{1,2}\s*[/.\- ]\s*\d{1,2}\s*[/.\- ]\s*\d{2}$|^\d{6}$|^\d{1,2}(?:er)?\s*[a-z]+\.?\s*\d{2}$")
_MONTHS = {
    "janvier": 1, "janv": 1, "jan": 1, "fevrier": 2, "fevr": 2, "fev": 2, "mars": 3, "mar": 3, "avril": 4, "avr": 4,
    "mai": 5, "juin": 6, "juillet": 7, "juil": 7, "aout": 8, "septembre": 9, "sept": 9, "sep": 9,
    "octobre": 10, "oct": 10, "novembre": 11, "nov": 11, "decembre": 12, "dec": 12,
}


OLDEST_DATE = date(1900, 1, 1)  # nothing the service records is older (birthdates included)


class DateFormatError(ValueError):
    """Not a date in any accepted format (or empty). ``short_year``: it would be one, with the
    year's four digits."""

    def __init__(self, raw: str, *, short_year: bool = False) -> None:
        super().__init__(raw)
        self.short_year = short_year


class NoSuchDate(ValueError):
    """Well formed, but not in the calendar (31/02/2020)."""


def parse_past_date(raw: str, *, today: date) -> date:
    """A date that has happened (a request's receipt, a letter sent): not after ``today``, not
    before 1900. ValueError otherwise."""
    value = parse_date(raw)
    if value > today or value < OLDEST_DATE:
        raise ValueError(raw)
    return value


def parse_date(raw: str) -> date:
    """The date ``raw`` names. Raises DateFormatError or NoSuchDate (both ValueErrors)."""
    text = unicodedata.normalize("NFKD", (raw or "").strip().lower())
    text = " ".join("".join(ch for ch in text if not unicodedata.combining(ch)).split())
    if match := (_FRENCH.match(text) or _DIGITS.match(text)):
        day, month, year = match.groups()
        text = f"{year}-{int(month):02d}-{int(day):02d}"
    elif (match := _WORDS.match(text)) and match.group(2) in _MONTHS:
        day, word, year = match.groups()
        text = f"{year}-{_MONTHS[word]:02d}-{int(day):02d}"
    if not _ISO.match(text):
        raise DateFormatError(raw, short_year=bool(_SHORT_YEAR.match(text)))
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise NoSuchDate(raw) from None
