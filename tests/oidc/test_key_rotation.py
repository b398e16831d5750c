"""Token signing key rotation seen by an app that caches /jwks as its Cache-Control allows: a new
key is published before it signs, so every token verifies against whatever set the app holds."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from joserfc import jwk, jwt
from sqlmodel import Session

from tests.factories import make_citizen, make_oidc_app
from tests.oidc.oidc_support import authorize, exchange
from tests.support import Browser
from vault.db import utcnow
from vault.oidc.keys import RotationPending

EMAIL = "jwks@example.org"


class Clock:
    """The time the key store reads (a rotation's switch is a time, not an event)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("vault.oidc.keys.utcnow", clock)
    return clock


def fetch_jwks(browser: Browser) -> tuple[jwk.KeySet, int]:
    """The key set as an app fetches it, and how long it may keep it."""
    answer = browser.get("/jwks")
    match = re.search(r"max-age=(\d+)", answer.headers["cache-control"])
    assert match is not None
    return jwk.KeySet.import_key_set(answer.json()), int(match.group(1))


def id_token(browser: Browser, app_) -> str:
    return exchange(browser, authorize(browser, app_, email=EMAIL)).json()["id_token"]


def test_a_new_signing_key_is_published_before_it_signs(app, browser: Browser, engine, clock: Clock) -> None:
    make_citizen(app, email=EMAIL)
    app_ = make_oidc_app(engine)
    id_token(browser, app_)  # the keys in use exist
    cached, max_age = fetch_jwks(browser)  # an app's cached copy, fetched just before the rotation
    with Session(engine) as db:
        rotation = app.state.services.keystore.rotate(db)
        db.commit()
    new_kids = {key.kid for key in rotation}
    active_from = min(key.active_from for key in rotation)
    assert active_from - clock.now > timedelta(seconds=max_age)

    # Until the switch, every token verifies against the copy cached before the rotation.
    start = clock.now
    for moment in (start, start + timedelta(seconds=max_age), active_from - timedelta(seconds=1)):
        clock.now = moment
        token = jwt.decode(id_token(browser, app_), cached, algorithms=["ES256", "RS256"])
        assert token.header["kid"] not in new_kids

    # A copy fetched after the rotation (the cached one expired) holds the new key before it signs.
    clock.now = active_from - timedelta(seconds=max_age)
    refreshed, _ = fetch_jwks(browser)
    clock.now = active_from + timedelta(seconds=1)
    token = jwt.decode(id_token(browser, app_), refreshed, algorithms=["ES256", "RS256"])
    assert token.header["kid"] in new_kids
    # The old key, retired, stays published for the tokens it signed.
    assert {key["kid"] for key in browser.get("/jwks").json()["keys"]} >= {k.kid for k in cached.keys}


def test_a_second_rotation_waits_for_the_first_unless_forced(app, browser: Browser, engine, clock: Clock) -> None:
    make_citizen(app, email=EMAIL)
    app_ = make_oidc_app(engine)
    keystore = app.state.services.keystore
    with Session(engine) as db:
        first = keystore.rotate(db)
        db.commit()
        with pytest.raises(RotationPending):
            keystore.rotate(db)
        emergency = keystore.rotate(db, now=True)  # a leaked key: sign with new ones at once
        db.commit()
    token = jwt.decode(id_token(browser, app_), fetch_jwks(browser)[0], algorithms=["ES256", "RS256"])
    assert token.header["kid"] in {key.kid for key in emergency}
    clock.now = max(key.active_from for key in first) + timedelta(seconds=1)  # the first ones never sign
    assert jwt.decode(id_token(browser, app_), fetch_jwks(browser)[0],
                      algorithms=["ES256", "RS256"]).header["kid"] in {key.kid for key in emergency}
