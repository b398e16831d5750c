"""French first; English available, from a gettext catalogue.

The templates and the code are written in French, and the French sentence is the message id.
English comes from ``locale/en/LC_MESSAGES/messages.po``, compiled in memory once per process, at
startup (no compiled ``.mo`` is kept in the repository). A sentence missing from the catalogue, or
whose English is empty or marked fuzzy, stays in French: never a blank.
"""

from __future__ import annotations

import functools
import gettext
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LANGUAGES = ("fr", "en")
SOURCE_LANGUAGE = "fr"
LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"


def read_catalogue(path: Path, lang: str) -> gettext.NullTranslations:
    """The translations of a ``.po`` file, compiled in memory; fuzzy and empty entries are left out."""
    with path.open("rb") as po:
        catalog = read_po(po, locale=lang, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def translations(lang: str) -> gettext.NullTranslations:
    """The translations into ``lang``; none for French (the source language) or an unknown language."""
    return _catalogue(lang if lang in LANGUAGES else SOURCE_LANGUAGE)


@functools.cache
def _catalogue(lang: str) -> gettext.NullTranslations:
    if lang == SOURCE_LANGUAGE:
        return NullTranslations()
    return read_catalogue(LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po", lang)


def load_catalogues() -> None:
    """Read every catalogue now (at startup): a broken ``.po`` stops the service, not its first page."""
    for lang in LANGUAGES:
        translations(lang)
