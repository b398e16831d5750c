"""``N_`` marks a French sentence for the translation catalogue where it is defined (any layer may
use it: it imports nothing); ``vault.web.i18n`` translates it where it is shown."""

from __future__ import annotations


def N_(message: str) -> str:  # noqa: N802  (gettext's conventional name, which pybabel extract looks for)
    """Mark a French sentence for the catalogue where it is defined; it is translated where shown.

    ``pybabel extract`` finds the sentences given to ``N_``; the templates translate them with
    ``_`` when they display them (a notice, a document type, an error message…).
    """
    return message


class Message(str):
    """A French sentence with values: ``Message(N_("%(code)s est un code postal…"), code="75001")``.

    It is the French text (a ``str``: logs, JSON and comparisons see it as such), and keeps its
    catalogue id and values so that a page shows it translated (``vault.web.pages``' ``_``)."""

    msgid: str
    params: dict[str, object]

    def __new__(cls, msgid: str, **params: object) -> Message:
        message = super().__new__(cls, msgid % params if params else msgid)
        message.msgid = msgid
        message.params = params
        return message
