"""After an erasure nothing names the citizen any more: not the login counters (kept under a keyed
hash, never a plain hash of the address anyone can compute), nor an app's authorization request
still waiting with their address as ``login_hint``."""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

from sqlmodel import Session, col, select

from tests.factories import make_citizen, make_oidc_app
from tests.oidc.oidc_support import auth_params
from tests.support import Browser
from vault.auth.models import LoginThrottle
from vault.gdpr.service import Staff
from vault.oidc.models import PendingAuthorization

DPO = Staff(actor="staff:test", label="DPO")


def _account_counters(engine) -> list[str]:
    with Session(engine) as db:
        return [row.key for row in db.exec(select(LoginThrottle).where(col(LoginThrottle.key).startswith("account:")))]


def _waiting_hints(engine) -> list[str]:
    with Session(engine) as db:
        return sorted(row.params.get("login_hint", "") for row in db.exec(select(PendingAuthorization)))


def test_login_counters_are_keyed_hashes_and_go_with_the_erasure(app, browser: Browser, engine) -> None:
    erased = make_citizen(app, email="leaving@example.org")
    staying = make_citizen(app, email="staying@example.org")
    for person in (erased, staying):
        assert browser.login(person.email, "not the password").status_code == 401  # a failure, counted
    counters = _account_counters(engine)
    assert len(counters) == 2
    plain = {"account:" + hashlib.sha256(p.email.encode()).hexdigest() for p in (erased, staying)}
    assert not plain & set(counters)  # nobody can recompute them from an address
    with Session(engine) as db:
        app.state.services.gdpr.erase(db, citizen_id=erased.id, reason="demande de la personne", by=DPO)
    assert len(_account_counters(engine)) == 1  # the other citizen's counter stays
    # The counter still counts for the one who stays (same key from one request to the next).
    assert browser.login(staying.email, "not the password").status_code == 401
    with Session(engine) as db:
        [row] = db.exec(select(LoginThrottle).where(col(LoginThrottle.key).startswith("account:"))).all()
        assert row.failures == 2


def test_waiting_authorization_requests_naming_the_citizen_go_with_the_erasure(app, engine) -> None:
    erased = make_citizen(app, email="leaving@example.org")
    make_citizen(app, email="staying@example.org")
    rp = make_oidc_app(engine)
    with Browser(app) as browser:  # an app sends the citizen to log in, naming them; they never finish
        for hint in ("leaving@example.org", "LEAVING@example.org", "staying@example.org"):
            answer = browser.get("/authorize?" + urlencode(auth_params(rp, login_hint=hint)))
            assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), answer.text[:300]
    assert len(_waiting_hints(engine)) == 3
    with Session(engine) as db:
        app.state.services.gdpr.erase(db, citizen_id=erased.id, reason="demande de la personne", by=DPO)
    assert _waiting_hints(engine) == ["staying@example.org"]
