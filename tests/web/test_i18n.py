"""English is available: every sentence the templates show has an English translation."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, nodes

from vault.auth.routes import EMAIL_FORMS, NOTICES
from vault.gdpr.models import REQUEST_KINDS, STATUSES
from vault.storage.models import DOCUMENT_TYPES
from vault.storage.routes import NOTICES as DOCUMENT_NOTICES
from vault.web.i18n import EN

TEMPLATES = Path(__file__).parents[2] / "vault" / "web" / "templates"


def template_sentences() -> set[str]:
    env = Environment()
    found: set[str] = set()
    for path in TEMPLATES.glob("*.html"):
        tree = env.parse(path.read_text(encoding="utf-8"))
        for call in tree.find_all(nodes.Call):
            if not isinstance(call.node, nodes.Name):
                continue
            if call.node.name == "_" and call.args and isinstance(call.args[0], nodes.Const):
                found.add(call.args[0].value)
            if call.node.name == "field":  # field(name, label, ..., hint=...)
                found.add(call.args[1].value)
                found.update(kw.value.value for kw in call.kwargs
                             if kw.key in ("hint", "optional_note") and isinstance(kw.value, nodes.Const))
    return found


def test_every_template_sentence_has_an_english_translation() -> None:
    sentences = template_sentences() | set(NOTICES.values()) | set(DOCUMENT_TYPES.values())
    sentences |= set(DOCUMENT_NOTICES.values()) | set(REQUEST_KINDS.values()) | set(STATUSES.values())
    sentences |= {text for form in EMAIL_FORMS.values() for text in form.values()}
    assert len(sentences) > 60
    missing = sorted(s for s in sentences if s not in EN)
    assert missing == []
