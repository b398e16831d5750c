"""English is available: every French sentence of the pages, the code and the mails has its English
in the catalogue (vault/web/locale/en/LC_MESSAGES/messages.po), and the catalogue holds nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from vault.web.i18n import LOCALE_DIR, read_catalogue, translations

ROOT = Path(__file__).parents[2]
CATALOGUE = LOCALE_DIR / "en" / "LC_MESSAGES" / "messages.po"


def extracted() -> dict[str, list[str]]:
    """What `pybabel extract -F babel.cfg vault` finds: each French sentence, with where it is used."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as mapping:
        method_map, options_map = parse_mapping_cfg(mapping)
    found: dict[str, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(ROOT / "vault", method_map, options_map):
        msgid = message if isinstance(message, str) else message[0]  # ngettext: (singular, plural)
        found.setdefault(msgid, []).append(f"vault/{filename}:{lineno}")
    return found


def _forms(text: str | tuple[str, ...]) -> tuple[str, ...]:
    """A catalogue id or string as its forms: one, or (singular, plural…) for an ngettext sentence."""
    return (text,) if isinstance(text, str) else tuple(text)


@pytest.fixture(scope="module")
def catalogue() -> Catalog:
    with CATALOGUE.open("rb") as po:
        return read_po(po, locale="en")


def test_every_sentence_has_an_english_translation(catalogue: Catalog) -> None:
    sentences = extracted()
    assert len(sentences) > 60  # the pages, notices, document types, request kinds, email forms, mails
    missing = {msgid: where for msgid, where in sentences.items()
               if catalogue.get(msgid) is None or catalogue[msgid].fuzzy
               or not all(_forms(catalogue[msgid].string))}  # a plural needs every form
    assert missing == {}, "new or changed sentences: run `make messages`, then translate them in " + str(CATALOGUE)


def test_the_catalogue_holds_only_sentences_in_use(catalogue: Catalog) -> None:
    sentences = extracted()
    unused = sorted(_forms(message.id)[0] for message in catalogue
                    if message.id and _forms(message.id)[0] not in sentences)
    assert unused == []
    assert list(catalogue.obsolete) == []  # `#~` entries: `make messages` drops them


def test_english_keeps_the_placeholders(catalogue: Catalog) -> None:
    """A ``%(name)s`` the French has is in the English too (Babel's python-format check)."""
    problems = {message.id: [str(error) for error in errors] for message, errors in catalogue.check()}
    assert problems == {}


def test_a_sentence_without_english_stays_french(tmp_path: Path) -> None:
    po = tmp_path / "messages.po"
    po.write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
                  'msgid "Se connecter"\nmsgstr "Log in"\n\n'
                  'msgid "Mon compte"\nmsgstr ""\n\n'
                  '#, fuzzy\nmsgid "Accueil"\nmsgstr "Home page"\n', encoding="utf-8")
    english = read_catalogue(po, "en")
    assert english.gettext("Se connecter") == "Log in"
    assert english.gettext("Mon compte") == "Mon compte"  # empty: French, never a blank
    assert english.gettext("Accueil") == "Accueil"  # fuzzy: not reviewed, French
    assert english.gettext("Une phrase que le catalogue n'a pas") == "Une phrase que le catalogue n'a pas"


def test_the_catalogue_is_read_once_per_language() -> None:
    assert translations("en") is translations("en")
    assert translations("en").gettext("Se connecter") == "Log in"
    assert translations("fr").gettext("Se connecter") == "Se connecter"
    assert translations("de").gettext("Se connecter") == "Se connecter"  # unknown language: French
