"""Pages: security headers, language, accessibility basics, health checks, error answers."""

from __future__ import annotations

import re

from sqlalchemy import create_engine

from tests.factories import logged_in, make_citizen
from tests.support import IDENTITY, Browser
from vault.app import create_app


def test_security_headers_on_pages(browser: Browser) -> None:
    page = browser.get("/login")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert re.fullmatch(r"[0-9a-f]{16}", page.headers["x-request-id"])
    assert "strict-transport-security" not in page.headers  # no HSTS over plain HTTP
    # No inline script or style anywhere: the CSP would block it.
    assert "<script" not in page.text and "style=" not in page.text


def test_authenticated_pages_are_not_cached(app, browser: Browser) -> None:
    logged_in(browser, make_citizen(app, email="cache@example.org"))
    assert browser.get("/account").headers["cache-control"] == "no-store"
    assert browser.get("/api/v1/me").headers["cache-control"] == "no-store"


def test_pages_are_french_and_accessible(browser: Browser) -> None:
    page = browser.get("/register")
    assert '<html lang="fr">' in page.text
    assert 'href="#contenu"' in page.text  # skip link
    for name in ("email", "password", "given_name", "family_name", "birthdate", "birthplace", "birthcountry"):
        assert f'<label for="{name}">' in page.text, name
        assert f'name="{name}"' in page.text
    assert page.text.count('name="gender"') == 2
    assert 'autocomplete="new-password"' in page.text


def test_english_on_request(browser: Browser) -> None:
    page = browser.get("/login?lang=en")
    assert '<html lang="en">' in page.text and "Log in" in page.text and "Forgot your password?" in page.text
    assert "lang=en" in page.headers["set-cookie"]
    assert '<html lang="en">' in browser.get("/register").text  # remembered
    assert '<html lang="fr">' in browser.get("/register?lang=fr").text


def test_theme_follows_the_city_settings(settings, engine) -> None:
    app = create_app(settings.model_copy(update={"city_name": "Villeneuve", "theme_color": "#aa3300"}), engine=engine)
    with Browser(app) as browser:
        assert "Villeneuve" in browser.get("/").text
        assert "#aa3300" in browser.get("/static/theme.css").text


def test_unknown_page_answers_a_french_404(browser: Browser) -> None:
    page = browser.get("/nulle-part")
    assert page.status_code == 404 and "Page introuvable" in page.text


def test_api_errors_are_json(browser: Browser) -> None:
    missing = browser.get("/api/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    anonymous = browser.get("/api/v1/me")
    assert anonymous.status_code == 401 and anonymous.json() == {
        "error": "unauthenticated", "detail": "Log in first (session cookie)."}


def test_health_and_readiness(browser: Browser) -> None:
    assert browser.get("/healthz").json() == {"status": "ok"}
    ready = browser.get("/readyz")
    # The status code follows the database and the keyring only; the object store and clamd are
    # reported in the body ("degraded", still 200: see tests/storage/test_readiness.py).
    assert ready.status_code == 200 and ready.json() == {
        "status": "ok", "checks": {"database": "ok", "issuer": "ok", "keyring": "ok", "object_store": "ok"}}


def test_readiness_fails_when_migrations_are_pending(settings, tmp_path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    with Browser(create_app(settings, engine=engine)) as browser:
        ready = browser.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["database"] == "migrations pending"


def test_readiness_fails_when_the_database_is_down(settings) -> None:
    engine = create_engine("postgresql+psycopg://vault@127.0.0.1:9/vault", connect_args={"connect_timeout": 2})
    with Browser(create_app(settings, engine=engine)) as browser:
        assert browser.get("/healthz").status_code == 200
        ready = browser.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"] == "unavailable"
        page = browser.submit("/register", {"email": "down@example.org", "password": "une phrase assez longue",
                                            **IDENTITY})
        assert page.status_code == 503 and "momentanément indisponible" in page.text


def test_openapi_documents_the_api(browser: Browser) -> None:
    spec = browser.get("/openapi.json").json()
    assert "/api/v1/me" in spec["paths"] and "/readyz" in spec["paths"]
    operation_ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(operation_ids) == len(set(operation_ids))  # unique, as OpenAPI requires (code generators rely on it)
