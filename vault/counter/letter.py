"""The activation letter's words, for its page and its PDF (one text, two renderings).

The PDF is made in memory with fpdf2 and DejaVu Sans (Unicode TrueType, Debian's
``fonts-dejavu-core``), large type for people who read with difficulty. Nothing is written to disk:
the code it carries exists only in the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from fpdf import FPDF

from vault.counter.enrolment import Letter
from vault.settings import Settings
from vault.translation import N_

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


@dataclass(frozen=True)
class LetterText:
    """What the letter says, translated, in reading order."""

    city: str
    title: str
    greeting: str
    intro: str
    identifier_label: str
    identifier: str
    code_label: str
    code: str
    validity: str
    steps_title: str
    steps: list[str]
    afterwards: str
    warning: str


def _day(value: date) -> str:
    return value.strftime("%d/%m/%Y")


def letter_text(letter: Letter, *, settings: Settings, opened_on: date, gettext: Callable[[str], str]) -> LetterText:
    """The letter's sentences in the language of ``gettext`` (French for a printed letter)."""
    citizen = letter.citizen
    activate = f"{settings.issuer}/activate"
    if citizen.login_id:
        identifier_label, identifier = gettext(N_("Votre identifiant :")), citizen.login_id
    else:
        identifier_label, identifier = gettext(N_("Votre identifiant (votre adresse e-mail) :")), citizen.email or ""
    return LetterText(
        city=settings.city_name,
        title=gettext(N_("Votre compte de l'espace citoyen")),
        greeting=gettext(N_("Bonjour %(name)s,")) % {"name": f"{citizen.given_name} {citizen.family_name}"},
        intro=gettext(N_("Votre compte a été ouvert à l'accueil de la mairie le %(date)s. Pour vous en servir, "
                         "choisissez votre mot de passe en suivant les 3 étapes ci-dessous.")) % {"date": _day(opened_on)},
        identifier_label=identifier_label,
        identifier=identifier,
        code_label=gettext(N_("Votre code d'activation :")),
        code=letter.code,
        validity=gettext(N_("Ce code ne sert qu'une fois. Il est valable jusqu'au %(date)s.")) % {
            "date": _day(letter.expires_on)},
        steps_title=gettext(N_("Les 3 étapes")),
        steps=[
            gettext(N_("Sur un ordinateur, une tablette ou un téléphone, ouvrez la page %(address)s")) % {
                "address": activate},
            gettext(N_("Tapez votre identifiant et votre code d'activation, comme ils sont écrits sur cette lettre.")),
            gettext(N_("Choisissez votre mot de passe et tapez-le une seconde fois. Ne le donnez à personne.")),
        ],
        afterwards=gettext(N_("Ensuite, pour vous connecter, ouvrez la page %(address)s avec votre identifiant et "
                              "votre mot de passe.")) % {"address": f"{settings.issuer}/login"},
        warning=gettext(N_("Gardez cette lettre pour vous : le code permet d'ouvrir votre compte. Si vous l'avez perdue "
                           "ou si le code a expiré, l'accueil de la mairie vous en imprime une nouvelle.")),
    )


def letter_pdf(text: LetterText) -> bytes:
    """The letter as an A4 PDF, in memory."""
    pdf = FPDF(format="A4")
    pdf.set_title(text.title)
    pdf.set_author(text.city)
    pdf.set_margins(20, 18, 20)
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
    pdf.add_font("DejaVuMono", "B", str(FONT_DIR / "DejaVuSansMono-Bold.ttf"))
    pdf.add_page()

    def para(words: str, size: float = 14, style: str = "", gap: float = 3) -> None:
        pdf.set_font("DejaVu", style, size)
        pdf.multi_cell(0, size * 0.5, words, align="L", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(gap)

    para(text.city, size=15, style="B", gap=6)
    para(text.title, size=20, style="B", gap=6)
    para(text.greeting)
    para(text.intro, gap=5)
    for label, value in ((text.identifier_label, text.identifier), (text.code_label, text.code)):
        para(label, gap=1)
        pdf.set_font("DejaVuMono", "B", 22)
        pdf.multi_cell(0, 12, value, border=1, align="C", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)
    para(text.validity, style="B", gap=5)
    para(text.steps_title, size=16, style="B", gap=2)
    for number, step in enumerate(text.steps, start=1):
        para(f"{number}. {step}", gap=2)
    pdf.ln(3)
    para(text.afterwards)
    para(text.warning, size=12)
    return bytes(pdf.output())
