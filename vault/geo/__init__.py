"""French communes and the world's countries by their INSEE codes (the pivot identity's
``birthplace`` and ``birthcountry``), with their names: to check a code, to find a commune by its
name or postal code, and to show people names rather than codes.

The data (``data/``) is built by ``scripts/build_geo_data.py`` from the npm package
``@etalab/decoupage-administratif`` (INSEE's Code officiel géographique, La Poste's postal codes)
and INSEE's list of countries (with their ISO codes: their names in English are the Unicode CLDR's,
from Babel); ``data/README.md`` says which versions. Loaded once, on first use.
Imports nothing of the service but ``N_`` (floor 1).
"""

from __future__ import annotations

import bisect
import csv
import functools
import gzip
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import babel

from vault.translation import N_, Message

DATA = Path(__file__).parent / "data"
FRANCE = "99100"
MAX_CHOICES = 30  # more matches than that: the citizen is asked to type more of the name


@dataclass(frozen=True)
class Commune:
    code: str
    name: str
    department: str       # its code: 69, 2A, 974
    department_name: str
    kind: str             # "commune", "arrondissement", "deleguee", "associee", "ancienne"
    parent: str           # for an arrondissement or a former commune: the commune's code, else ""
    postal_codes: tuple[str, ...]

    @property
    def current(self) -> bool:
        return self.kind in ("commune", "arrondissement")


@dataclass(frozen=True)
class Country:
    code: str
    name: str
    iso: str = ""  # its ISO 3166-1 alpha-2 code, when it has one (not Tchécoslovaquie, nor Sibérie…)


_KINDS = {"C": "commune", "A": "arrondissement", "D": "deleguee", "S": "associee"}


class _Geo:
    def __init__(self) -> None:
        with gzip.open(DATA / "communes.json.gz", "rt", encoding="utf-8") as f:
            raw = json.load(f)
        self.source: str = raw["source"]
        self.departments: dict[str, str] = raw["departements"]
        self.rows: list[list[str]] = raw["communes"]  # sorted by code, a code's own entry first
        self.by_code: dict[str, int] = {}
        self.by_postal_code: dict[str, list[int]] = {}
        self.arrondissements: dict[str, list[int]] = {}
        for i, (code, _name, _dep, kind, parent, pcs) in enumerate(self.rows):
            self.by_code.setdefault(code, i)
            if kind in "CA":
                for pc in pcs.split():
                    self.by_postal_code.setdefault(pc, []).append(i)
            if kind == "A":
                self.arrondissements.setdefault(parent, []).append(i)
        self.former_codes: dict[str, str] = raw["anciens_codes"]
        with (DATA / "countries.csv").open(encoding="utf-8", newline="") as f:
            self.countries = {row["code"]: Country(row["code"], row["nom"], row.get("iso2") or "")
                              for row in csv.DictReader(f)}

    def entry(self, i: int) -> Commune:
        code, name, dep, kind, parent, pcs = self.rows[i]
        return Commune(code=code, name=name, department=dep, department_name=self.departments.get(dep, dep),
                       kind=_KINDS[kind], parent=parent, postal_codes=tuple(pcs.split()))

    @functools.cached_property
    def by_name(self) -> dict[str, list[int]]:
        index: dict[str, list[int]] = {}
        for i, row in enumerate(self.rows):
            index.setdefault(normalize(row[1]), []).append(i)
        return index

    @functools.cached_property
    def sorted_names(self) -> list[str]:
        return sorted(self.by_name)


@functools.cache
def _geo() -> _Geo:
    return _Geo()


def normalize(text: str) -> str:
    """A name as searched: no accents, lower case, hyphens and apostrophes as spaces, ``st``/``ste``
    spelled out."""
    text = unicodedata.normalize("NFKD", text or "")
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = re.sub(r"[^a-z0-9]+", " ", text).strip()
    words = {"st": "saint", "ste": "sainte", "s": "saint"}
    return " ".join(words.get(w, w) for w in text.split())


def commune(code: str) -> Commune | None:
    """The commune (arrondissement, former commune) that ``code`` names, or None. An old code a
    commune replaced (a merger, Seine's 75xxx before 1968) gives the commune of today, as
    ``ancienne`` — unless it is also a postal code of today (75001: Paris 1er, not Alfortville
    before 1968), which people type far more often; Corsica's 20xxx (before 1976) is looked up as 2A/2B."""
    code = (code or "").strip().upper()
    geo = _geo()
    if (i := geo.by_code.get(code)) is not None:
        return geo.entry(i)
    if (current := geo.former_codes.get(code)) and code not in geo.by_postal_code:
        today = geo.entry(geo.by_code[current])
        return Commune(code=code, name=today.name, department=code[:2], department_name=today.department_name,
                       kind="ancienne", parent=current, postal_codes=())
    if re.fullmatch(r"20\d{3}", code):
        for corsica in ("2A", "2B"):
            if (i := geo.by_code.get(corsica + code[2:])) is not None:
                return geo.entry(i)
    return None


def communes_with_postal_code(postal_code: str) -> list[Commune]:
    """The communes of today that a postal code serves; for Paris, Lyon and Marseille their
    arrondissements only (births are recorded there)."""
    geo = _geo()
    found = [geo.entry(i) for i in geo.by_postal_code.get((postal_code or "").strip(), [])]
    with_arrondissements = {c.parent for c in found if c.kind == "arrondissement"}
    return sorted((c for c in found if c.code not in with_arrondissements), key=lambda c: (c.name, c.code))


def search_communes(text: str) -> list[Commune]:
    """Communes (of today and former ones) named ``text``: the exact name (accents, case and
    hyphens aside) if some have it, else the names starting with it; a commune with
    arrondissements gives them. At most MAX_CHOICES + 1 (more: ask for more of the name)."""
    geo = _geo()
    key = normalize(text)
    if not key:
        return []
    found = [geo.entry(i) for i in geo.by_name.get(key, [])]
    if not found:
        start = bisect.bisect_left(geo.sorted_names, key)
        for name in geo.sorted_names[start:]:
            if not name.startswith(key) or len(found) > MAX_CHOICES:
                break
            found.extend(geo.entry(i) for i in geo.by_name[name])
    result: list[Commune] = []
    seen: set[str] = set()
    for c in found:
        options = ([geo.entry(i) for i in geo.arrondissements[c.code]]
                   if c.kind == "commune" and c.code in geo.arrondissements else [c])
        for option in options:
            if option.code not in seen:
                seen.add(option.code)
                result.append(option)
    return result[:MAX_CHOICES + 1]


def commune_label(code: str) -> str:
    """How a person reads a birthplace: ``Lyon 1er Arrondissement (Rhône)``; a former commune
    with the commune it belongs to (a Message: pages translate "aujourd'hui"); the code itself
    when unknown."""
    found = commune(code)
    if found is None:
        return code
    if found.kind == "ancienne":
        return Message(N_("%(code)s, aujourd'hui %(today)s (%(department)s)"), code=found.code, today=found.name,
                       department=found.department_name)
    if found.kind in ("deleguee", "associee") and found.parent:
        today = commune(found.parent)
        if today is not None and today.name != found.name:
            return Message(N_("%(name)s, aujourd'hui %(today)s (%(department)s)"), name=found.name, today=today.name,
                           department=found.department_name)
    return f"{found.name} ({found.department_name})"


def country(code: str) -> Country | None:
    return _geo().countries.get((code or "").strip())


@functools.cache
def _territory_names(lang: str) -> dict[str, str]:
    """ISO 3166 country code → its name in ``lang`` (the Unicode CLDR's, as Babel ships them)."""
    return dict(babel.Locale.parse(lang).territories)


def _named(found: Country, lang: str) -> Country:
    """``found`` with its name in ``lang``: INSEE's French name, or the CLDR's name of its ISO code in
    another language (a former country or a territory without an ISO code keeps its French name)."""
    if lang == "fr" or not found.iso:
        return found
    name = _territory_names(lang).get(found.iso)
    return Country(found.code, name, found.iso) if name else found


def country_label(code: str, lang: str = "fr") -> str:
    found = country(code)
    return _named(found, lang).name if found else code


def countries(lang: str = "fr") -> list[Country]:
    """Every country and territory of INSEE's list, France first, then by name (in ``lang``)."""
    items = [_named(c, lang) for c in _geo().countries.values()]
    return sorted(items, key=lambda c: (c.code != FRANCE, normalize(c.name)))


def source() -> str:
    """The npm package (name@version) the communes come from."""
    return _geo().source
