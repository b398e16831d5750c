"""Logins made by a counter agent for a citizen, under a mandate (the counter's assisted session).

The counter (``vault.counter.assist``, a floor above, supplied by the composition root) says who
acts for whom; the provider decides what the app receives. An app registered with
``--accept-delegation`` gets the citizen's usual pairwise ``sub``, ``amr: ["delegation"]`` (none of
the citizen's own factors) and RFC 8693's ``act`` claim naming the agent (a pairwise identifier of
its own) and the counter. Any other app gets nothing: the agent sees a page saying so.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlmodel import Session

ASSISTED_COOKIE = "assisted"
# The staff session's cookie (``vault.gdpr``: SameSite=Strict, so a city app's cross-site redirection
# to /authorize never carries it, while the consent page's own form always does).
STAFF_COOKIE = "staff_session"
DELEGATION_AMR = "delegation"  # the only amr of a delegated login: no factor of the citizen was used


class DelegationEnded(Exception):
    """The browser's assisted session is over (expired, ended, its mandate ended, the agent logged out)."""


@dataclass(frozen=True)
class Delegation:
    """An agent acting for a citizen in this browser, under a live mandate."""

    session_id: str  # the assisted session (its cookie's SHA-256)
    citizen_id: uuid.UUID
    citizen_name: str  # shown to the agent: "Vous agissez pour … sous mandat"
    agent_id: uuid.UUID
    service: str  # the counter the mandate was granted to (``act.service``)
    auth_time: datetime  # when the agent logged in (password + TOTP): the login's ``auth_time``
    # The browser also showed the staff session that opened the assisted session (its cookie): only
    # then may the agent decide on the consent page. The ``assisted`` cookie alone is not enough.
    confirmed: bool = False

    @property
    def sid(self) -> str:
        """The login session an app of this login sees (made pairwise like any ``sid``)."""
        return self.session_id[:32]


class Delegations(Protocol):
    """What the provider asks of the counter's assisted sessions."""

    def resolve(self, db: Session, token: str | None, staff_token: str | None) -> Delegation | None:
        """The live delegation behind an ``assisted`` cookie; None without one; ``DelegationEnded``
        when it names a session that is over, or when ``staff_token`` (the browser's staff session
        cookie, when it sent one) is not the staff session that opened it. ``confirmed`` when the
        staff session was shown and matches."""
        ...

    def app_login(self, db: Session, delegation: Delegation, *, client_id: str, client_name: str) -> None:
        """A code was issued to an app under the delegation (the citizen's journal)."""
        ...

    def app_refused(self, db: Session, delegation: Delegation, *, client_id: str, client_name: str) -> None:
        """An app that does not accept delegated logins was asked for one (audited)."""
        ...
