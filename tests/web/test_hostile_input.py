"""A NUL character anywhere a request names something (path, query, form) is refused with a 400
before any route reads it: the same answer on SQLite and PostgreSQL (which cannot store one)."""

from __future__ import annotations

import pytest

from tests.factories import citizen_browser
from tests.support import Browser


@pytest.mark.parametrize("path", [
    "/verify-email?token=a%00b",
    "/password/reset?token=a%00b",
    "/account/email/confirm?token=a%00b",
    "/logout/franceconnect/callback?state=a%00b",
    "/login?login_hint=a%00b",
    "/s/a%00b",
    "/authorize/continue/a%00b",
    "/documents?a%00=b",
])
def test_nul_in_a_page_address_is_a_400_page(browser: Browser, path: str) -> None:
    answer = browser.get(path)
    assert answer.status_code == 400, (answer.status_code, answer.text[:300])
    assert "<html" in answer.text


def test_nul_in_an_api_query_is_a_400_json_error(app) -> None:
    with citizen_browser(app) as citizen:
        answer = citizen.get("/api/v1/documents?type=a%00b")
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
        assert citizen.get("/api/v1/documents?type=other").status_code == 200


def test_nul_in_a_page_form_is_a_400(browser: Browser) -> None:
    answer = browser.submit("/login", {"email": "a\x00b@example.org", "password": "x"})
    assert answer.status_code == 400
