"""The issuer shared by replicas: behind a load balancer, replicas configured with different
VAULT_ISSUER values would alternate the discovery document and the ``iss`` of their tokens, and
apps would refuse half of them. The database keeps the deployment's issuer; a replica whose
setting differs says so (an ERROR at startup, /readyz answering 503)."""

from __future__ import annotations

import logging

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from vault.db import utcnow
from vault.oidc.models import Deployment

logger = logging.getLogger(__name__)


class IssuerMismatch(Exception):
    """This replica's VAULT_ISSUER is not the deployment's."""

    def __init__(self, configured: str, recorded: str) -> None:
        super().__init__(f"VAULT_ISSUER is {configured} but the deployment's issuer (recorded in the database) "
                         f"is {recorded}: every replica must have the same VAULT_ISSUER")
        self.configured, self.recorded = configured, recorded


def recorded_issuer(engine: Engine, issuer: str) -> str:
    """The deployment's issuer, recording ``issuer`` when none is (the first replica)."""
    with Session(engine) as db:
        row = db.get(Deployment, 1)
        if row is not None:
            return row.issuer
        db.add(Deployment(id=1, issuer=issuer))
        try:
            db.commit()
        except IntegrityError:  # another replica recorded it at the same moment
            db.rollback()
            row = db.get(Deployment, 1)
            assert row is not None
            return row.issuer
        return issuer


def check_issuer(engine: Engine, issuer: str) -> None:
    """Raise ``IssuerMismatch`` when the deployment's issuer is another one."""
    recorded = recorded_issuer(engine, issuer)
    if recorded != issuer:
        raise IssuerMismatch(issuer, recorded)


def set_issuer(db: Session, issuer: str, *, change: bool) -> str | None:
    """At ``vault db upgrade``: record ``issuer``; a different one already recorded is replaced only
    when ``change`` (the operator moves the service to a new address), else ``IssuerMismatch``.
    Returns the previous issuer when it was replaced."""
    row = db.get(Deployment, 1)
    if row is None:
        db.add(Deployment(id=1, issuer=issuer))
        return None
    if row.issuer == issuer:
        return None
    if not change:
        raise IssuerMismatch(issuer, row.issuer)
    previous, row.issuer, row.recorded_at = row.issuer, issuer, utcnow()
    return previous
