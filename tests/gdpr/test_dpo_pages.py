"""The DPO's pages and the citizen's "Mes données", driven as people drive them."""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from tests.factories import STAFF_PASSWORD, citizen_browser, make_citizen, make_staff, staff_browser
from tests.support import PASSWORD, Browser
from vault.auth.models import Citizen
from vault.db import utcnow
from vault.gdpr import audit
from vault.gdpr.models import DataRequest, StaffAccount, StaffSession


def confirm_erasure(browser: Browser, path: str, reason: str) -> Any:
    """Erase as the DPO does: open the confirmation page, tick the box, give the reason, press the button."""
    page = browser.get(f"{path}/erase")
    assert page.status_code == 200, page.text[:500]
    token = re.search(r'name="confirmation" value="([0-9a-f]+)"', page.text)
    assert token, "no confirmation token on the erasure's page"
    return browser.submit(f"{path}/erase", {"reason": reason, "irreversible": "yes", "confirmation": token.group(1)})


@pytest.fixture
def dpo(app) -> Iterator[tuple[Browser, pyotp.TOTP]]:
    staff = make_staff(app, email="dpo@ville.example.fr", name="Camille DPO", role="dpo")
    assert staff.otpauth_uri.startswith("otpauth://totp/")
    with staff_browser(app, staff) as browser:
        yield browser, staff.totp


@pytest.fixture
def someone(app):
    citizen = make_citizen(app, email="someone@example.org")
    with citizen_browser(app, citizen) as browser:
        yield browser, citizen.id


def test_staff_login_needs_password_and_totp(app) -> None:
    admin = make_staff(app, email="admin@ville.example.fr", name="A", role="admin")
    with Browser(app) as browser:
        no_code = browser.submit("/dpo/login", {"email": "admin@ville.example.fr", "password": STAFF_PASSWORD})
        assert no_code.status_code == 401 and "incorrect" in no_code.text
        wrong = browser.submit("/dpo/login", {"email": "admin@ville.example.fr", "password": "mauvais mot de passe",
                                              "otp": admin.totp.now()})
        assert wrong.status_code == 401
        assert browser.get("/dpo/").status_code == 404


def test_reauthentication_guesses_are_throttled(app, dpo) -> None:
    browser, totp = dpo
    attempts = app.state.settings.login_free_failures_per_account + 1
    answers = [browser.submit("/dpo/", {"password": "pas le bon", "otp": "000000", "next": "/dpo/"},
                              action="/dpo/reauth").status_code for _ in range(attempts)]
    assert answers[0] == 401 and answers[-1] == 429  # the failures were counted, then the account locked
    locked = browser.submit("/dpo/", {"password": STAFF_PASSWORD, "otp": totp.now(), "next": "/dpo/"},
                            action="/dpo/reauth")
    assert locked.status_code == 429 and "réessayez dans" in locked.text  # even the right answer waits


def test_staff_login_locks_with_retry_after_even_for_the_right_answer(settings, engine) -> None:
    from vault.app import create_app

    app = create_app(settings.model_copy(update={"login_free_failures_per_account": 3}), engine=engine)
    staff = make_staff(app, email="dpo@ville.example.fr", name="Camille DPO", role="dpo")
    with Browser(app) as browser:
        answers = [browser.submit("/dpo/login", {"email": staff.email, "password": "pas le bon mot de passe",
                                                 "otp": "000000"}).status_code for _ in range(4)]
        assert answers == [401, 401, 401, 429], answers
        locked = browser.submit("/dpo/login", {"email": staff.email, "password": STAFF_PASSWORD, "otp": staff.totp.now()})
        assert locked.status_code == 429 and "réessayez dans" in locked.text
        assert 1 <= int(locked.headers["retry-after"]) <= 31
        assert browser.get("/dpo/").status_code == 404  # not logged in


def test_a_burst_of_wrong_staff_logins_gets_no_more_checks_than_the_free_failures(settings, engine) -> None:
    """Twenty wrong staff logins sent at once: each is counted before it is checked, so only the
    free failures are checked; the others meet the lock (and the right answer waits too)."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from vault.app import create_app

    app = create_app(settings.model_copy(update={"login_free_failures_per_account": 3}), engine=engine)
    staff = make_staff(app, email="dpo@ville.example.fr", name="Camille DPO", role="dpo")
    with Browser(app) as browser:
        token = browser.form_token("/dpo/login")
        start = Barrier(20)

        def one(n: int) -> int:
            start.wait()
            return browser.post("/dpo/login", data={"email": staff.email, "password": f"mauvais essai {n}",
                                                    "otp": "000000", "csrf_token": token}).status_code

        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(one, range(20)))
        assert answers.count(401) == 3 and answers.count(429) == 17, answers
        right = browser.submit("/dpo/login", {"email": staff.email, "password": STAFF_PASSWORD, "otp": staff.totp.now()})
        assert right.status_code == 429


def test_a_right_staff_login_is_not_counted_as_a_failure(settings, engine) -> None:
    from vault.app import create_app

    app = create_app(settings.model_copy(update={"login_free_failures_per_account": 2}), engine=engine)
    staff = make_staff(app, email="dpo@ville.example.fr", name="Camille DPO", role="dpo")
    for _ in range(3):  # three right logins in a row: none is left on the counter to lock the next
        with Browser(app) as browser:
            assert browser.submit("/dpo/login", {"email": staff.email, "password": "pas le bon mot de passe",
                                                 "otp": "000000"}).status_code == 401
            with Session(engine) as db:  # a TOTP code is accepted once: the next login waits for a new one
                db.exec(update(StaffAccount).values(totp_last_step=None))
                db.commit()
            assert browser.submit("/dpo/login", {"email": staff.email, "password": STAFF_PASSWORD,
                                                 "otp": staff.totp.now()}).status_code == 303


def test_the_staff_section_does_not_exist_for_citizens(someone) -> None:
    browser, _ = someone
    for path in ("/dpo/", "/dpo/requests.csv"):
        assert browser.get(path).status_code == 404
    assert browser.submit("/account", {"kind": "access"}, action="/dpo/requests").status_code == 404


def test_register_open_extend_close_and_csv(dpo, someone, engine) -> None:
    browser, _totp = dpo
    _, citizen_id = someone
    opened = browser.submit("/dpo/", {"kind": "rectification", "citizen_id": str(citizen_id), "channel": "mail",
                                      "received_on": "01/01/2026", "identity_check": "copie de la carte d'identité"},
                            action="/dpo/requests")
    assert opened.status_code == 303
    page = browser.get(opened.headers["location"]).text
    assert "Jeanne Marie Martin" in page and "01/02/2026" in page  # due one month later
    home = browser.get("/dpo/").text
    assert "En retard (1)" in home
    path = opened.headers["location"]
    asked = browser.submit(path, {"family_name": "Martin-Durand", "reason": "acte de mariage produit"},
                           action=f"{path}/rectify")
    assert asked.status_code == 200 and "de « Martin » en « Martin-Durand »" in asked.text
    rectified = browser.submit(path, {"family_name": "Martin-Durand", "reason": "acte de mariage produit",
                                      "step": "confirm"}, action=f"{path}/rectify")
    assert rectified.status_code == 303
    with Session(engine) as db:
        assert db.get(Citizen, citizen_id).family_name == "Martin-Durand"
        entry = db.exec(select(audit.AuditEntry).where(audit.AuditEntry.action == "identity.rectified")).one()
        assert entry.details["fields"] == ["family_name"] and "Martin" not in str(entry.details)
    browser.submit(path, {"reason": "pièces à vérifier", "told_on": "15/01/2026"}, action=f"{path}/extend")
    assert "prolongée jusqu'au 01/04/2026" in browser.get(path).text
    browser.submit(path, {"status": "done", "outcome": "nom corrigé"}, action=f"{path}/close")
    csv_export = browser.get("/dpo/requests.csv")
    assert csv_export.headers["content-type"].startswith("text/csv") and "nom corrigé" in csv_export.text
    missing_csrf = browser.post(f"{path}/close", data={"status": "done", "outcome": "x"})
    assert missing_csrf.status_code == 403


def test_citizen_export_and_erasure_request_then_dpo_erases(app, dpo, someone, engine) -> None:
    citizen, citizen_id = someone
    archive = citizen.submit("/account/data", {}, action="/account/data/export")
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        assert "compte.json" in zf.namelist()
    asked = citizen.submit("/account/data", {"confirm": "yes"}, action="/account/data/erasure")
    assert asked.headers["location"] == "/account/data?notice=erasure"
    assert "Effacement (art. 17)" in citizen.get("/account/data").text
    with Session(engine) as db:
        kinds = sorted((r.kind, r.status, r.channel) for r in db.exec(select(DataRequest)))
        request_id = db.exec(select(DataRequest.id).where(DataRequest.kind == "erasure")).one()
    assert kinds == [("access", "done", "online"), ("erasure", "received", "online")]

    browser, totp = dpo
    path = f"/dpo/requests/{request_id}"
    with Session(engine) as db:  # the login's re-authentication is now older than 5 minutes
        db.exec(update(StaffSession).values(reauth_at=utcnow() - timedelta(minutes=6)))
        db.commit()
    refused = browser.submit(path, {"reason": "demande", "irreversible": "yes"}, action=f"{path}/erase")
    assert refused.status_code == 403 and "moins de 5 minutes" in refused.text
    assert browser.submit(path, {"password": STAFF_PASSWORD, "otp": totp.at(time.time() + 30), "next": path},
                          action="/dpo/reauth").headers["location"] == path
    with Session(engine) as db:
        access_id = db.exec(select(DataRequest.id).where(DataRequest.kind == "access")).one()
    wrong_kind = browser.submit(path, {"reason": "x"}, action=f"/dpo/requests/{access_id}/erase")
    assert wrong_kind.status_code == 400 and "pas une demande d'effacement" in wrong_kind.text
    erased = confirm_erasure(browser, path, "demande de la personne")
    assert erased.status_code == 303
    page = browser.get(path).text
    assert "Traitée" in page and "effacée le" in page and "Personne effacée" in page
    assert citizen.login("someone@example.org", PASSWORD).status_code == 401
    with Session(engine) as db:
        assert db.get(Citizen, citizen_id) is None
        assert audit.verify(db).ok


def test_an_erasure_cut_short_by_the_store_is_finished_from_the_register(app, dpo, someone, engine,
                                                                          monkeypatch) -> None:
    from vault.storage.blobs import BlobStoreUnavailable

    citizen, citizen_id = someone
    citizen.submit("/account/data", {}, action="/account/data/export")  # an access request, done
    citizen.submit("/account/data", {"confirm": "yes"}, action="/account/data/erasure")
    with Session(engine) as db:
        erasure_id = db.exec(select(DataRequest.id).where(DataRequest.kind == "erasure")).one()
        access_id = db.exec(select(DataRequest.id).where(DataRequest.kind == "access")).one()
    browser, _ = dpo
    path = f"/dpo/requests/{erasure_id}"
    store = app.state.services.documents.store

    def store_down(keys: list) -> int:
        raise BlobStoreUnavailable("down")

    monkeypatch.setattr(store, "delete_many", store_down)
    cut = confirm_erasure(browser, path, "demande de la personne")
    assert cut.status_code == 503  # the person's rows are gone; their objects are not yet
    page = browser.get(path).text
    assert "pas terminé" in page and "Terminer l'effacement" in page
    # Meanwhile the person is gone for every purpose: an export is a 404 with the erasure's date.
    export = browser.get(f"/dpo/requests/{access_id}/export")
    assert export.status_code == 404 and "a été effacée le" in export.text

    monkeypatch.undo()
    finished = confirm_erasure(browser, path, "")
    assert finished.status_code == 303
    page = browser.get(path).text
    assert "Traitée" in page and "effacée le" in page and "Terminer" not in page
    again = browser.submit("/dpo/", {}, action=f"{path}/erase")  # closed, no form left: a clear refusal anyway
    assert again.status_code == 400 and "déjà été effacée" in again.text
    with Session(engine) as db:
        assert db.get(Citizen, citizen_id) is None
        assert audit.verify(db).ok


def test_an_erasure_request_needs_a_recent_proof_of_identity(app, engine) -> None:
    """A session that has not proved it is the citizen's for 5 minutes asks for nothing: the
    citizen confirms first, and the register says a recent proof was given."""
    from urllib.parse import quote

    from tests.factories import stale_proof

    with citizen_browser(app) as citizen:
        stale_proof(engine)
        asked = citizen.submit("/account/data", {"confirm": "yes"}, action="/account/data/erasure")
        assert asked.status_code == 303 and asked.headers["location"] == f"/account/confirm?next={quote('/account/data')}"
        with Session(engine) as db:
            assert db.exec(select(DataRequest)).all() == []
        confirmed = citizen.submit(asked.headers["location"], {"password": PASSWORD, "next": "/account/data"})
        assert confirmed.headers["location"] == "/account/data"
        again = citizen.submit("/account/data", {"confirm": "yes"}, action="/account/data/erasure")
        assert again.headers["location"] == "/account/data?notice=erasure"
    with Session(engine) as db:
        request = db.exec(select(DataRequest)).one()
        assert request.kind == "erasure" and "preuve d'identité récente" in request.identity_check
