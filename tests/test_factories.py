"""The factories' options that no other test uses make what they say (tests/factories.py)."""

from __future__ import annotations

from tests.factories import citizen_browser, make_citizen, make_staff
from tests.support import Browser


def test_a_citizen_with_totp_logs_in_with_a_code(app) -> None:
    citizen = make_citizen(app, totp=True)
    assert citizen.totp is not None and len(citizen.recovery_codes) == 10
    with Browser(app) as browser:
        assert browser.login(citizen.email, citizen.password).headers["location"] == "/login/otp"
    with citizen_browser(app, citizen) as browser:
        me = browser.get("/api/v1/me").json()
    assert me["email"] == citizen.email and me["totp_enabled"] is True


def test_an_unverified_citizen_cannot_log_in_yet(app) -> None:
    citizen = make_citizen(app, verified=False, given_name="Paul")
    with Browser(app) as browser:
        refused = browser.login(citizen.email, citizen.password)
    assert refused.status_code == 403 and "pas encore confirmée" in refused.text


def test_default_citizens_and_staff_do_not_collide(app) -> None:
    assert make_citizen(app).email != make_citizen(app).email
    first, second = make_staff(app), make_staff(app, role="admin")
    assert first.email != second.email and first.secret != second.secret
