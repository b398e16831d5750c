"""Dates as people type them: ``AAAA-MM-JJ`` (ISO 8601, the claims' format) or ``JJ/MM/AAAA``
(how people in France write them; ``.``, ``-`` or a space also separate). One parser for every
date the service reads; each use adds its own rules on top (a birthdate is never in the future,
a request was not received in the future…)."""

from __future__ import annotations

import re
from datetime import date

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FRENCH = re.compile(r"^(\d{1,2})[/. -](\d{1,2})[/. -](\d{4})$")


OLDEST_DATE = date(1900, 1, 1)  # nothing the service records is older (birthdates included)


class DateFormatError(ValueError):
    """Not a date in either accepted format (or empty)."""


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
    text = (raw or "").strip()
    if match := _FRENCH.match(text):
        day, month, year = match.groups()
        text = f"{year}-{int(month):02d}-{int(day):02d}"
    if not _ISO.match(text):
        raise DateFormatError(raw)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise NoSuchDate(raw) from None
